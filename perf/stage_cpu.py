"""Where the CPU goes while an image pipeline is under load: serve a linked
copy of the entry model and its ensemble steps (instance counts rewritten
with --instances), drive it with perf_analyzer on real pictures, and read
each process's CPU time (tritonserver, every stub by model, perf_analyzer)
over a window in the middle of the measurement.

    python -m perf.stage_cpu orientation --concurrency 4
    python -m perf.stage_cpu ocr --also ocr_cls,ocr_rec --pictures documents --seconds 20
    python -m perf.stage_cpu orientation --instances image_decode=1,orientation_preprocess=1,orientation_classifier=1

Prints the throughput, the share of the machine's cores each process used and
its CPU-ms per image: the sum is the pipeline's CPU cost per image under load,
and cores / that cost is the throughput ceiling on this machine."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from clients import triton_stats
from lint.pbtxt import edit_config, parse
from perf.harness import benchmark_server, picture_inputs, run_perf_analyzer
from perf.instance_sweep import linked_copy
from perf.report import usable_cores
from runtime import procfs
from runtime.paths import MODEL_REPOSITORY
from runtime.watchdog import server_stubs
from testsets.documents import pages
from testsets.images import samples


def _perf_analyzer_pids() -> list[int]:
    """The perf_analyzer this process started (not another one on the machine)."""
    return list(procfs.children(os.getpid(), "perf_analyzer"))


def _load(entry: str, url: str, concurrency: int, data: Path) -> None:
    try:
        run_perf_analyzer(entry, url, concurrency, data, request_count=1_000_000)
    except RuntimeError:
        pass  # killed at the end of the window


def _processes(server_pid: int) -> dict[int, str]:
    """pid -> label of the processes a pipeline's requests run in."""
    labels = {server_pid: "tritonserver"}
    labels.update({stub.pid: f"stub {stub.model}" for stub in server_stubs(server_pid, {}) if not stub.zombie})
    labels.update({pid: "perf_analyzer" for pid in _perf_analyzer_pids()})
    return labels


def pipeline_models(entry: str) -> list[str]:
    """The entry model and, for an ensemble, every model its steps run."""
    models, pending = [], [entry]
    while pending:
        name = pending.pop()
        if name not in models:
            models.append(name)
            config = parse((MODEL_REPOSITORY / name / "config.pbtxt").read_text())
            pending += [step.model_name for step in config.ensemble_scheduling.step]
    return models


def _pictures(kind: str) -> list[bytes]:
    if kind == "documents":
        return [page.data for page in pages()]
    return [sample.data for sample in samples()]


def measure(
    entry: str, instances: dict[str, int], concurrency: int, seconds: float, also: tuple[str, ...] | list[str] = (), pictures: str = "test-set"
) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="perf-stage-cpu-"))
    try:
        repository = scratch / "repository"
        models = pipeline_models(entry)
        for model in models + [m for m in also if m not in models]:
            linked_copy(MODEL_REPOSITORY / model, repository / model)
        for model, count in instances.items():
            edit_config(repository / model / "config.pbtxt", instance_count=count)
        data = picture_inputs(_pictures(pictures), "stage-cpu")
        with benchmark_server([repository]) as server:
            run_perf_analyzer(entry, server.http_url, concurrency, data, request_count=4 * concurrency)  # warm-up
            # load until the window closes, then stopped: its own figures are not the measurement
            runner = threading.Thread(target=_load, args=(entry, server.http_url, concurrency, data), daemon=True)
            runner.start()
            time.sleep(min(4.0, seconds / 4))  # the load is under way
            labels = _processes(server.process.pid)
            before = {pid: procfs.cpu_seconds(pid) for pid in labels}
            answered = triton_stats.read_all(server.http_url, [entry])[entry]
            started = time.monotonic()
            time.sleep(seconds)
            after = {pid: procfs.cpu_seconds(pid) for pid in labels}
            done = triton_stats.read_all(server.http_url, [entry])[entry]
            window = time.monotonic() - started
            for pid in _perf_analyzer_pids():
                os.kill(pid, signal.SIGKILL)
            runner.join()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    answers = (done - answered).inferences
    if not answers:
        raise RuntimeError(f"{entry}: no request was answered in the {window:.0f} s window; try a longer --seconds")
    throughput = answers / window  # in the same window as the CPU times
    used: dict[str, float] = {}
    for pid, label in labels.items():
        if before[pid] is not None and after[pid] is not None:
            used[label] = used.get(label, 0.0) + (after[pid] - before[pid]) / window
    return {"throughput": throughput, "concurrency": concurrency, "cores_used": used, "cores": usable_cores()}


def report(entry: str, figures: dict) -> str:
    throughput, used, cores = figures["throughput"], figures["cores_used"], figures["cores"]
    lines = [
        f"{entry} at concurrency {figures['concurrency']}: {throughput:.2f} images/s in the CPU window (Triton's statistics)",
        "",
        "| process | cores busy | CPU-ms per image |",
        "|---|---|---|",
    ]
    for label, share in sorted(used.items(), key=lambda item: -item[1]):
        lines.append(f"| {label} | {share:.2f} | {share / throughput * 1000:.2f} |")
    total = sum(used.values())
    per_image = total / throughput * 1000
    lines.append(f"| all | {total:.2f} of {cores} | {per_image:.2f} |")
    lines += ["", f"ceiling at this cost: {cores} cores / {per_image:.1f} CPU-ms = {cores / per_image * 1000:.3g} images/s"]
    return "\n".join(lines)


def _instances(text: str) -> dict[str, int]:
    pairs = [item.split("=") for item in text.split(",") if item]
    return {model: int(count) for model, count in pairs}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("entry", help="image model perf_analyzer drives (takes input_image), e.g. orientation")
    parser.add_argument("--instances", default="", help="model=count,... rewritten in the copy (default: as served)")
    parser.add_argument("--also", default="", help="models a BLS stage calls, model,... (e.g. ocr_cls,ocr_rec for ocr)")
    parser.add_argument("--pictures", choices=["test-set", "documents"], default="test-set", help="the 46 test pictures or the 16 document pages")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the CPU window")
    args = parser.parse_args(argv)
    print(
        report(
            args.entry, measure(args.entry, _instances(args.instances), args.concurrency, args.seconds, [m for m in args.also.split(",") if m], args.pictures)
        )
    )


if __name__ == "__main__":
    main()

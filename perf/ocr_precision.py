"""Precision of the OCR networks, price on the label: RapidOCR 3.10's own
pipeline with f32, bf16 and int8 PP-OCRv6 networks (docs/ocr-precision.md).

    python -m perf.ocr_precision pipelines --rounds 3  # CER, exact lines, lines identical to f32; pages/s, p50
    python -m perf.ocr_precision networks --rounds 15  # ms per call of det / rec on OpenVINO

Each prints its tables and writes them to perf/results/ocr_precision.md and
perf/results/ocr_precision_networks.md.

Configurations (CONFIGS): the library's default (onnxruntime, f32) is the
reference; the others swap in the int8 files (export/ocr_quantize.py,
made into build/ocr-precision/ when missing) and/or run on the openvino
engine (OpenVINO 2024.0, the served one) at a chosen inference precision:
RapidOCR 3.10 compiles at OpenVINO's default (bf16 on CPUs with AMX or
AVX512_BF16) and has no setting for it, so each network is compiled again
here with INFERENCE_PRECISION_HINT, 2 threads, PERFORMANCE_HINT LATENCY.
OpenVINO 2024.0 cannot read PP-OCRv6's recogniser as shipped (a Reshape to a
scalar): the openvino configurations use the export's fixed copy, the same
network. Pages: testsets.documents (16, seed 2026) and, where the CJK fonts
are installed, testsets.multilingual (12, seed 36): the test pages, never the
calibration pages.

Timings on a shared machine are noisy: every round runs each configuration
once, interleaved; the figures are medians over rounds."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import openvino as ov

from export.ocr_quantize import calibration_set, quantize_pair
from export.ocr import reshape_to_scalar_as_squeeze
from perf import report
from references.ocr import LIBRARY_FILES, package_dir
from runtime.paths import REPO_ROOT
from testsets import accuracy, documents, multilingual

WORK = REPO_ROOT / "build" / "ocr-precision"
THREADS = 2
PARTS = ("Det", "Cls", "Rec")


@dataclass(frozen=True)
class Config:
    """One way to run the pipeline: engine, which det / rec file, and the
    OpenVINO precision per network (det, cls, rec)."""

    engine: str  # onnxruntime | openvino
    det: str = "f32"  # f32 | int8: which file
    rec: str = "f32"
    hints: tuple[str, str, str] = ("f32", "f32", "f32")


CONFIGS = {
    "f32 onnxruntime (library default)": Config("onnxruntime"),
    "int8 onnxruntime": Config("onnxruntime", "int8", "int8"),
    "f32 openvino": Config("openvino"),
    "bf16 openvino (OpenVINO's default here)": Config("openvino", hints=("bf16", "bf16", "bf16")),
    "int8 openvino": Config("openvino", "int8", "int8"),
    "int8 det + bf16 rec openvino": Config("openvino", "int8", "f32", ("f32", "f32", "bf16")),
}
REFERENCE = "f32 onnxruntime (library default)"


def network_files() -> dict[str, Path]:
    """f32 (the library's), f32 readable by OpenVINO 2024.0, and int8 files."""
    models = package_dir("PP-OCRv6") / "models"
    names = LIBRARY_FILES["PP-OCRv6"]
    files = {"det-f32": models / names["det"], "rec-f32": models / names["rec"], "cls": models / names["cls"]}
    files |= {"rec-f32-openvino": WORK / "rec_f32_openvino.onnx", "det-int8": WORK / "det_int8.onnx", "rec-int8": WORK / "rec_int8.onnx"}
    if not files["rec-f32-openvino"].exists():
        WORK.mkdir(parents=True, exist_ok=True)
        model = onnx.load(str(files["rec-f32"]))
        reshape_to_scalar_as_squeeze(model)
        onnx.save(model, str(files["rec-f32-openvino"]))
    if not (files["det-int8"].exists() and files["rec-int8"].exists()):
        print(quantize_pair(files["det-f32"], files["rec-f32"], files["det-int8"], files["rec-int8"]))
    return files


def recompile(session, hint: str) -> None:
    """A rapidocr OpenVINO session compiled again at precision `hint`."""
    properties = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY"}
    session.session = ov.Core().compile_model(session.model, "CPU", properties).create_infer_request()


def pipeline(config: Config, files: dict[str, Path]):
    """RapidOCR 3.10 set up as `config` says, models loaded."""
    from rapidocr import EngineType, RapidOCR  # lazy: only the runs need the library

    openvino = config.engine == "openvino"
    rec_f32 = files["rec-f32-openvino" if openvino else "rec-f32"]
    paths = {"Det": files["det-int8"] if config.det == "int8" else files["det-f32"], "Cls": files["cls"], "Rec": files["rec-int8"] if config.rec == "int8" else rec_f32}
    params = {"Global.log_level": "warning", "EngineConfig.onnxruntime.intra_op_num_threads": THREADS}
    params |= {f"{part}.engine_type": EngineType(config.engine) for part in PARTS} | {f"{part}.model_path": str(paths[part]) for part in PARTS}
    engine = RapidOCR(params=params)
    loaded = (engine._load_det_model(), engine._load_cls_model(), engine._load_rec_model())
    if openvino:
        for network, hint in zip(loaded, config.hints):
            recompile(network.session, hint)
    return engine


def read(engine, picture: bytes) -> list[tuple[str, np.ndarray]]:
    result = engine(picture)
    return list(zip(result.txts, result.boxes)) if getattr(result, "txts", None) else []


def test_pages(multilingual_too: bool = True) -> dict[str, list[documents.DocumentPage]]:
    pages = {"documents": documents.pages()}
    if multilingual_too and multilingual.cjk_fonts_missing() is None:
        pages["multilingual"] = multilingual.pages()
    return pages


def run_config(name: str, read_multilingual: bool) -> dict:
    """One configuration in this process: a pass over the test pages (their
    lines; it also compiles every shape, as a warm server has), then one timed
    sequential pass over the document pages."""
    engine = pipeline(CONFIGS[name], network_files())
    pages = test_pages(read_multilingual)
    lines = {kind: [[(text, box.tolist()) for text, box in read(engine, page.data)] for page in kind_pages] for kind, kind_pages in pages.items()}
    latencies = []
    for page in pages["documents"]:
        begin = time.perf_counter()
        engine(page.data)
        latencies.append(time.perf_counter() - begin)
    return {"lines": lines, "latencies": latencies}


def run_child(name: str, read_multilingual: bool) -> dict:
    """`run_config` in a process of its own: an OpenVINO pipeline keeps
    about 1.4 GB after it is dropped (compiled shapes), so one at a time."""
    command = [sys.executable, "-m", "perf.ocr_precision", "child", "--config", name] + (["--multilingual"] if read_multilingual else [])
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def identical_lines(reference: list[list], lines: list[list]) -> int:
    """Reference lines read with the same text on the same page (each counted once)."""
    return sum(sum((Counter(t for t, _ in ours) & Counter(t for t, _ in theirs)).values()) for theirs, ours in zip(reference, lines))


def accuracy_table(lines: dict[str, dict]) -> str:
    pages = test_pages()
    rows = ["| configuration | pages | CER | exact lines | lines identical to f32 |", "|---|---|---|---|---|"]
    for name, by_kind in lines.items():
        for kind, read_lines in by_kind.items():
            score = accuracy.total(accuracy.score_page(page.lines, [(t, np.array(b)) for t, b in page_lines]) for page, page_lines in zip(pages[kind], read_lines))
            reference = lines[REFERENCE][kind]
            rows.append(f"| {name} | {kind} | {score.cer:.2%} | {score.exact_match:.1%} ({score.exact_lines}/{score.truth_lines}) | {identical_lines(reference, read_lines)}/{sum(map(len, reference))} |")
    return "**CER and exact lines against the recorded ground truth**\n\n" + "\n".join(rows)


def speed_table(latencies: dict[str, list[list[float]]]) -> str:
    rounds = len(next(iter(latencies.values())))
    rows = [
        f"**Sequential pages/s over the {len(latencies[REFERENCE][0])} document pages, {rounds} interleaved rounds (median of rounds), p50 over all**",
        "",
        "| configuration | pages/s | p50 ms per page | speed vs f32 onnxruntime |",
        "|---|---|---|---|",
    ]
    base = statistics.median(len(r) / sum(r) for r in latencies[REFERENCE])
    for name, runs in latencies.items():
        rate = statistics.median(len(r) / sum(r) for r in runs)
        rows.append(f"| {name} | {rate:.2f} | {1000 * statistics.median(t for r in runs for t in r):.0f} | {rate / base:.2f}x |")
    return "\n".join(rows)


def pipelines_tables(rounds: int) -> str:
    """Every configuration, `rounds` times interleaved, each run a fresh process."""
    lines, latencies = {}, {name: [] for name in CONFIGS}
    for round_index in range(rounds):
        for name in CONFIGS:
            result = run_child(name, read_multilingual=round_index == 0)
            lines.setdefault(name, result["lines"])
            latencies[name].append(result["latencies"])
            print(f"round {round_index + 1} {name}: {len(result['latencies']) / sum(result['latencies']):.2f} pages/s", file=sys.stderr, flush=True)
    return accuracy_table(lines) + "\n\n" + speed_table(latencies)


def network_inputs() -> dict[str, np.ndarray]:
    """A test page's detector input, and recogniser groups at W=320 and the widest near 1000."""
    captured = calibration_set([page.data for page in documents.pages()[:3]], rec_group_count=1000)
    full = [group for group in captured.rec if group.shape[0] == 6]
    wide = min(full, key=lambda group: abs(group.shape[3] - 1000))
    return {"det": captured.det[0], "rec W=320": next(g for g in full if g.shape[3] == 320), f"rec W={wide.shape[3]}": wide}


def networks_table(files: dict[str, Path], rounds: int) -> str:
    variants = {"f32": ("f32", "f32"), "bf16": ("f32", "bf16"), "int8": ("int8", "f32"), "int8 + bf16 rest": ("int8", "bf16")}
    core = ov.Core()
    rows = [
        f"**ms per call, each network alone: OpenVINO {ov.__version__}, {THREADS} threads, LATENCY; {rounds} interleaved rounds, median (min)**",
        "",
        "| input | shape | " + " | ".join(variants) + " |",
        "|---|---|" + "---|" * len(variants),
    ]
    for label, batch in network_inputs().items():
        part = label.split()[0]
        requests = {}
        for name, (file, hint) in variants.items():
            path = files[f"{part}-{file}-openvino"] if f"{part}-{file}-openvino" in files else files[f"{part}-{file}"]
            compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY"})
            requests[name] = compiled.create_infer_request()
            requests[name].infer([batch])
        times = {name: [] for name in variants}
        for _ in range(rounds):
            for name, request in requests.items():
                start = time.perf_counter()
                request.infer([batch])
                times[name].append(1000 * (time.perf_counter() - start))
        rows.append(f"| {label} | {'x'.join(map(str, batch.shape))} | " + " | ".join(f"{statistics.median(t):.0f} ({min(t):.0f})" for t in times.values()) + " |")
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=("pipelines", "networks", "child"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", choices=list(CONFIGS), help="child: the configuration to run")
    parser.add_argument("--multilingual", action="store_true", help="child: read the multilingual pages too")
    args = parser.parse_args(argv)
    files = network_files()
    if args.table == "child":
        print(json.dumps(run_config(args.config, args.multilingual)))
    else:
        name, tables = ("ocr_precision", pipelines_tables(args.rounds)) if args.table == "pipelines" else ("ocr_precision_networks", networks_table(files, args.rounds))
        print(tables)
        print(f"wrote {report.write_tables(name, tables, f'python -m perf.ocr_precision {args.table} --rounds {args.rounds}')}", file=sys.stderr)


if __name__ == "__main__":
    main()

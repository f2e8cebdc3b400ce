"""Instance, thread and engine sweeps of single networks with Triton's own
tool, triton-model-analyzer, in local launch mode on the PyPI server.

    make model-analyzer MA_ARGS="orientation_classifier ocr_rec"

Model Analyzer 1.46.0 (the PyPI release nearest Triton 2.51.0; there is no
1.45) lives in a venv of its own (build/venv-model-analyzer: it pins a newer
tritonclient than this repository's). For each network and each CPU engine
it profiles a linked copy of the network whose config.pbtxt is the engine's
(lint/engine_configs.py), with a manual sweep over instance count and engine
threads, perf_analyzer at the given concurrencies (the network's own
perf_analyzer binary from .venv, which knows the PyPI server's libraries).
Model Analyzer restarts the server per configuration (`triton_server_path`,
`--backend-directory` and the library path of runtime/). Its CSV tables
are copied to perf/results/model_analyzer/ and summarised in
perf/results/model_analyzer.md.

perf/engines.py measures the same choice inside the pipelines under load,
which Model Analyzer cannot (it profiles one model, or an ensemble whose
composing models it sweeps one config at a time)."""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from perf.instance_sweep import linked_copy
from lint import pbtxt
from lint.engine_configs import ENGINES, THREADS, engine_config, engine_of
from runtime.paths import BUILD_DIR, MODEL_REPOSITORY, REPO_ROOT
from runtime.distribution import assemble_backend_dir, assemble_lib_dir, find_distribution, server_environment
from runtime.server import free_port

ANALYZER = BUILD_DIR / "venv-model-analyzer" / "bin" / "model-analyzer"
RESULTS = REPO_ROOT / "perf" / "results"
# perf_analyzer needs concrete shapes for the dynamic dimensions
SHAPES = {"ocr_rec": "x:3,48,320", "ocr_det": "x:3,736,960", "text_encoder": None}


def analyzer_config(network: str, repository: Path, out: Path, engine: str, concurrency: list[int], instances: list[int], threads: list[int]) -> dict:
    dist = find_distribution()
    backend_dir = assemble_backend_dir(dist=dist)
    assemble_lib_dir(dist=dist)
    env = server_environment(dist)
    http, grpc, metrics = free_port(), free_port(), free_port()
    # time windows with a loose stability band: on 2 shared cores count windows
    # rarely agree within perf_analyzer's default 10% and the run never ends
    flags = {"measurement-mode": "time_windows", "measurement-interval": 4000, "stability-percentage": 25}
    if SHAPES.get(network):
        flags["shape"] = SHAPES[network]
    return {
        "model_repository": str(repository),
        "triton_launch_mode": "local",
        # free ports: a server of the user's may hold 8000-8002
        "triton_http_endpoint": f"localhost:{http}",
        "triton_grpc_endpoint": f"localhost:{grpc}",
        "triton_metrics_url": f"http://localhost:{metrics}/metrics",
        "triton_server_path": str(dist.server_binary),
        "triton_server_flags": {"backend-directory": str(backend_dir)},
        "triton_server_environment": {key: env[key] for key in ("LD_LIBRARY_PATH", "PATH") if key in env},
        "perf_analyzer_path": str(Path(sys.executable).parent / "perf_analyzer"),
        "output_model_repository_path": str(out / "output_repository"),
        "override_output_model_repository": True,
        "export_path": str(out / "export"),
        "checkpoint_directory": str(out / "checkpoints"),
        "run_config_search_disable": True,
        "profile_models": {
            network: {
                "cpu_only": True,
                "parameters": {"concurrency": concurrency},
                "perf_analyzer_flags": flags,
                "model_config_parameters": {
                    "instance_group": [[{"kind": "KIND_CPU", "count": instances}]],
                    "parameters": {THREADS[engine]: {"string_value": [str(t) for t in threads]}},
                },
            }
        },
    }


def profile(network: str, engine: str, concurrency: list[int], instances: list[int], threads: list[int]) -> list[dict]:
    """Model Analyzer's inference table rows for `network` on `engine`."""
    if not ANALYZER.exists():
        raise SystemExit(f"{ANALYZER} is missing: `make model-analyzer` installs it")
    scratch = Path(tempfile.mkdtemp(prefix=f"model-analyzer-{network}-{engine}-"))
    repository = scratch / "repository"
    linked_copy(MODEL_REPOSITORY / network, repository / network)
    shutil.rmtree(repository / network / "configs", ignore_errors=True)
    config = repository / network / "config.pbtxt"
    text = config.read_text()
    config.unlink()
    config.write_text(text if engine_of(pbtxt.parse(text)) == engine else engine_config(text, engine))
    (scratch / "export").mkdir()
    (scratch / "config.yaml").write_text(yaml.safe_dump(analyzer_config(network, repository, scratch, engine, concurrency, instances, threads)))
    subprocess.run([str(ANALYZER), "profile", "-f", str(scratch / "config.yaml")], cwd=scratch, check=True)
    tables = sorted((scratch / "export").rglob("metrics-model-inference.csv"))
    if not tables:
        raise SystemExit(f"model-analyzer wrote no inference table under {scratch / 'export'}")
    kept = RESULTS / "model_analyzer" / f"{network}-{engine}.csv"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tables[0], kept)
    with open(tables[0], newline="") as handle:
        rows = [dict(row, engine=engine) for row in csv.DictReader(handle)]
    for row in rows:  # which threads each of Model Analyzer's numbered configs ran
        tried = scratch / "output_repository" / row["Model Config Path"] / "config.pbtxt"
        parameters = pbtxt.parse(tried.read_text()).parameters if tried.exists() else {}
        row["threads"] = parameters[THREADS[engine]].string_value if THREADS[engine] in parameters else "?"
    return rows


def summary(network: str, rows: list[dict]) -> str:
    columns = [c for c in rows[0] if c in ("Model Config Path", "Instance Group", "threads", "Concurrency", "Throughput (infer/sec)", "p99 Latency (ms)")]
    lines = [f"### {network}", "", "| engine | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        lines.append(f"| {row['engine']} | " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="*", default=["orientation_classifier", "ocr_rec"])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--instances", default="1,2")
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args(argv)
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    sections = []
    for network in args.networks:
        rows = []
        for engine in args.engines.split(","):
            rows += profile(network, engine, ints(args.concurrency), ints(args.instances), ints(args.threads))
        sections.append(summary(network, rows))
    command = "make model-analyzer" + (f' MA_ARGS="{" ".join(argv if argv is not None else sys.argv[1:])}"' if (argv or sys.argv[1:]) else "")
    intro = "Triton Model Analyzer 1.46.0, local launch mode on the PyPI server, manual sweep (perf/model_analyzer.py); CSVs in model_analyzer/."
    text = f"# Model Analyzer sweeps\n\n{intro}\n\nCommand: `{command}`\n\n" + "\n\n".join(sections) + "\n"
    (RESULTS / "model_analyzer.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

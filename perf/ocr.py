"""OCR: the served model sets and precisions beside the RapidOCR libraries a
user would call instead, for speed and for accuracy.

Pictures: the 16 text-dense document pages of testsets/documents.py (forms,
invoices, articles, receipts, with the ground truth of every line), timed
and scored; the multilingual pages of testsets/multilingual.py (German,
French, Chinese, mixed scripts), scored; the OCR test set (testsets/ocr.py),
checked for parity only.

Systems:
- served, each an OCR-only tritonserver of its own started here: PP-OCRv6
  f32 (config.pbtxt, the default), bf16 and int8 (--model-config-name=bf16 /
  int8), PP-OCRv4 (ppocrv4). perf_analyzer sends the pages to `ocr` at
  concurrency 4 (pages/s) and 1 (p50);
- libraries, warm, each called sequentially in a process of its own
  (perf/rapidocr_baseline.py): rapidocr 3.10 on onnxruntime (its default
  engine, and the parity reference), on openvino at OpenVINO's default
  precision and forced to f32 (OpenVINO 2026.4, build/venv-rapidocr3-openvino);
  rapidocr-openvino 1.4.4 at its default precision and forced to f32;
  rapidocr-onnxruntime 1.4.4.
Every system is scored against the ground truth (testsets/accuracy.py:
character error rate, exact line match) and compared with the reference
(pages whose lines are identical); a plot sets accuracy against pages/s.

The targets are judged on paired rounds, because this machine's speed drifts
by more than the margins within minutes: each round runs the served f32 set
at concurrency 4 and 1, the fastest served precision whose CER is within 0.3
points of f32's at concurrency 4, then one sequential pass of the fastest
rapidocr 3.10 configuration that gives the reference's lines, and one of the
fastest default configuration (rapidocr 3.10 on either engine, or
rapidocr-openvino, at the precision OpenVINO picks); the ratios are taken
within each round and their median reported."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np

from clients import triton_stats
from clients.ocr_client import OcrClient
from lint import pbtxt
from perf.baseline_server import BaselineServer
from perf.harness import closed_loop, picture_inputs, run_perf_analyzer, sequential
from perf.report import Figure, Report, Row, Table, usable_cores
from references.ocr import LibraryOCR
from runtime import procfs
from runtime.paths import MODEL_REPOSITORY, REPO_ROOT
from runtime.server import TritonServer, free_port, served_preload
from runtime.watchdog import server_stubs
from testsets import accuracy
from testsets.documents import pages as document_pages
from testsets.multilingual import cjk_fonts_missing
from testsets.multilingual import pages as multilingual_pages
from testsets.ocr import samples

NEEDS_SERVER = False  # one OCR-only server per served configuration, started here
OCR_MODELS = ("image_decode", "ocr", "ocr_bls", "ocr_det_pre", "ocr_det", "ocr_recognize", "ocr_cls", "ocr_rec")
STAGES = ("image_decode", "ocr_det_pre", "ocr_det", "ocr_recognize", "ocr_cls", "ocr_rec")
SERVED = {
    "served PP-OCRv6 f32": "",
    "served PP-OCRv6 bf16": "bf16",
    "served PP-OCRv6 int8": "int8",
    "served PP-OCRv6 fast": "fast",
    "served PP-OCRv4": "ppocrv4",
}
"""Label -> --model-config-name ("" for config.pbtxt)."""
F32 = "served PP-OCRv6 f32"
MAIN_PYTHON = Path(sys.executable)
V3_PYTHON = REPO_ROOT / "build" / "venv-rapidocr3-openvino" / "bin" / "python"
V1_PYTHON = REPO_ROOT / "build" / "venv-rapidocr-openvino" / "bin" / "python"
LIBRARIES = {
    "rapidocr3-onnxruntime": ("rapidocr 3.10 onnxruntime", MAIN_PYTHON),
    "rapidocr3-openvino": ("rapidocr 3.10 openvino (default precision)", V3_PYTHON),
    "rapidocr3-openvino-f32": ("rapidocr 3.10 openvino f32", V3_PYTHON),
    "rapidocr-openvino": ("rapidocr-openvino 1.4.4 (default precision)", V1_PYTHON),
    "rapidocr-openvino-f32": ("rapidocr-openvino 1.4.4 f32", V1_PYTHON),
    "rapidocr-onnxruntime": ("rapidocr-onnxruntime 1.4.4", MAIN_PYTHON),
}
"""perf/rapidocr_baseline.py flavour -> (label, the venv's python)."""
FLAVOUR_OF = {label: flavour for flavour, (label, _) in LIBRARIES.items()}
REFERENCE = "rapidocr 3.10 onnxruntime"
SAME_LINES_CANDIDATES = ("rapidocr 3.10 onnxruntime", "rapidocr 3.10 openvino (default precision)", "rapidocr 3.10 openvino f32")
DEFAULT_CONFIGURATIONS = ("rapidocr 3.10 onnxruntime", "rapidocr 3.10 openvino (default precision)", "rapidocr-openvino 1.4.4 (default precision)")
CER_MARGIN = 0.003
"""How much character error rate a faster precision may add to f32's (0.3 points)."""
CONCURRENCY = 4

Line = tuple[str, list[float], float]  # text, the box's 8 coordinates, score


@dataclass
class System:
    label: str
    lines: dict[str, list[list[Line]]] = field(default_factory=dict)
    """Picture set name -> the lines of each picture."""
    rows: list[Row] = field(default_factory=list)
    """Served: concurrency 1 and CONCURRENCY; libraries: one sequential row."""
    cpu_ms: float = 0.0
    """CPU time per document page, one page at a time, every thread (served: the server and its stubs)."""

    @property
    def throughput(self) -> float:
        """Pages/s: served at CONCURRENCY, libraries sequential."""
        return self.rows[-1].throughput

    @property
    def p50_ms(self) -> float:
        """p50 of one page at a time (served at concurrency 1, libraries sequential)."""
        return self.rows[0].p50_ms

    def score(self, truth: list[list]) -> accuracy.PageScore:
        return accuracy.total(
            accuracy.score_page(page_truth, [(text, np.reshape(box, (4, 2))) for text, box, _ in page])
            for page_truth, page in zip(truth, self.lines["documents"], strict=True)
        )


@dataclass
class Pictures:
    """The picture sets, their bytes and ground truth."""

    data: dict[str, list[bytes]]
    truth: dict[str, list[list]]

    @classmethod
    def load(cls) -> Pictures:
        documents = document_pages()
        data, truth = {"documents": [p.data for p in documents]}, {"documents": [p.lines for p in documents]}
        if cjk_fonts_missing() is None:
            multilingual = multilingual_pages()
            data["multilingual"], truth["multilingual"] = [p.data for p in multilingual], [p.lines for p in multilingual]
        data["test set"] = [s.data for s in samples() if s.name != "large"]
        return cls(data, truth)


def missing_files(config_name: str) -> list[str]:
    """The network files a configuration serves that the export has not written."""
    missing = []
    for model in OCR_MODELS:
        path = MODEL_REPOSITORY / model / ("configs/" + config_name + ".pbtxt" if config_name else "config.pbtxt")
        if path.exists():
            filename = pbtxt.parse(path.read_text()).default_model_filename
            if filename and not (MODEL_REPOSITORY / model / "1" / filename).exists():
                missing.append(f"{model}/1/{filename}")
    return missing


def ocr_repository(target: Path) -> Path:
    """The OCR models as a tree of symlinks (the repository's own files), made once."""
    if target.exists():
        return target
    for model in OCR_MODELS:
        shutil.copytree(MODEL_REPOSITORY / model, target / model, copy_function=os.symlink, ignore=shutil.ignore_patterns("__pycache__"))
    return target


class ServedOcr:
    """An OCR-only server for one --model-config-name, kept up while the suite runs."""

    def __init__(self, label: str, config_name: str, scratch: Path):
        repository = ocr_repository(scratch / (config_name or "default"))
        extra = [f"--model-config-name={config_name}"] if config_name else []
        self.label = label
        self.server = TritonServer(repositories=[repository], preload=served_preload(), extra_args=extra).start(timeout=600)
        self.client = OcrClient(self.server.http_url)

    def read(self, pictures: list[bytes]) -> list[list[Line]]:
        return [[(line["text"], line["box"], line["text_score"]) for line in self.client.recognize(picture)] for picture in pictures]

    def stop(self) -> None:
        self.server.stop()


class LibraryWorker:
    """A library flavour kept warm in a process of its own: it reads every
    picture once when started, then times a sequential loop per `timed()`,
    idling on its stdin in between (no CPU while the others are measured).
    The loop runs over the first `timed` pictures (0: all)."""

    def __init__(self, flavour: str, pictures: list[bytes], timed: int = 0):
        self.label, python = LIBRARIES[flavour]
        if not python.exists():
            raise SystemExit(f"{python} is missing: `make perf` builds the baselines' venvs")
        self.folder = Path(tempfile.mkdtemp(prefix=f"perf-{flavour}-"))
        for index, picture in enumerate(pictures):
            (self.folder / f"{index:04d}").write_bytes(picture)
        script = REPO_ROOT / "perf" / "rapidocr_baseline.py"
        command = [str(python), str(script), "--flavour", flavour, "--pictures", str(self.folder), "--out", str(self.folder / "result.json"), "--timed", str(timed)]
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        self.process = subprocess.Popen(command, env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{flavour} worker did not start (exit {self.process.wait()})")
        self.lines: list[list[Line]] = [[tuple(line) for line in page] for page in json.loads((self.folder / "result.json").read_text())["lines"]]

    def timed(self, seconds: float = 0.0) -> dict[str, float]:
        """throughput (pictures/s), p50_ms and p95_ms of a loop for `seconds`, at least one pass."""
        self.process.stdin.write(f"{seconds}\n")
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"{self.label} worker exited (code {self.process.wait()})")
        return json.loads(answer)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def split_by_set(pictures: Pictures, flat: list) -> dict[str, list]:
    """A flat per-picture list (all sets, in Pictures.data order) -> per set."""
    out, start = {}, 0
    for name, data in pictures.data.items():
        out[name] = flat[start : start + len(data)]
        start += len(data)
    return out


def identical_pages(mine: list[list[Line]], theirs: list[list[Line]]) -> int:
    return sum([text for text, _, _ in a] == [text for text, _, _ in b] for a, b in zip(mine, theirs, strict=True))


def parity(mine: list[list[Line]], theirs: list[list[Line]]) -> str:
    """Lines identical in text, the largest corner and score gaps over them."""
    same = total = 0
    corner = score = 0.0
    for page_mine, page_theirs in zip(mine, theirs, strict=True):
        total += len(page_theirs)
        if [t for t, _, _ in page_mine] != [t for t, _, _ in page_theirs]:
            continue
        same += len(page_theirs)
        for (_, box, s), (_, ref_box, ref_s) in zip(page_mine, page_theirs):
            corner = max(corner, float(np.abs(np.subtract(box, ref_box)).max()))
            score = max(score, abs(s - ref_s))
    return f"{same}/{total} lines identical (largest corner gap {corner:.2f} px, score gap {score:.1e})"


@dataclass(frozen=True)
class Round:
    f32: float
    fast: float
    f32_p50: float
    same_lines: float
    same_lines_p50: float
    default: float


def relabel(row: Row, label: str) -> Row:
    return Row(label, row.concurrency, row.throughput, row.p50_ms, row.p95_ms)


def served_pass(server: TritonServer, inputs: Path, pages: int, concurrency: int, passes: int) -> Row:
    return run_perf_analyzer("ocr", server.http_url, concurrency, inputs, request_count=max(passes * pages, concurrency))


def paired_rounds(f32: ServedOcr, fast: ServedOcr, same: LibraryWorker, default: LibraryWorker, inputs: Path, pages: int, rounds: int, passes: int) -> list[Round]:
    measured = []
    for _ in range(rounds):
        loaded, alone = served_pass(f32.server, inputs, pages, CONCURRENCY, passes), served_pass(f32.server, inputs, pages, 1, 1)
        quick = served_pass(fast.server, inputs, pages, CONCURRENCY, passes)
        same_pass, default_pass = same.timed(), default.timed()
        measured.append(Round(loaded.throughput, quick.throughput, alone.p50_ms, same_pass["throughput"], same_pass["p50_ms"], default_pass["throughput"]))
    return measured


def targets(measured: list[Round], fast: str, same: str, default: str, cers: dict[str, float]) -> list[str]:
    """The issue's targets from the paired rounds (median of the rounds' ratios)."""

    def median(ratio) -> float:
        return statistics.median(ratio(r) for r in measured)

    rounds = "; ".join(
        f"{r.f32:.2f} / {r.fast:.2f} / {r.same_lines:.2f} / {r.default:.2f} pages/s, p50 {r.f32_p50:,.0f} / {r.same_lines_p50:,.0f} ms" for r in measured
    )
    return [
        f"Paired rounds ({len(measured)}): pages/s of {F32} and {fast} at concurrency {CONCURRENCY}, {same} and {default} sequential; "
        f"p50 of {F32} at concurrency 1 and of {same}: {rounds}.",
        f"- {F32} at concurrency {CONCURRENCY}: **{median(lambda r: r.f32 / r.same_lines):.2f}x** {same} "
        f"(the fastest rapidocr 3.10 configuration that gives the reference's lines; target >= 1.0x); "
        f"p50 at concurrency 1: **{median(lambda r: r.f32_p50 / r.same_lines_p50):.2f}** of its own (target <= 1.1).",
        f"- {fast} (the fastest served precision within {CER_MARGIN:.1%} CER of f32: {cers[fast]:.2%} against {cers[F32]:.2%}): "
        f"**{median(lambda r: r.fast / r.same_lines):.2f}x** {same} (target >= 1.5x) and "
        f"**{median(lambda r: r.fast / r.default):.2f}x** {default} (the fastest default configuration: {model_set_of(default)} "
        f"at OpenVINO's default precision, bf16 on CPUs with AMX or AVX512_BF16; target >= 1.0x).",
    ]


def model_set_of(label: str) -> str:
    return "PP-OCRv4" if "1.4.4" in label or "PP-OCRv4" in label else "PP-OCRv6"


def dominated(systems: list[System], cers: dict[str, float]) -> str:
    """Whether any system is both faster and more accurate than a served row."""
    found = [
        (mine.label, f"{other.label} beats {mine.label}")
        for mine in systems
        if mine.label in SERVED
        for other in systems
        if other.label not in SERVED and other.throughput > mine.throughput and cers[other.label] < cers[mine.label]
    ]
    if not found:
        return "No library is both faster and more accurate than a served row."
    text = "Dominated served rows: " + "; ".join(line for _, line in found) + "."
    if all(model_set_of(label) == "PP-OCRv4" for label, _ in found):
        text += (
            " PP-OCRv4 is the previous model set, served one switch away for deployments that depend on its output;"
            " a PP-OCRv6 configuration faster than it is also more accurate."
        )
    return text


def accuracy_table(systems: list[System], pictures: Pictures) -> str:
    reference = next(s for s in systems if s.label == REFERENCE)
    header = "| system | pages/s | p50 ms | CER documents | exact lines documents | pages identical to the reference |"
    sets = [name for name in ("multilingual",) if name in pictures.truth]
    header += "".join(f" CER {name} | exact lines {name} |" for name in sets)
    lines = [f"**OCR accuracy and speed on {len(pictures.data['documents'])} document pages** (reference: {REFERENCE})", "", header, "|" + "---|" * (header.count("|") - 1)]
    for system in systems:
        documents = system.score(pictures.truth["documents"])
        cells = [system.label, f"{system.throughput:.2f}", f"{system.p50_ms:,.0f}", f"{documents.cer:.2%}", f"{documents.exact_match:.1%}",
                 f"{identical_pages(system.lines['documents'], reference.lines['documents'])}/{len(reference.lines['documents'])}"]
        for name in sets:
            score = accuracy.total(
                accuracy.score_page(truth, [(text, np.reshape(box, (4, 2))) for text, box, _ in page])
                for truth, page in zip(pictures.truth[name], system.lines[name], strict=True)
            )
            cells += [f"{score.cer:.2%}", f"{score.exact_match:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_plot(systems: list[System], cers: dict[str, float]):
    def draw(path: Path) -> None:
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # after the backend is chosen

        figure, axis = plt.subplots(figsize=(7.5, 5))
        for system in systems:
            served = system.label in SERVED
            axis.scatter(system.throughput, cers[system.label] * 100, marker="o" if served else "s", color="tab:blue" if served else "tab:grey")
            axis.annotate(system.label, (system.throughput, cers[system.label] * 100), textcoords="offset points", xytext=(5, 4), fontsize=7)
        axis.set_xlabel("document pages/s (served: concurrency 4; libraries: sequential)")
        axis.set_ylabel("character error rate on the ground truth, %")
        axis.grid(True, alpha=0.3)
        axis.set_title("OCR: accuracy against speed (lower right is better; circles are served)", fontsize=9)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)

    return Figure("accuracy", "character error rate against pages/s", draw)


def cpu_seconds(server: TritonServer) -> float:
    """CPU time (user + system) used so far by tritonserver and its stubs."""
    return sum(filter(None, (procfs.cpu_seconds(pid) for pid in [server.process.pid, *(stub.pid for stub in server_stubs(server.process.pid))])))


def cpu_ms_per_page(served: ServedOcr, pages: list[bytes]) -> float:
    """The CPU time the server and its stubs spend per page, one page at a time."""
    before = cpu_seconds(served.server)
    served.read(pages)
    return (cpu_seconds(served.server) - before) / len(pages) * 1000


def ceilings(systems: list[System]) -> str:
    """Pages/s if every core did nothing but each system's work: the physical ceiling on this machine."""
    cores = usable_cores()
    return (
        f"CPU time per document page, one page at a time, and the ceiling it sets on {cores} cores: "
        + "; ".join(f"{s.label} {s.cpu_ms:,.0f} CPU-ms, {cores * 1000 / s.cpu_ms:.2f} pages/s" for s in systems if s.cpu_ms)
        + "."
    )


def time_shares(served: ServedOcr, inputs: Path, pages: int) -> str:
    before = triton_stats.read_all(served.server.http_url, STAGES)
    served_pass(served.server, inputs, pages, CONCURRENCY, 1)
    after = triton_stats.read_all(served.server.http_url, STAGES)
    busy = {m: after[m] for m in STAGES if (after[m] - before[m]).executions}
    return triton_stats.time_shares({m: before[m] for m in busy}, busy)


def test_set_table(f32: ServedOcr, pictures: list[bytes], seconds: float) -> Table:
    """The test set: served f32 beside rapidocr 3.10 direct and behind a plain asyncio web server."""
    inputs = picture_inputs(pictures, "ocr")
    rows = [run_perf_analyzer("ocr", f32.server.http_url, c, inputs, measurement_ms=int(seconds * 1000), fallback_requests=len(pictures)) for c in (1, CONCURRENCY)]
    library = LibraryOCR("PP-OCRv6")
    rows.append(sequential(library, pictures, seconds, "rapidocr 3.10 direct (sequential)"))
    with BaselineServer("ocr", free_port(), mode="async") as plain:
        rows.append(closed_loop(lambda i: (plain.post(pictures[i % len(pictures)]), 1)[1], CONCURRENCY, duration_s=seconds, label="rapidocr 3.10 async web server"))
    return Table(f"OCR: {len(pictures)} test pictures (testsets/ocr.py without the >2000 px one), PP-OCRv6 f32, one per request", "images", rows, "rapidocr 3.10 direct (sequential)")


def run(server, concurrencies, quick: bool = False) -> Report:
    seconds, rounds, passes = (6, 1, 1) if quick else (20, 3, 2)
    pictures = Pictures.load()
    every = [picture for data in pictures.data.values() for picture in data]
    documents = pictures.data["documents"]
    inputs = picture_inputs(documents, "ocr-documents")
    scratch = Path(tempfile.mkdtemp(prefix="perf-ocr-"))
    systems: dict[str, System] = {}
    notes: list[str] = []
    # one system at a time for the accuracy pass and its rows: all of them at once do not fit in memory
    for flavour in LIBRARIES:
        worker = LibraryWorker(flavour, every, timed=len(documents))  # documents come first in `every`
        try:
            timing = worker.timed(seconds)
        finally:
            worker.close()
        row = Row(worker.label, 1, timing["throughput"], timing["p50_ms"], timing["p95_ms"])
        systems[worker.label] = System(worker.label, split_by_set(pictures, worker.lines), [row], timing["cpu_ms"])
    for label, config_name in SERVED.items():
        if missing_files(config_name):
            notes.append(f"{label} not measured: {', '.join(missing_files(config_name))} not exported (make export).")
            continue
        instance = ServedOcr(label, config_name, scratch)
        try:
            systems[label] = System(label, split_by_set(pictures, instance.read(every)))
            systems[label].rows = [relabel(served_pass(instance.server, inputs, len(documents), at, passes if at > 1 else 1), label) for at in (1, CONCURRENCY)]
            systems[label].cpu_ms = cpu_ms_per_page(instance, documents)
        finally:
            instance.stop()
    with contextlib.ExitStack() as stack:
        ordered = list(systems.values())
        cers = {s.label: s.score(pictures.truth["documents"]).cer for s in ordered}
        reference = systems[REFERENCE]
        same = max((systems[label] for label in SAME_LINES_CANDIDATES if identical_pages(systems[label].lines["documents"], reference.lines["documents"]) == len(documents)), key=lambda s: s.throughput)
        default = max((systems[label] for label in DEFAULT_CONFIGURATIONS), key=lambda s: s.throughput)
        eligible = [systems[label] for label in SERVED if label in systems and label.startswith("served PP-OCRv6") and cers[label] <= cers[F32] + CER_MARGIN]
        fast = max(eligible, key=lambda s: s.throughput)
        # the paired rounds' four systems, up together
        served, workers = {}, {}
        for label in dict.fromkeys((F32, fast.label)):
            served[label] = ServedOcr(label, SERVED[label], scratch)
            stack.callback(served[label].stop)
        for label in dict.fromkeys((same.label, default.label)):
            workers[label] = LibraryWorker(FLAVOUR_OF[label], documents)
            stack.callback(workers[label].close)
        measured = paired_rounds(served[F32], served[fast.label], workers[same.label], workers[default.label], inputs, len(documents), rounds, passes)
        notes += targets(measured, fast.label, same.label, default.label, cers)
        notes.append(dominated(ordered, cers))
        notes.append(accuracy_table(ordered, pictures))
        notes.append(
            "Parity of the served sets with their libraries (every picture set): "
            + "; ".join(
                f"{name}: {F32} vs {REFERENCE} {parity(systems[F32].lines[name], reference.lines[name])}, "
                f"served PP-OCRv4 vs rapidocr-onnxruntime 1.4.4 {parity(systems['served PP-OCRv4'].lines[name], systems['rapidocr-onnxruntime 1.4.4'].lines[name])}"
                for name in pictures.data
            )
            + "."
        )
        notes.append(ceilings(ordered))
        notes.append(f"Where the time of {F32} goes at concurrency {CONCURRENCY} (mean per execution): {time_shares(served[F32], inputs, len(documents))}.")
        speed = Table(
            f"OCR: {len(documents)} text-dense document pages (testsets/documents.py), one per request; served at concurrency 1 and {CONCURRENCY}, libraries sequential",
            "pages",
            [row for s in ordered for row in s.rows],
            same.label,
        )
        test_set = test_set_table(served[F32], pictures.data["test set"], seconds)
    shutil.rmtree(scratch, ignore_errors=True)
    return Report([speed, test_set], notes, figures=[accuracy_plot(ordered, cers)])

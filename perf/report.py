"""What a perf suite reports and how it is written: tables of rows (a system
at a concurrency: throughput, p50, p95), notes, and for each suite
`perf/results/<suite>.md` (the tables, the command and machine that produced
them) and `perf/results/<suite>.png` (throughput against p50 latency, one
line per system through its concurrencies; systems measured without a
latency, such as an offline batched limit, as a vertical line)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runtime.server import served_preload

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    system: str
    concurrency: int | None  # None: measured without concurrent clients (offline)
    throughput: float  # items/s
    p50_ms: float | None = None
    p95_ms: float | None = None


@dataclass
class Table:
    title: str
    unit: str  # "images", "texts", ...: throughput is <unit>/s
    rows: list[Row]
    reference: str | None = None
    """The system each throughput is compared with (at the same concurrency, else its first row)."""

    def ratio(self, row: Row) -> float | None:
        if self.reference is None:
            return None
        same = [r for r in self.rows if r.system == self.reference and r.concurrency == row.concurrency]
        anywhere = [r for r in self.rows if r.system == self.reference]
        base = (same or anywhere or [None])[0]
        return row.throughput / base.throughput if base and base.throughput else None

    def markdown(self) -> str:
        header = f"| system | concurrency | {self.unit}/s | p50 ms | p95 ms |" + (f" vs {self.reference} |" if self.reference else "")
        lines = [f"**{self.title}**", "", header, "|" + "---|" * (header.count("|") - 1)]
        for r in self.rows:
            cells = [r.system, "-" if r.concurrency is None else str(r.concurrency), f"{r.throughput:.1f}", _ms(r.p50_ms), _ms(r.p95_ms)]
            if self.reference:
                ratio = self.ratio(r)
                cells.append("-" if ratio is None else f"{ratio:.2f}x")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def value(self, system: str, concurrency: int | None) -> float:
        return next(r.throughput for r in self.rows if r.system == system and r.concurrency == concurrency)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


@dataclass(frozen=True)
class Figure:
    """A plot of a suite's own beside the standard one: perf/results/<suite>_<name>.png."""

    name: str
    caption: str
    draw: Callable[[Path], None]


@dataclass
class Report:
    tables: list[Table]
    notes: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def markdown(self) -> str:
        return "\n\n".join([t.markdown() for t in self.tables] + self.notes)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, bounded by a
    cgroup v2 CPU quota where one is set): what the ceilings divide by."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, round(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{usable_cores()} cores{', ' + cpu if cpu else ''}, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def allocator() -> str:
    """The malloc the benchmark servers run with (the one `make serve` preloads)."""
    preload = served_preload()
    return f"server malloc {Path(preload).name} (as make serve)" if preload else "server malloc glibc"


def write(name: str, report: Report, command: str, results_dir: Path = RESULTS_DIR) -> list[Path]:
    """perf/results/<name>.md and .png; returns their paths."""
    results_dir.mkdir(parents=True, exist_ok=True)
    markdown = results_dir / f"{name}.md"
    picture = results_dir / f"{name}.png"
    heading = _heading(name, command) + f"; {allocator()}.\nPlot: [{picture.name}]({picture.name}) (throughput against p50 latency).\n\n"
    extra = {figure: results_dir / f"{name}_{figure.name}.png" for figure in report.figures}
    links = "".join(f"Plot: [{path.name}]({path.name}) ({figure.caption}).\n" for figure, path in extra.items())
    markdown.write_text(heading + links + ("\n" if links else "") + report.markdown() + "\n")
    plot(report, picture, f"{name}: {command}")
    for figure, path in extra.items():
        figure.draw(path)
    return [markdown, picture, *extra.values()]


def write_tables(name: str, body: str, command: str, results_dir: Path = RESULTS_DIR) -> Path:
    """perf/results/<name>.md for a study measured outside a server (tables
    in markdown, no plot); returns its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    markdown = results_dir / f"{name}.md"
    markdown.write_text(_heading(name, command) + ".\n\n" + body.rstrip() + "\n")
    return markdown


def _heading(name: str, command: str) -> str:
    return f"# perf: {name}\n\n`{command}` on {time.strftime('%Y-%m-%d')}, {machine()}"


def plot(report: Report, path: Path, title: str) -> None:
    # matplotlib only when plotting (a slow import), and its backend chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg")

    if not report.tables:
        return

    figure, axes = plt.subplots(1, len(report.tables), figsize=(6.5 * len(report.tables), 4.8), squeeze=False)
    for axis, table in zip(axes[0], report.tables):
        systems = list(dict.fromkeys(r.system for r in table.rows))
        for system in systems:
            rows = [r for r in table.rows if r.system == system]
            timed = sorted((r for r in rows if r.p50_ms is not None), key=lambda r: r.concurrency or 0)
            if timed:
                axis.plot([r.throughput for r in timed], [r.p50_ms for r in timed], marker="o", label=system)
                for r in timed:
                    axis.annotate(str(r.concurrency), (r.throughput, r.p50_ms), textcoords="offset points", xytext=(4, 4), fontsize=7)
            for r in rows:
                if r.p50_ms is None:
                    axis.axvline(r.throughput, linestyle="--", color="grey", label=f"{system} (no latency)")
        axis.set_xlabel(f"{table.unit}/s")
        axis.set_ylabel("p50 latency, ms")
        axis.set_yscale("log")
        axis.set_title(table.title, fontsize=9)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(title + "   (numbers at the points: concurrency)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

"""The README names only what exists, and the docs' links resolve (no server).

Every `make TARGET` the README shows is a Makefile target, every make
variable it names (`NAME=...`, and the names in its variables table) is
defined or read by the Makefile, every model of its pipelines table is a
folder of model_repository/ and every tensor it lists is an input or output
of that row's models; every relative link of README.md and docs/*.md points
at a file that exists and, with a #fragment, at one of its headings; the
README stays short."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from lint import pbtxt
from runtime.paths import MODEL_REPOSITORY, REPO_ROOT

README = REPO_ROOT / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
MAX_README_LINES = 320

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
MAKE_COMMAND = re.compile(r"\bmake\s+((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)([a-z][a-z0-9-]*)")
ASSIGNMENT = re.compile(r"\b([A-Z][A-Z0-9_]{2,})=")
CAPS_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")


def code_text(markdown: str) -> str:
    """What the reader would type: fenced blocks and inline code spans."""
    return "\n".join(FENCE.findall(markdown) + INLINE_CODE.findall(markdown))


def prose(markdown: str) -> str:
    """The text outside code, where links and headings live."""
    return INLINE_CODE.sub("", FENCE.sub("", markdown))


def section(markdown: str, title: str) -> str:
    """The body of the `## title` section, up to the next `## `."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def makefile_targets(text: str) -> set[str]:
    targets = set()
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_. $()/-][^:=#]*?)\s*::?(?!=)", line)
        if match and not line.startswith(("\t", "#")):
            targets.update(name for name in match.group(1).split() if re.fullmatch(r"[a-z][a-z0-9-]*", name))
    return targets


def makefile_variables(text: str) -> set[str]:
    """Variables the Makefile assigns, exports or reads."""
    names = set(re.findall(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:\?|:|\+)?=", text, re.M))
    names |= set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text))
    for exported in re.findall(r"^export\s+([A-Za-z0-9_ ]+)$", text, re.M):
        names.update(exported.split())
    return names


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation
    but hyphens and underscores removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for _, title in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def pipeline_rows(readme: str) -> list[list[str]]:
    rows = [line for line in section(readme, "Pipelines").splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    header, body = cells[0], cells[2:]
    assert header[1:4] == ["entry models", "inputs", "outputs"], header
    return body


def model_tensors(model: str) -> tuple[set[str], set[str]]:
    config = pbtxt.parse((MODEL_REPOSITORY / model / "config.pbtxt").read_text())
    return {t.name for t in config.input}, {t.name for t in config.output}


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; how and why go to docs/"


def test_make_targets_named_in_readme_exist():
    targets = makefile_targets(MAKEFILE.read_text())
    named = {match.group(2) for match in MAKE_COMMAND.finditer(code_text(README.read_text()))}
    assert named, "the README shows no make command"
    assert not named - targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"


def test_make_variables_named_in_readme_exist():
    readme = README.read_text()
    named = set(ASSIGNMENT.findall(code_text(readme)))
    variables_table = section(readme, "Make targets and variables")
    named |= {name for name in INLINE_CODE.findall(variables_table) if CAPS_NAME.match(name)}
    missing = named - makefile_variables(MAKEFILE.read_text())
    assert not missing, f"README names make variables the Makefile neither sets nor reads: {sorted(missing)}"


def test_pipelines_table_names_real_models_and_tensors():
    for row in pipeline_rows(README.read_text()):
        models = INLINE_CODE.findall(row[1])
        assert models, f"no model named in {row[0]!r}"
        missing = [model for model in models if not (MODEL_REPOSITORY / model / "config.pbtxt").is_file()]
        assert not missing, f"{row[0]}: not in model_repository/: {missing}"
        entries = [model_tensors(model) for model in models]
        for column, side in ((2, 0), (3, 1)):
            declared = set().union(*(tensors[side] for tensors in entries))
            for name in INLINE_CODE.findall(row[column]):
                if re.fullmatch(r"[A-Za-z_][\w.*]*", name) and not fnmatch.filter(declared, name):
                    pytest.fail(f"{row[0]}: '{name}' is no {'input' if side == 0 else 'output'} of {models}")


@pytest.mark.parametrize("document", [README, *DOCS], ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_relative_links_resolve(document: Path):
    broken = []
    for target in LINK.findall(prose(document.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        linked = (document.parent / path_part).resolve() if path_part else document
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no heading #{fragment} in {linked.name})")
    assert not broken, f"{document.relative_to(REPO_ROOT)}: broken links: {broken}"

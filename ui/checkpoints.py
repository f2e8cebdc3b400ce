"""Which tabs serve a seeded stand-in checkpoint: the export records of this
checkout (build/exports/<name>.json, written by `make export`) say where the
served weights came from. A server this checkout did not export has no
record here, and the page then says nothing about its weights."""

from __future__ import annotations

import json

from export.manifest import BY_NAME

# the one command that exports real weights, per export (names as in the README)
REAL_WEIGHTS = {
    "vit": ".venv/bin/python export/vit.py --source google/vit-base-patch16-224-in21k",
    "clip": ".venv/bin/python export/clip.py --source openai/clip-vit-base-patch32",
    "stable_diffusion": ".venv/bin/python export/stable_diffusion.py --source runwayml/stable-diffusion-v1-5",
}
STAND_IN = "default"  # the recorded source of an export run without --source


def exported_source(name: str) -> str | None:
    """The --source of the last export into the repository, or None without a record."""
    path = BY_NAME[name].record_path()
    try:
        return json.loads(path.read_text()).get("source")
    except (OSError, ValueError):
        return None


def stand_in_notice(name: str) -> str:
    """Markdown for the tab: empty unless the served checkpoint is the seeded stand-in."""
    if exported_source(name) != STAND_IN:
        return ""
    return (
        f"**Stand-in weights.** The `{name}` models serve a small checkpoint with seeded random weights "
        f"(exported without `--source`): the pipeline is real, its answers are not meaningful. "
        f"Real weights: `{REAL_WEIGHTS[name]}`, then restart the server."
    )

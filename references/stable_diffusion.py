"""diffusers' own StableDiffusionPipeline in this process, from the kept
checkpoint (checkpoints/stable_diffusion): the reference the tests compare
`stable_diffusion` with, and the baselines of the benchmark."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np


class DiffusersSD:
    def __init__(self, checkpoint: Path | str, threads: int | None = None, scheduler: str | None = None):
        # here, not at the top: diffusers and torch take seconds to import,
        # and the importers of this module's names need neither
        import diffusers
        import torch  # likewise

        if threads:
            torch.set_num_threads(threads)
        self.pipe = diffusers.StableDiffusionPipeline.from_pretrained(
            str(checkpoint), safety_checker=None, feature_extractor=None, requires_safety_checker=False, dtype=torch.float32
        )
        if scheduler:
            self.pipe.scheduler = getattr(diffusers, scheduler).from_config(self.pipe.scheduler.config)
        self.pipe.set_progress_bar_config(disable=True)

    def __call__(
        self,
        prompts: Sequence[str],
        steps: int = 20,
        guidance_scale: float = 7.5,
        seed: int = 0,
        negative_prompts: Sequence[str] | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> np.ndarray:
        """uint8 [N, H, W, 3]: output_type="np", then (x * 255).round()."""
        import torch  # as in __init__

        # a scheduler of its own per call: its state changes every step, and
        # a threaded server calls this from several threads at once
        pipe = copy.copy(self.pipe)
        pipe.scheduler = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)
        with torch.inference_mode():
            images = pipe(
                list(prompts),
                negative_prompt=list(negative_prompts) if negative_prompts is not None else None,
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                generator=torch.Generator().manual_seed(seed),
                height=height,
                width=width,
                output_type="np",
            ).images
        return (images * 255).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def within(a: np.ndarray, b: np.ndarray, levels: int = 2) -> float:
    """The share of pixel values that differ by at most `levels`."""
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16)) <= levels))

"""What the served pipeline takes from the checkpoint (written by the export
into the BLS models' version folders as pipeline.json), so latent channels,
latent scaling, the VAE scale factor and the default size are never constants."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

PIPELINE_FILE = "pipeline.json"
SCHEDULER_FILE = "scheduler_config.json"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True)
class PipelineParams:
    latent_channels: int
    """The UNet's (and the VAE's latent) channels."""
    scaling_factor: float
    """The VAE's latent scaling (0.18215 for SD 1.x)."""
    vae_scale_factor: int
    """Pixels per latent cell: 2 ** (number of VAE blocks - 1)."""
    size_multiple: int
    """Heights and widths the exported networks take: the VAE scale factor
    times the UNet's downsampling (the traced UNet has no odd-size path)."""
    default_height: int
    default_width: int
    scheduler_class: str

    @classmethod
    def from_pipeline(cls, pipe) -> "PipelineParams":
        """From a diffusers StableDiffusionPipeline (the export)."""
        vae_scale_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        sample_size = pipe.unet.config.sample_size
        height, width = (sample_size, sample_size) if isinstance(sample_size, int) else sample_size
        return cls(
            latent_channels=int(pipe.unet.config.in_channels),
            scaling_factor=float(pipe.vae.config.scaling_factor),
            vae_scale_factor=vae_scale_factor,
            size_multiple=vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1),
            default_height=int(height) * vae_scale_factor,
            default_width=int(width) * vae_scale_factor,
            scheduler_class=type(pipe.scheduler).__name__,
        )

    @classmethod
    def from_file(cls, path: Path) -> "PipelineParams":
        return cls(**json.loads(Path(path).read_text()))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

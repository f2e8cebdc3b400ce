"""Stable Diffusion text-to-image as diffusers' StableDiffusionPipeline runs
it, with every network a Triton model: prompts -> token ids (here) ->
sd_text_encoder -> a denoising loop (diffusers' own scheduler, here;
sd_unet per step, both halves of classifier-free guidance in one call) ->
sd_vae_decoder -> uint8 pixels. Latents are drawn as diffusers draws them
from torch.Generator().manual_seed(seed) on the CPU, so the same request
gives diffusers' picture."""

from __future__ import annotations

import concurrent.futures
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from pipelines.serving.tensors import RequestError
from pipelines.stable_diffusion.params import PIPELINE_FILE, SCHEDULER_FILE, TOKENIZER_DIR, PipelineParams
from pipelines.stable_diffusion.tokens import PromptTokenizer
from pipelines.text.tokenizer import decode_utf8

MAX_STEPS = 1000


@dataclass(frozen=True)
class Settings:
    """Defaults and limits (config parameters of the BLS models)."""

    default_steps: int = 20
    default_guidance_scale: float = 7.5
    default_seed: int = 0
    max_prompts: int = 8
    max_side: int | None = None
    """Largest height or width; None: twice the checkpoint's default (the
    UNet's self-attention grows with the square of the latent area)."""
    preview_max_side: int = 64
    scheduler: str | None = None
    """Another diffusers scheduler class by name, configured from the checkpoint's scheduler_config.json."""
    unet_split: int = 1
    """How many sd_unet calls a step's batch goes out as (BlsNetworks)."""

    @classmethod
    def from_parameters(cls, parameter: Callable[[str], str | None]) -> "Settings":
        values = {}
        for name, kind in (
            ("default_steps", int),
            ("default_guidance_scale", float),
            ("default_seed", int),
            ("max_prompts", int),
            ("max_side", int),
            ("preview_max_side", int),
            ("scheduler", str),
            ("unet_split", int),
        ):
            text = parameter(name)
            if text not in (None, ""):
                values[name] = kind(text)
        return cls(**values)


@dataclass(frozen=True)
class Job:
    prompts: list[str]
    negative_prompts: list[str] | None
    steps: int
    guidance_scale: float
    seed: int
    height: int
    width: int
    preview_every: int = 0

    @property
    def guided(self) -> bool:
        """Classifier-free guidance, as diffusers decides it."""
        return self.guidance_scale > 1.0


def _scalar(tensors: dict, name: str, default, kind):
    array = tensors.get(name)
    if array is None:
        return default
    if array.size != 1:
        raise RequestError(f"input '{name}': expected one value, got {array.size}")
    return kind(array.reshape(-1)[0])


def _texts(tensors: dict, name: str) -> list[str]:
    try:
        return decode_utf8(list(tensors[name].reshape(-1)))
    except ValueError as error:
        raise RequestError(f"input '{name}': {error}") from None


def parse_job(tensors: dict, params: PipelineParams, settings: Settings, max_steps: int = MAX_STEPS) -> Job:
    """The request's settings, checked; RequestError names the tensor."""
    prompts = _texts(tensors, "prompt")
    if not 1 <= len(prompts) <= settings.max_prompts:
        raise RequestError(f"input 'prompt': 1 to {settings.max_prompts} prompts per request, got {len(prompts)}")
    negative = None
    if tensors.get("negative_prompt") is not None:
        negative = _texts(tensors, "negative_prompt")
        if len(negative) != len(prompts):
            raise RequestError(f"input 'negative_prompt': {len(negative)} negative prompts for {len(prompts)} prompts (give one per prompt)")
    steps = _scalar(tensors, "steps", settings.default_steps, int)
    if not 1 <= steps <= max_steps:
        raise RequestError(f"input 'steps': must be 1 to {max_steps}, got {steps}")
    guidance = _scalar(tensors, "guidance_scale", settings.default_guidance_scale, float)
    if not math.isfinite(guidance) or guidance < 0:
        raise RequestError(f"input 'guidance_scale': must be a finite number >= 0, got {guidance}")
    seed = _scalar(tensors, "seed", settings.default_seed, int)
    if seed < 0:
        raise RequestError(f"input 'seed': must be >= 0, got {seed}")
    sizes = {}
    max_side = settings.max_side or 2 * max(params.default_height, params.default_width)
    for name, default in (("height", params.default_height), ("width", params.default_width)):
        value = _scalar(tensors, name, default, int)
        if value % params.size_multiple or not params.size_multiple <= value <= max_side:
            raise RequestError(
                f"input '{name}': must be a multiple of {params.size_multiple} (the VAE scale factor {params.vae_scale_factor} "
                f"times the UNet's downsampling) from {params.size_multiple} to {max_side}, got {value}"
            )
        sizes[name] = value
    preview_every = _scalar(tensors, "preview_every", 0, int)
    if preview_every < 0:
        raise RequestError(f"input 'preview_every': must be >= 0 (0: no previews), got {preview_every}")
    return Job(prompts, negative, steps, guidance, seed, sizes["height"], sizes["width"], preview_every)


class DiffusionNetworks(Protocol):
    """The three network models, called with batched numpy arrays."""

    def text_encoder(self, input_ids: np.ndarray) -> np.ndarray: ...

    def unet(self, sample: np.ndarray, timestep: np.ndarray, encoder_hidden_states: np.ndarray) -> np.ndarray: ...

    def vae_decoder(self, latent_sample: np.ndarray) -> np.ndarray: ...


class BlsNetworks:
    """DiffusionNetworks as BLS calls to sd_text_encoder, sd_unet, sd_vae_decoder
    (blocking: each request runs on its own thread or instance, and the
    dynamic batchers join the calls of concurrent requests). With
    `unet_split` > 1 a step's UNet batch goes out as that many calls at once,
    so that one request's halves of guidance run on sd_unet's instances side
    by side."""

    def __init__(self, bls, unet_split: int = 1):
        self.bls = bls
        self.unet_split = unet_split
        # concurrent requests of a decoupled model share it: wide enough for all
        self._calls = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="sd-unet") if unet_split > 1 else None

    def text_encoder(self, input_ids):
        return self.bls.infer("sd_text_encoder", {"input_ids": input_ids}, ["last_hidden_state"])["last_hidden_state"]

    def unet(self, sample, timestep, encoder_hidden_states):
        parts = min(self.unet_split, len(sample))
        if parts <= 1:
            return self._unet(sample, timestep, encoder_hidden_states)
        pieces = list(zip(*(np.array_split(array, parts) for array in (sample, timestep, encoder_hidden_states))))
        later = [self._calls.submit(self._unet, *piece) for piece in pieces[1:]]
        return np.concatenate([self._unet(*pieces[0]), *(call.result() for call in later)])

    def _unet(self, sample, timestep, encoder_hidden_states):
        inputs = {
            "sample": np.ascontiguousarray(sample),
            "timestep": np.ascontiguousarray(timestep),
            "encoder_hidden_states": np.ascontiguousarray(encoder_hidden_states),
        }
        return self.bls.infer("sd_unet", inputs, ["out_sample"])["out_sample"]

    def vae_decoder(self, latent_sample):
        return self.bls.infer("sd_vae_decoder", {"latent_sample": latent_sample}, ["sample"])["sample"]


def to_uint8(decoded: np.ndarray) -> np.ndarray:
    """VAE output [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3], as diffusers'
    postprocess (x / 2 + 0.5, clamped) then (x * 255).round()."""
    unit = np.clip(decoded.astype(np.float32) / 2 + 0.5, 0, 1)
    return np.ascontiguousarray((unit.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8))


StepCallback = Callable[[int, np.ndarray | None], None]
"""on_step(step number from 1, preview uint8 [N, h, w, 3] or None)."""


class StableDiffusion:
    def __init__(self, version_dir: Path, networks: DiffusionNetworks, settings: Settings = Settings()):
        # diffusers and torch only where the pipeline runs: the serving
        # requirements (requirements/serve.txt) leave them out
        import diffusers

        version_dir = Path(version_dir)
        self.params = PipelineParams.from_file(version_dir / PIPELINE_FILE)
        self.settings = settings
        self.networks = networks
        self.tokenizer = PromptTokenizer(version_dir / TOKENIZER_DIR)
        name = settings.scheduler or self.params.scheduler_class
        scheduler_class = getattr(diffusers, name, None)
        if not (inspect.isclass(scheduler_class) and issubclass(scheduler_class, diffusers.SchedulerMixin)):
            raise ValueError(f"scheduler {name!r} is not a diffusers scheduler class")
        self.scheduler_class = scheduler_class
        self.scheduler_config = scheduler_class.load_config(str(version_dir), config_name=SCHEDULER_FILE)
        step_parameters = inspect.signature(scheduler_class.step).parameters
        self.step_takes_eta = "eta" in step_parameters
        self.step_takes_generator = "generator" in step_parameters
        # the scheduler's own limit (PNDM with steps_offset 1 takes at most 999)
        config = self.scheduler_config
        self.max_steps = min(MAX_STEPS, int(config.get("num_train_timesteps", MAX_STEPS)) - int(config.get("steps_offset", 0) or 0))

    def parse(self, tensors: dict) -> Job:
        return parse_job(tensors, self.params, self.settings, self.max_steps)

    def encode(self, job: Job) -> np.ndarray:
        """[uncond..., cond...] embeddings with guidance (diffusers' order), else cond."""
        texts = ((job.negative_prompts or [""] * len(job.prompts)) if job.guided else []) + job.prompts
        return self.networks.text_encoder(self.tokenizer(texts).astype(np.int32))

    def generate(self, job: Job, on_step: StepCallback | None = None, cancelled: Callable[[], bool] | None = None) -> np.ndarray | None:
        """uint8 [N, H, W, 3], or None when `cancelled()` turned true."""
        import torch  # as in __init__
        from diffusers.utils.torch_utils import randn_tensor  # likewise

        hidden = self.encode(job)
        scheduler = self.scheduler_class.from_config(self.scheduler_config)
        scheduler.set_timesteps(job.steps, device="cpu")
        generator = torch.Generator().manual_seed(job.seed)
        factor = self.params.vae_scale_factor
        shape = (len(job.prompts), self.params.latent_channels, job.height // factor, job.width // factor)
        latents = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
        latents = latents * scheduler.init_noise_sigma
        extra = {}
        if self.step_takes_eta:
            extra["eta"] = 0.0
        if self.step_takes_generator:
            extra["generator"] = generator
        for index, t in enumerate(scheduler.timesteps):
            if cancelled is not None and cancelled():
                return None
            model_input = torch.cat([latents] * 2) if job.guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            timestep = np.full((model_input.shape[0], 1), float(t), np.float32)
            noise = torch.from_numpy(self.networks.unet(model_input.numpy(), timestep, hidden))
            if job.guided:
                uncond, cond = noise.chunk(2)
                noise = uncond + job.guidance_scale * (cond - uncond)
            output = scheduler.step(noise, t, latents, **extra, return_dict=True)
            latents = output.prev_sample
            if on_step is not None:
                step = index + 1
                preview = None
                if job.preview_every and (step % job.preview_every == 0):
                    estimate = getattr(output, "pred_original_sample", None)
                    preview = self.preview(latents if estimate is None else estimate)
                on_step(step, preview)
        return self.decode(latents.numpy())

    def decode(self, latents: np.ndarray) -> np.ndarray:
        return to_uint8(self.networks.vae_decoder(np.ascontiguousarray(latents / self.params.scaling_factor, dtype=np.float32)))

    def preview(self, latents) -> np.ndarray:
        """A small picture of the current estimate, by the same VAE, every k-th pixel."""
        pixels = self.decode(latents.numpy())
        stride = max(1, math.ceil(max(pixels.shape[1:3]) / self.settings.preview_max_side))
        return np.ascontiguousarray(pixels[:, ::stride, ::stride])

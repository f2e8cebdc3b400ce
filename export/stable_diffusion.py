"""Export a Stable Diffusion checkpoint for `stable_diffusion` and `stable_diffusion_stream`.

    python export/stable_diffusion.py [--source PATH_OR_HF_NAME] [--format tensorrt,onnx] [--fp16]
                                      [--output-dir model_repository] [--checkpoint-dir checkpoints/stable_diffusion]

Without --source (and no recorded one) a tiny Stable Diffusion 1.x pipeline is
built from configs with seeded random weights (the sizes diffusers' own tests
use), with the real CLIP tokenizer rebuilt from open_clip's BPE file; with
it, any diffusers SD 1.x/2.x checkpoint (a local folder with text_encoder/,
tokenizer/, unet/, vae/, scheduler/, or a hub name). Writes
checkpoints/stable_diffusion/ (the reference), sd_text_encoder/1/model.onnx,
sd_unet/1/model.onnx (and model_ort.onnx, ONNX Runtime's CPU fusions of it,
which the onnxruntime config serves) and sd_vae_decoder/1/model.onnx, each
checked against torch, and into the version folders of both BLS models the tokenizer, the
scheduler's scheduler_config.json and pipeline.json (latent channels,
scaling factor, VAE scale factor, default size). The configs' dims follow
the checkpoint."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from export.common.checkpoints import copy_checkpoint_files, fill_checkpoint, save_seeded
from export.common.cli import ExportArguments, done
from export.common.clip_tokenizer import CONTEXT_LENGTH, TOKENIZER_FILES, VOCAB_SIZE, build_tokenizer
from export.common.formats import Profile, place_network, run_tensorrt_plan
from export.common.networks import Forward, export_onnx, run_onnx, staged_onnx
from export.common.ort_fusion import FUSED_FILENAME, fuse_for_onnxruntime_cpu
from lint.pbtxt import edit_config
from pipelines.stable_diffusion.params import PIPELINE_FILE, SCHEDULER_FILE, TOKENIZER_DIR, PipelineParams
from pipelines.stable_diffusion.tokens import PromptTokenizer

SEED = 0
SEEDED_NAME = "seeded tiny Stable Diffusion (export/stable_diffusion.py SEEDED_*)"
BLS_MODELS = ("stable_diffusion", "stable_diffusion_stream")
COMPONENTS = ("text_encoder", "tokenizer", "unet", "vae", "scheduler")

# diffusers' own tests' tiny Stable Diffusion (tests/pipelines/stable_diffusion), with
# CLIP's real vocabulary so the real tokenizer fits: 64x64 pictures from 32x32 latents.
SEEDED_TEXT_ENCODER = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=5,
    num_attention_heads=4,
    layer_norm_eps=1e-5,
    max_position_embeddings=CONTEXT_LENGTH,
    bos_token_id=VOCAB_SIZE - 2,
    eos_token_id=VOCAB_SIZE - 1,
    pad_token_id=VOCAB_SIZE - 1,
)
SEEDED_UNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=2,
    sample_size=32,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
    norm_num_groups=32,
)
SEEDED_VAE = dict(
    block_out_channels=(32, 64),
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    latent_channels=4,
    norm_num_groups=32,
)
# Stable Diffusion 1.5's scheduler (PNDM, PLMS steps only)
SEEDED_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    skip_prk_steps=True,
    set_alpha_to_one=False,
    steps_offset=1,
)


def seeded_pipeline(text_encoder: dict, unet: dict, vae: dict) -> list:
    """A StableDiffusionPipeline of these configs (weights from torch's current seed)."""
    unet_model = UNet2DConditionModel(**unet)
    vae_model = AutoencoderKL(**vae)
    text_model = CLIPTextModel(CLIPTextConfig(**text_encoder))
    with tempfile.TemporaryDirectory() as scratch:
        build_tokenizer(Path(scratch))
        tokenizer = CLIPTokenizer.from_pretrained(scratch)
    pipe = StableDiffusionPipeline(
        vae=vae_model.eval(),
        text_encoder=text_model.eval(),
        tokenizer=tokenizer,
        unet=unet_model.eval(),
        scheduler=PNDMScheduler(**SEEDED_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return [pipe]


def seeded_checkpoint(target: Path, seed: int = SEED, text_encoder: dict | None = None, unet: dict | None = None, vae: dict | None = None) -> Path:
    """A StableDiffusionPipeline of the SEEDED_* configs (or the ones given)
    with weights drawn after torch.manual_seed(seed), saved as diffusers saves it."""
    parts = partial(seeded_pipeline, text_encoder or SEEDED_TEXT_ENCODER, unet or SEEDED_UNET, vae or SEEDED_VAE)
    return save_seeded(target, seed, parts)


def copy_checkpoint(source: Path, target: Path) -> Path:
    """The components the pipeline uses (no safety checker) into `target`."""
    copy_checkpoint_files(source, target, "diffusers Stable Diffusion", COMPONENTS)
    index_file = Path(source) / "model_index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    index = {key: value for key, value in index.items() if key.startswith("_") or key in COMPONENTS}
    index.setdefault("_class_name", "StableDiffusionPipeline")
    index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    (target / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    if not (target / "tokenizer" / "tokenizer.json").exists():  # a slow-tokenizer-only checkpoint: save the fast one
        CLIPTokenizer.from_pretrained(str(target / "tokenizer")).save_pretrained(str(target / "tokenizer"))
    return target


def load_pipeline(checkpoint: Path):
    """diffusers' StableDiffusionPipeline of the kept checkpoint, on the CPU in FP32."""
    return StableDiffusionPipeline.from_pretrained(
        str(checkpoint), safety_checker=None, feature_extractor=None, requires_safety_checker=False, dtype=torch.float32
    )


def text_hidden_states(text_encoder, input_ids):
    """CLIPTextModel's last_hidden_state, as diffusers' encode_prompt takes it (no attention mask)."""
    return text_encoder(input_ids.to(torch.int64))[0]


def noise_prediction(unet, sample, timestep, encoder_hidden_states):
    """The UNet's noise prediction; one timestep per batch item ([B, 1])."""
    return unet(sample, timestep.reshape(-1), encoder_hidden_states, return_dict=False)[0]


def decoded_pixels(vae, latent_sample):
    """AutoencoderKL.decode (post-quant conv + decoder) of already unscaled latents."""
    return vae.decode(latent_sample, return_dict=False)[0]


MAX_REL_DIFF = 1e-3
"""Max |onnx - torch| over max |torch|, per network, on random inputs."""
# ONNX Runtime's CPU fusions (export/common/ort_fusion.py), written beside model.onnx for
# the networks where they pay (the LARGE UNet's attention: docs/engines.md)
ORT_FUSIONS = {"sd_unet": "unet"}


def relative_diff(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-6))


def check_prompts() -> list[str]:
    long_prompt = " ".join(["a very detailed painting of a lighthouse on a cliff"] * 12)
    return ["", "a photo of an astronaut riding a horse", "Ein Foto eines Hundes", "一张猫的照片", "🚀 rocket launch", long_prompt]


@dataclass
class Network:
    """One network to export: the module, its inputs (in order), output and
    dynamic axes, its TensorRT profile; `checks`: the (inputs, torch's
    output) pairs its ONNX file must match, at a second size too where the
    spatial axes are dynamic."""

    module: torch.nn.Module
    feeds: dict[str, np.ndarray]
    output: str
    dynamic_axes: dict
    profile: dict[str, Profile]
    spatial: bool = False
    checks: list[tuple[dict, np.ndarray]] = field(init=False)

    def __post_init__(self):
        sizes = [self.feeds]
        if self.spatial:
            sizes.append({name: np.ascontiguousarray(a[:, :, : a.shape[2] // 2, : a.shape[3] // 2] if a.ndim == 4 else a) for name, a in self.feeds.items()})
        self.module.eval()
        with torch.inference_mode():
            self.checks = [(feeds, self.module(*(torch.from_numpy(a) for a in feeds.values())).numpy()) for feeds in sizes]

    def diff_to_torch(self, path: Path) -> float:
        return max(relative_diff(run_onnx(path, feeds, [self.output])[0], expected) for feeds, expected in self.checks)


def place_bls_files(repo: Path, checkpoint: Path, params: PipelineParams) -> None:
    """The tokenizer, scheduler config and pipeline.json of both BLS models' version folders."""
    for model_name in BLS_MODELS:
        version_dir = repo / model_name / "1"
        tokenizer_dir = version_dir / TOKENIZER_DIR
        tokenizer_dir.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            shutil.copyfile(checkpoint / "tokenizer" / name, tokenizer_dir / name)
        shutil.copyfile(checkpoint / "scheduler" / SCHEDULER_FILE, version_dir / SCHEDULER_FILE)
        (version_dir / PIPELINE_FILE).write_text(params.to_json())


def checked_token_ids(repo: Path, pipe, prompts: list[str]) -> np.ndarray:
    """The served tokenizer's ids, equal to those diffusers' encode_prompt gives."""
    ours = PromptTokenizer(repo / BLS_MODELS[0] / "1" / TOKENIZER_DIR)(prompts)
    theirs = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="np").input_ids
    if not np.array_equal(ours, theirs):
        raise SystemExit("export check failed: the served tokenizer's ids differ from diffusers' (CLIPTokenizer, padding max_length)")
    return theirs


def diffusion_networks(pipe, params: PipelineParams, token_ids: np.ndarray) -> dict[str, Network]:
    """The three networks, on random inputs of the checkpoint's sizes."""
    dim, channels = int(pipe.text_encoder.config.hidden_size), params.latent_channels
    latent = (channels, params.default_height // params.vae_scale_factor, params.default_width // params.vae_scale_factor)
    generator = torch.Generator().manual_seed(SEED)
    hidden = torch.randn((2, CONTEXT_LENGTH, dim), generator=generator).numpy()
    latents = torch.randn((2, *latent), generator=generator).numpy()
    spatial_axes = {0: "batch", 2: "height", 3: "width"}

    def latent_profile(name: str, batch_max: int) -> dict[str, Profile]:
        return {name: Profile((1, *latent), (batch_max // 2, *latent), (batch_max, *latent))}

    return {
        "sd_text_encoder": Network(
            Forward(pipe.text_encoder, text_hidden_states),
            {"input_ids": token_ids.astype(np.int32)},
            "last_hidden_state",
            {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}},
            {"input_ids": Profile((1, CONTEXT_LENGTH), (2, CONTEXT_LENGTH), (16, CONTEXT_LENGTH))},
        ),
        "sd_unet": Network(
            Forward(pipe.unet, noise_prediction),
            {"sample": latents, "timestep": np.array([[981.0], [1.0]], np.float32), "encoder_hidden_states": hidden},
            "out_sample",
            {"sample": spatial_axes, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch"}, "out_sample": spatial_axes},
            {
                **latent_profile("sample", 16),
                "timestep": Profile((1, 1), (8, 1), (16, 1)),
                "encoder_hidden_states": Profile((1, CONTEXT_LENGTH, dim), (8, CONTEXT_LENGTH, dim), (16, CONTEXT_LENGTH, dim)),
            },
            spatial=True,
        ),
        "sd_vae_decoder": Network(
            Forward(pipe.vae, decoded_pixels),
            {"latent_sample": latents},
            "sample",
            {"latent_sample": spatial_axes, "sample": spatial_axes},
            latent_profile("latent_sample", 8),
            spatial=True,
        ),
    }


def export_network(repo: Path, model_name: str, network: Network) -> list[str]:
    """model.onnx (and the fused model_ort.onnx where it pays), placed once they match torch; their lines of the summary."""
    with staged_onnx(repo / model_name / "1") as scratch:
        export_onnx(network.module, network.feeds, scratch / "model.onnx", network.output, network.dynamic_axes)
        diff = network.diff_to_torch(scratch / "model.onnx")
        report = [f"{model_name}: max relative |diff| {diff:.1e}"]
        if model_name in ORT_FUSIONS:
            operators = fuse_for_onnxruntime_cpu(scratch / "model.onnx", scratch / FUSED_FILENAME, ORT_FUSIONS[model_name])
            fused_diff = network.diff_to_torch(scratch / FUSED_FILENAME)
            fused = ", ".join(f"{n} {op}" for op, n in sorted(operators.items()))
            report.append(f"{model_name} {FUSED_FILENAME} ({fused}): max relative |diff| {fused_diff:.1e}")
            diff = max(diff, fused_diff)
        if diff > MAX_REL_DIFF:
            raise SystemExit(f"export check failed: {'; '.join(report)} (limit {MAX_REL_DIFF:g})")
    return report


def set_dims(repo: Path, channels: int, dim: int) -> None:
    """The configs' hidden size and latent channels, the checkpoint's."""
    edit_config(repo / "sd_text_encoder" / "config.pbtxt", dims={"last_hidden_state": [-1, dim]})
    edit_config(repo / "sd_unet" / "config.pbtxt", dims={"sample": [channels, -1, -1], "encoder_hidden_states": [-1, dim], "out_sample": [channels, -1, -1]})
    edit_config(repo / "sd_vae_decoder" / "config.pbtxt", dims={"latent_sample": [channels, -1, -1]})


def check_plan(plan_path: Path, model_name: str, network: Network, fp16: bool) -> None:
    feeds, expected = network.checks[0]
    diff = relative_diff(run_tensorrt_plan(plan_path, feeds, [network.output])[network.output], expected)
    limit = 5e-2 if fp16 else 1e-2
    print(f"{model_name}: TensorRT plan vs torch: max relative |diff| {diff:.1e} (limit {limit})")
    if diff > limit:
        raise RuntimeError(f"the plan's max relative difference with torch is {diff:.1e} (limit {limit})")


def place(args, model_name: str, network: Network) -> str:
    """The network's serving format, by --format priority."""
    model_dir = args.output_dir / model_name
    check = partial(check_plan, model_name=model_name, network=network, fp16=args.fp16)
    return f"{model_name} {place_network(model_dir / '1' / 'model.onnx', model_dir, args.formats, network.profile, args.fp16, check).format}"


def main(argv=None) -> int:
    args = ExportArguments("stable_diffusion", __doc__.splitlines()[0], "a seeded tiny Stable Diffusion", checkpoint=True).parse(argv)
    started = time.monotonic()
    origin = fill_checkpoint(args, seeded_checkpoint, copy_checkpoint, SEEDED_NAME)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = load_pipeline(args.checkpoint_dir)
    params = PipelineParams.from_pipeline(pipe)
    place_bls_files(args.output_dir, args.checkpoint_dir, params)
    prompts = check_prompts()
    networks = diffusion_networks(pipe, params, checked_token_ids(args.output_dir, pipe, prompts))
    report = [line for name, network in networks.items() for line in export_network(args.output_dir, name, network)]
    dim = int(pipe.text_encoder.config.hidden_size)
    set_dims(args.output_dir, params.latent_channels, dim)
    formats_used = [place(args, name, network) for name, network in networks.items()]
    latent_h, latent_w = params.default_height // params.vae_scale_factor, params.default_width // params.vae_scale_factor
    summary = (
        f"exported {origin} -> {', '.join(formats_used)} in {time.monotonic() - started:.1f} s; "
        f"D = {dim}, latents {params.latent_channels}x{latent_h}x{latent_w}, pictures {params.default_height}x{params.default_width}, "
        f"scheduler {params.scheduler_class}; token ids identical to diffusers' on {len(prompts)} prompts; " + "; ".join(report)
    )
    return done(args, started, summary)


if __name__ == "__main__":
    sys.exit(main())

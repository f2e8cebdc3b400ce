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
from pathlib import Path

import numpy as np
import torch

from export.common.cli import ExportArguments, export_onnx, fill_checkpoint, finish
from export.common.clip_tokenizer import CONTEXT_LENGTH, TOKENIZER_FILES, VOCAB_SIZE, build_tokenizer
from export.common.formats import Profile, place_network, run_tensorrt_plan
from export.common.onnx_files import move_onnx
from export.common.ort_fusion import FUSED_FILENAME, fuse_for_onnxruntime_cpu
from pipelines.stable_diffusion.params import PIPELINE_FILE, SCHEDULER_FILE, TOKENIZER_DIR, PipelineParams
from pipelines.stable_diffusion.tokens import PromptTokenizer
from lint.pbtxt import edit_config

SEED = 0
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


def seeded_checkpoint(target: Path, seed: int = SEED, text_encoder: dict | None = None, unet: dict | None = None, vae: dict | None = None) -> Path:
    """A StableDiffusionPipeline of the SEEDED_* configs (or the ones given)
    with weights drawn after torch.manual_seed(seed), saved as diffusers saves it."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet_model = UNet2DConditionModel(**(unet or SEEDED_UNET))
    vae_model = AutoencoderKL(**(vae or SEEDED_VAE))
    text_model = CLIPTextModel(CLIPTextConfig(**(text_encoder or SEEDED_TEXT_ENCODER)))
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
    target.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(target))
    return target


def copy_checkpoint(source: Path, target: Path) -> Path:
    """The components the pipeline uses (no safety checker) into `target`."""
    source = Path(source)
    missing = [name for name in COMPONENTS if not (source / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{source} is not a diffusers Stable Diffusion checkpoint: {', '.join(missing)} missing")
    target.mkdir(parents=True, exist_ok=True)
    for name in COMPONENTS:
        shutil.copytree(source / name, target / name)
    index = json.loads((source / "model_index.json").read_text()) if (source / "model_index.json").exists() else {}
    index = {key: value for key, value in index.items() if key.startswith("_") or key in COMPONENTS}
    index.setdefault("_class_name", "StableDiffusionPipeline")
    index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    (target / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    if not (target / "tokenizer" / "tokenizer.json").exists():  # a slow-tokenizer-only checkpoint: save the fast one
        from transformers import CLIPTokenizer

        CLIPTokenizer.from_pretrained(str(target / "tokenizer")).save_pretrained(str(target / "tokenizer"))
    return target


def load_pipeline(checkpoint: Path):
    """diffusers' StableDiffusionPipeline of the kept checkpoint, on the CPU in FP32."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        str(checkpoint), safety_checker=None, feature_extractor=None, requires_safety_checker=False, dtype=torch.float32
    )


class TextEncoder(torch.nn.Module):
    """CLIPTextModel's last_hidden_state, as diffusers' encode_prompt takes it (no attention mask)."""

    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids):
        return self.text_encoder(input_ids.to(torch.int64))[0]


class Unet(torch.nn.Module):
    """The noise prediction; one timestep per batch item ([B, 1])."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep.reshape(-1), encoder_hidden_states, return_dict=False)[0]


class VaeDecoder(torch.nn.Module):
    """AutoencoderKL.decode (post-quant conv + decoder) of already unscaled latents."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample, return_dict=False)[0]


MAX_REL_DIFF = 1e-3
"""Max |onnx - torch| over max |torch|, per network, on random inputs."""
# ONNX Runtime's CPU fusions (export/common/ort_fusion.py), written beside model.onnx for
# the networks where they pay: the LARGE UNet's attention at 32x32 latents, 1.13x per call
# (perf/results/engines_notes.md)
ORT_FUSIONS = {"sd_unet": "unet"}


def relative_diff(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-6))


def check_prompts() -> list[str]:
    long_prompt = " ".join(["a very detailed painting of a lighthouse on a cliff"] * 12)
    return ["", "a photo of an astronaut riding a horse", "Ein Foto eines Hundes", "一张猫的照片", "🚀 rocket launch", long_prompt]


def main(argv=None) -> int:
    args = ExportArguments("stable_diffusion", __doc__.splitlines()[0], "a seeded tiny Stable Diffusion", checkpoint=True).parse(argv)
    started = time.monotonic()
    repo = args.output_dir
    checkpoint = args.checkpoint_dir
    origin = fill_checkpoint(args.source, checkpoint, seeded_checkpoint, copy_checkpoint, "seeded tiny Stable Diffusion (export/stable_diffusion.py SEEDED_*)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = load_pipeline(checkpoint)
    params = PipelineParams.from_pipeline(pipe)
    dim = int(pipe.text_encoder.config.hidden_size)
    channels = params.latent_channels
    latent_h, latent_w = params.default_height // params.vae_scale_factor, params.default_width // params.vae_scale_factor

    # the served tokenizer gives the ids diffusers' encode_prompt gives
    for model_name in BLS_MODELS:
        version_dir = repo / model_name / "1"
        tokenizer_dir = version_dir / TOKENIZER_DIR
        tokenizer_dir.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            shutil.copyfile(checkpoint / "tokenizer" / name, tokenizer_dir / name)
        shutil.copyfile(checkpoint / "scheduler" / SCHEDULER_FILE, version_dir / SCHEDULER_FILE)
        (version_dir / PIPELINE_FILE).write_text(params.to_json())
    prompts = check_prompts()
    ours = PromptTokenizer(repo / BLS_MODELS[0] / "1" / TOKENIZER_DIR)(prompts)
    theirs = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="np").input_ids
    if not np.array_equal(ours, theirs):
        print("export check failed: the served tokenizer's ids differ from diffusers' (CLIPTokenizer, padding max_length)", file=sys.stderr)
        return 1

    import onnxruntime as ort

    generator = torch.Generator().manual_seed(SEED)
    ids = theirs.astype(np.int32)
    hidden = torch.randn((2, CONTEXT_LENGTH, dim), generator=generator).numpy()
    latents = torch.randn((2, channels, latent_h, latent_w), generator=generator).numpy()
    timestep = np.array([[981.0], [1.0]], np.float32)
    networks = {
        "sd_text_encoder": (TextEncoder(pipe.text_encoder), {"input_ids": ids}, "last_hidden_state", {"input_ids": {0: "batch"}}),
        "sd_unet": (
            Unet(pipe.unet),
            {"sample": latents, "timestep": timestep, "encoder_hidden_states": hidden},
            "out_sample",
            {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch"}},
        ),
        "sd_vae_decoder": (VaeDecoder(pipe.vae), {"latent_sample": latents}, "sample", {"latent_sample": {0: "batch", 2: "height", 3: "width"}}),
    }
    report, expected_by_model = [], {}
    for model_name, (module, feeds, output, dynamic) in networks.items():
        module.eval()
        with torch.inference_mode():
            expected = module(*(torch.from_numpy(array) for array in feeds.values())).numpy()
        expected_by_model[model_name] = expected
        # another size: the spatial axes are dynamic
        checks = [(feeds, expected)]
        if model_name != "sd_text_encoder":
            small = {name: np.ascontiguousarray(array[:, :, : latent_h // 2, : latent_w // 2] if array.ndim == 4 else array) for name, array in feeds.items()}
            with torch.inference_mode():
                checks.append((small, module(*(torch.from_numpy(a) for a in small.values())).numpy()))

        def diff_to_torch(path: Path, output=output, checks=checks) -> float:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            return max(relative_diff(session.run([output], check_feeds)[0], check_expected) for check_feeds, check_expected in checks)

        with tempfile.TemporaryDirectory() as scratch:
            staged = Path(scratch) / "model.onnx"
            export_onnx(
                module, feeds, staged, output, {**dynamic, output: {0: "batch", 2: "height", 3: "width"} if model_name != "sd_text_encoder" else {0: "batch"}}
            )
            staged_files = {staged: "model.onnx"}
            diff = diff_to_torch(staged)
            report.append(f"{model_name}: max relative |diff| {diff:.1e}")
            if model_name in ORT_FUSIONS:
                fused = Path(scratch) / FUSED_FILENAME
                operators = fuse_for_onnxruntime_cpu(staged, fused, ORT_FUSIONS[model_name])
                fused_diff = diff_to_torch(fused)
                report.append(
                    f"{model_name} {FUSED_FILENAME} ({', '.join(f'{n} {op}' for op, n in sorted(operators.items()))}): max relative |diff| {fused_diff:.1e}"
                )
                staged_files[fused] = FUSED_FILENAME
                diff = max(diff, fused_diff)
            if diff > MAX_REL_DIFF:
                print(f"export check failed: {'; '.join(r for r in report if r.startswith(model_name))} (limit {MAX_REL_DIFF:g})", file=sys.stderr)
                return 1
            for path, name in staged_files.items():
                move_onnx(path, repo / model_name / "1" / name)

    edit_config(repo / "sd_text_encoder" / "config.pbtxt", dims={"last_hidden_state": [-1, dim]})
    edit_config(repo / "sd_unet" / "config.pbtxt", dims={"sample": [channels, -1, -1], "encoder_hidden_states": [-1, dim], "out_sample": [channels, -1, -1]})
    edit_config(repo / "sd_vae_decoder" / "config.pbtxt", dims={"latent_sample": [channels, -1, -1]})

    def latent_profile(name: str, batch_max: int) -> dict[str, Profile]:
        return {name: Profile((1, channels, latent_h, latent_w), (batch_max // 2, channels, latent_h, latent_w), (batch_max, channels, latent_h, latent_w))}

    profiles = {
        "sd_text_encoder": {"input_ids": Profile((1, CONTEXT_LENGTH), (2, CONTEXT_LENGTH), (16, CONTEXT_LENGTH))},
        "sd_unet": {
            **latent_profile("sample", 16),
            "timestep": Profile((1, 1), (8, 1), (16, 1)),
            "encoder_hidden_states": Profile((1, CONTEXT_LENGTH, dim), (8, CONTEXT_LENGTH, dim), (16, CONTEXT_LENGTH, dim)),
        },
        "sd_vae_decoder": latent_profile("latent_sample", 8),
    }
    formats_used = []
    for model_name, (_, feeds, output, _) in networks.items():

        def check_plan(plan_path: Path, model_name=model_name, feeds=feeds, output=output) -> None:
            got = run_tensorrt_plan(plan_path, feeds, [output])[output]
            diff = relative_diff(got, expected_by_model[model_name])
            limit = 5e-2 if args.fp16 else 1e-2
            print(f"{model_name}: TensorRT plan vs torch: max relative |diff| {diff:.1e} (limit {limit})")
            if diff > limit:
                raise RuntimeError(f"the plan's max relative difference with torch is {diff:.1e} (limit {limit})")

        placement = place_network(repo / model_name / "1" / "model.onnx", repo / model_name, args.formats, profiles[model_name], args.fp16, check_plan)
        formats_used.append(f"{model_name} {placement.format}")
    summary = (
        f"exported {origin} -> {', '.join(formats_used)} in {time.monotonic() - started:.1f} s; "
        f"D = {dim}, latents {channels}x{latent_h}x{latent_w}, pictures {params.default_height}x{params.default_width}, "
        f"scheduler {params.scheduler_class}; token ids identical to diffusers' on {len(prompts)} prompts; " + "; ".join(report)
    )
    print(summary)
    finish(args, "stable_diffusion", started, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

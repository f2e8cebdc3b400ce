"""stable_diffusion: perf_analyzer on `stable_diffusion` and on
`stable_diffusion_stream` (`--streaming`, gRPC: latency until the picture),
one prompt per request, beside diffusers' StableDiffusionPipeline called per
request in a plain threaded HTTP server and called in this process, on the
same checkpoint with the same steps, in one run. Two checkpoints: the small
default of `make export`, and a larger seeded one (`LARGE`: 256x256
pictures, where the networks rather than the Python hops dominate),
exported into a repository of its own and served by a second server. The
time per step is split into UNet compute and everything else from Triton's
statistics. The targets are judged on paired rounds (`paired_summary`): this
machine's speed drifts by 20-30% within minutes, so each round measures the
served pipeline and its baselines back to back and the ratio is taken within
the round."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

from clients import triton_stats
from clients.common import make_inputs
from perf.baseline_server import BaselineServer
from perf.harness import benchmark_server, closed_loop, run_perf_analyzer, sequential, write_input_data
from perf.report import Report, Row, Table
from references.stable_diffusion import DiffusersSD
from runtime.paths import MODEL_REPOSITORY, checkpoint_dir
from runtime.server import free_port

MODELS = ("sd_text_encoder", "sd_unet", "sd_vae_decoder", "stable_diffusion", "stable_diffusion_stream")
PER_REQUEST = "diffusers per-request server"
IN_PROCESS = "diffusers in-process"
STREAM_LABEL = "triton stable_diffusion_stream (--streaming; latency to the first step)"
PROMPTS = ["a photo of an astronaut riding a horse", "a watercolor of a lighthouse", "a bowl of fruit on a table", "a city street at night"]

LARGE = dict(
    text_encoder=dict(
        vocab_size=49408, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=77,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ),
    unet=dict(
        block_out_channels=(64, 128, 256), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4, cross_attention_dim=256,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=32,
    ),
    vae=dict(
        block_out_channels=(32, 64, 64, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    ),
)
"""UNet 64/128/256 channels with cross-attention at 32x32 and 16x16 latents,
text encoder width 256, VAE scale factor 8: 256x256 pictures."""


def inputs(steps: int, guidance: float, folder: Path) -> Path:
    samples = [
        {
            "prompt": np.array([p.encode()], dtype=np.object_),
            "steps": np.array([steps], np.int32),
            "guidance_scale": np.array([guidance], np.float32),
            "seed": np.array([i], np.int64),
        }
        for i, p in enumerate(PROMPTS)
    ]
    return write_input_data(samples, folder / "stable_diffusion.json")


def step_split(http_url: str, steps: int) -> str:
    """UNet compute against everything else per step, from the statistics
    of one request (no other traffic)."""
    client = httpclient.InferenceServerClient(http_url, network_timeout=600)
    try:
        before = {m: triton_stats.settled(client, m) for m in MODELS[:4]}
        tensors = {"prompt": np.array([PROMPTS[0].encode()], dtype=np.object_), "steps": np.array([steps], np.int32)}
        client.infer("stable_diffusion", make_inputs(httpclient, tensors))
        done = {m: triton_stats.settled(client, m) - before[m] for m in MODELS[:4]}
    finally:
        client.close()
    unet_ms = done["sd_unet"].compute_ns / 1e6
    calls = max(done["sd_unet"].executions, 1)
    total_ms = done["stable_diffusion"].compute_ns / 1e6
    others_ms = done["sd_text_encoder"].compute_ns / 1e6 + done["sd_vae_decoder"].compute_ns / 1e6
    loop_ms = total_ms - others_ms
    return (
        f"per step ({calls} UNet calls for {steps} steps): UNet compute {unet_ms / calls:.1f} ms, everything else (BLS hops, "
        f"queueing, scheduler, guidance) {(loop_ms - unet_ms) / calls:.1f} ms; text encoder {done['sd_text_encoder'].compute_ns / 1e6:.1f} ms "
        f"and VAE decoder {done['sd_vae_decoder'].compute_ns / 1e6:.1f} ms once per request; request {total_ms:.0f} ms in the BLS model"
    )


def measure(
    http_url: str, grpc_url: str, checkpoint: Path, title: str, concurrencies, steps: int, seconds: float, requests_per_level: int = 6, rounds: int = 3
) -> tuple[Table, list[str]]:
    guidance = 7.5
    folder = Path(tempfile.mkdtemp(prefix="perf-sd-"))
    data = inputs(steps, guidance, folder)
    rows: list[Row] = []
    window = int(seconds * 1000)
    # every instance's first request is slow (first BLS calls and torch ops of
    # that stub): two requests per served instance before any measurement
    instances = served_instances(http_url, "stable_diffusion")
    run_perf_analyzer("stable_diffusion", http_url, instances, data, request_count=2 * instances)
    for c in concurrencies:
        rows.append(run_perf_analyzer("stable_diffusion", http_url, c, data, measurement_ms=window, fallback_requests=requests_per_level))
    for c in concurrencies:
        # perf_analyzer 2.51 times a decoupled model's first response (the
        # first step: time to first progress); a fixed request count, since
        # its time windows found no finished request at these latencies
        rows.append(
            run_perf_analyzer(
                "stable_diffusion_stream", grpc_url, c, data, protocol="grpc", request_count=requests_per_level * c,
                extra_args=["--streaming"], label=STREAM_LABEL,
            )
        )
    bodies = [json.dumps({"prompt": p, "steps": steps, "seed": i, "guidance_scale": guidance}).encode() for i, p in enumerate(PROMPTS)]
    reference = DiffusersSD(checkpoint)

    def in_process(window: float) -> Row:
        return sequential(lambda i: reference([PROMPTS[i]], steps, guidance, i), list(range(len(PROMPTS))), window, IN_PROCESS)

    top = max(concurrencies)
    os.environ["SD_CHECKPOINT"] = str(checkpoint)
    try:
        with BaselineServer("stable_diffusion", free_port()) as plain:

            def per_request(at: int, window: float) -> Row:
                return closed_loop(lambda i: (plain.post(bodies[i % len(bodies)]), 1)[1], at, duration_s=window, warmup_calls=1, label=PER_REQUEST)

            for c in concurrencies:
                rows.append(per_request(c, seconds))
            rows.append(in_process(seconds))
            paired = []
            for _ in range(rounds):
                paired.append(
                    PairedRound(
                        served=run_perf_analyzer("stable_diffusion", http_url, top, data, request_count=3 * top).throughput,
                        per_request=per_request(top, seconds).throughput,
                        served_p50=run_perf_analyzer("stable_diffusion", http_url, 1, data, request_count=len(PROMPTS)).p50_ms,
                        in_process_p50=in_process(0.0).p50_ms,
                    )
                )
    finally:
        os.environ.pop("SD_CHECKPOINT", None)
    table = Table(f"{title}: one prompt per request, {steps} steps, guidance {guidance}", "images", rows, PER_REQUEST)
    lines = [
        f"{title}: p50 at concurrency 1: stable_diffusion {table_row(table, 'triton stable_diffusion', 1).p50_ms:.0f} ms, "
        f"diffusers in-process {table_row(table, IN_PROCESS, 1).p50_ms:.0f} ms; at concurrency {top} stable_diffusion serves "
        f"{table.value('triton stable_diffusion', top) / table.value(PER_REQUEST, top):.2f}x the per-request server's images/s.",
    ]
    if paired:
        lines.append(f"{title}: {paired_summary(paired, top)}")
    lines.append(f"{title}: {step_split(http_url, steps)}.")
    return table, lines


@dataclass(frozen=True)
class PairedRound:
    """One round: `stable_diffusion` under load (3 requests per client at the
    top concurrency) and the per-request diffusers server for a window at the
    same concurrency; then `stable_diffusion` alone (one request per prompt,
    concurrency 1) and diffusers in-process over the same prompts."""

    served: float
    per_request: float
    served_p50: float
    in_process_p50: float


def paired_summary(rounds: list[PairedRound], concurrency: int) -> str:
    """The rounds' figures and the median of the ratios taken within each round."""
    rates = "; ".join(f"{r.served:.3f} / {r.per_request:.3f} ({r.served / r.per_request:.2f}x)" for r in rounds)
    latencies = "; ".join(f"{r.served_p50:,.0f} / {r.in_process_p50:,.0f} ({r.served_p50 / r.in_process_p50:.2f})" for r in rounds)
    throughput = statistics.median(r.served / r.per_request for r in rounds)
    latency = statistics.median(r.served_p50 / r.in_process_p50 for r in rounds)
    return (
        f"paired rounds ({len(rounds)}; the systems alternate, the ratio is taken within each round). Images/s at concurrency {concurrency}, "
        f"`stable_diffusion` / per-request server: {rates}; median **{throughput:.2f}x**. p50 ms at concurrency 1, `stable_diffusion` / "
        f"diffusers in-process: {latencies}; median **{latency:.2f}** of in-process (target at most 1.15)."
    )


def served_instances(http_url: str, model: str) -> int:
    """The instance count the server runs `model` with (its config as loaded)."""
    client = httpclient.InferenceServerClient(http_url)
    try:
        return sum(int(group.get("count", 1)) for group in client.get_model_config(model).get("instance_group", [])) or 1
    finally:
        client.close()


def table_row(table: Table, system: str, concurrency: int) -> Row:
    return next(r for r in table.rows if r.system == system and r.concurrency == concurrency)


def export_large(folder: Path) -> tuple[Path, Path]:
    """The LARGE seeded checkpoint exported into a repository of its own."""
    # torch and diffusers (export.stable_diffusion's imports) only when the LARGE checkpoint is made
    from export.stable_diffusion import main as export_main
    from export.stable_diffusion import seeded_checkpoint  # likewise

    repo = folder / "repo"
    for model in MODELS:
        shutil.copytree(MODEL_REPOSITORY / model, repo / model, ignore=shutil.ignore_patterns("*.onnx", "*.onnx.data", "*.plan", "__pycache__"))
    source = seeded_checkpoint(folder / "source", seed=1, **LARGE)
    kept = folder / "checkpoint"
    if export_main(["--source", str(source), "--output-dir", str(repo), "--checkpoint-dir", str(kept), "--format", "onnx"]) != 0:
        raise RuntimeError("export of the LARGE checkpoint failed")
    return repo, kept


def run(server, concurrencies, quick: bool = False) -> Report:
    concurrencies = [c for c in concurrencies if c <= 4] or [1]
    seconds = 4.0 if quick else 20.0
    small, small_lines = measure(
        server.http_url, server.grpc_url, checkpoint_dir("stable_diffusion"), "small default (64x64, export/stable_diffusion.py SEEDED_*)",
        concurrencies, steps=10 if quick else 20, seconds=seconds, requests_per_level=3 if quick else 8, rounds=1 if quick else 3,
    )
    tables, lines = [small], small_lines
    if not quick:
        folder = Path(tempfile.mkdtemp(prefix="perf-sd-large-"))
        started = time.monotonic()
        repo, kept = export_large(folder)
        print(f"LARGE checkpoint exported in {time.monotonic() - started:.0f} s")
        with benchmark_server([repo]) as large_server:
            large_server_table, large_lines = measure(
                large_server.http_url, large_server.grpc_url, kept, "LARGE (256x256, perf/stable_diffusion.py LARGE)", concurrencies, steps=10, seconds=seconds
            )
        shutil.rmtree(folder, ignore_errors=True)
        tables.append(large_server_table)
        lines += large_lines
    return Report(tables, lines)

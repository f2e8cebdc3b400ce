"""The benchmark pieces work and measure the same work: perf_analyzer runs on
each pipeline's real --input-data, and the per-request baseline servers of
the CLIP suite compute what the served pipeline computes (so a speed ratio
compares equal answers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.http as httpclient

from perf.baseline_server import BaselineServer
from perf.harness import run_perf_analyzer, write_input_data
from clients.common import encoded_bytes_tensor, make_inputs, picture_request
from runtime.server import free_port
from testsets.images import photo_samples

PICTURE = photo_samples()[0].data
INPUTS = {
    "orientation": {"input_image": encoded_bytes_tensor(PICTURE)},
    "vit": {"input_image": encoded_bytes_tensor(PICTURE)},
    "vit_python": {"input_image": encoded_bytes_tensor(PICTURE)},
    "clip_image_embedding": {"input_image": encoded_bytes_tensor(PICTURE)},
    "clip_text_embedding": {"text": np.array([b"a photo of a cat"], dtype=np.object_)},
    "stable_diffusion": {"prompt": np.array([b"a photo of a cat"], dtype=np.object_), "steps": np.array([2], np.int32)},
}


@pytest.mark.parametrize("model", sorted(INPUTS))
def test_perf_analyzer_runs_on_real_inputs(triton, tmp_path, model):
    data = write_input_data([INPUTS[model]], tmp_path / "inputs.json")
    row = run_perf_analyzer(model, triton.http_url, 2, data, request_count=6)
    assert row.throughput > 0 and 0 < row.p50_ms <= row.p95_ms


@pytest.mark.parametrize(
    "pipeline,body,model,inputs",
    [
        ("clip_image", PICTURE, "clip_image_embedding", picture_request(PICTURE)),
        ("clip_text", json.dumps({"text": "a photo of a cat"}).encode(), "clip_text_embedding", {"text": np.array([[b"a photo of a cat"]], dtype=np.object_)}),
    ],
    ids=["clip_image", "clip_text"],
)
def test_baseline_server_computes_the_served_embedding(http_client, pipeline, body, model, inputs):
    served = http_client.infer(model, make_inputs(httpclient, inputs)).as_numpy("embedding")[0]
    with BaselineServer(pipeline, free_port()) as baseline:
        plain = np.asarray(baseline.post(body), dtype=np.float32)
    assert plain.shape == served.shape and float(plain @ served) >= 0.9999


def test_stage_cpu_serves_the_ensemble_steps_and_adds_up_the_processes():
    from perf.stage_cpu import pipeline_models, report

    assert sorted(pipeline_models("orientation")) == ["image_decode", "orientation", "orientation_classifier", "orientation_preprocess"]
    assert pipeline_models("ocr_rec") == ["ocr_rec"]
    figures = {"throughput": 50.0, "concurrency": 4, "cores_used": {"tritonserver": 0.1, "stub image_decode": 0.4}, "cores": 2}
    text = report("orientation", figures)
    assert "| stub image_decode | 0.40 | 8.00 |" in text
    assert "| all | 0.50 of 2 | 10.00 |" in text
    assert "= 200 images/s" in text


def test_ceilings_divide_by_the_cores_this_process_may_use():
    """A benchmark pinned to one core counts one core, not the machine's."""
    pinned = subprocess.run(
        [sys.executable, "-c", "from perf.report import usable_cores; print(usable_cores())"],
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
        capture_output=True,
        text=True,
        check=True,
    )
    assert pinned.stdout.strip() == "1"


def test_ocr_targets_take_the_median_of_each_rounds_ratio():
    """The ratio is taken within a round, so a slow round for every system
    does not move it; the median ignores one outlying round."""
    from perf.ocr import F32, Round, targets

    rounds = [
        Round(f32=0.6, fast=1.2, f32_p50=1000, same_lines=0.5, same_lines_p50=1000, default=1.0),
        Round(f32=0.3, fast=0.6, f32_p50=2200, same_lines=0.3, same_lines_p50=2000, default=0.6),
        Round(f32=0.4, fast=0.9, f32_p50=900, same_lines=0.8, same_lines_p50=1000, default=0.3),
    ]
    text = "\n".join(targets(rounds, "served PP-OCRv6 int8", "rapidocr 3.10 openvino f32", "rapidocr 3.10 openvino (default precision)", {F32: 0.02, "served PP-OCRv6 int8": 0.021}))
    assert "Paired rounds (3)" in text
    assert f"{F32} at concurrency 4: **1.00x** rapidocr 3.10 openvino f32" in text  # ratios 1.2, 1.0, 0.5
    assert "p50 at concurrency 1: **1.00** of its own" in text  # 1.0, 1.1, 0.9
    assert "**2.00x** rapidocr 3.10 openvino f32 (target >= 1.5x)" in text  # 2.4, 2.0, 1.125
    assert "**1.20x** rapidocr 3.10 openvino (default precision)" in text  # 1.2, 1.0, 3.0


def test_ocr_dominance_and_parity_are_judged_per_row():
    from perf.ocr import System, dominated, identical_pages, parity
    from perf.report import Row

    def system(label, rate):
        return System(label, rows=[Row(label, 1, rate, 1000.0, 1000.0)])

    served, library = system("served PP-OCRv6 f32", 1.0), system("rapidocr 3.10 openvino f32", 2.0)
    assert "beats" not in dominated([served, library], {served.label: 0.02, library.label: 0.03})
    assert "rapidocr 3.10 openvino f32 beats served PP-OCRv6 f32" in dominated([served, library], {served.label: 0.02, library.label: 0.01})
    page = [("a", [0, 0, 10, 0, 10, 5, 0, 5], 0.9), ("b", [0, 9, 10, 9, 10, 14, 0, 14], 0.8)]
    moved = [("a", [0, 0.5, 10, 0, 10, 5, 0, 5], 0.90002), ("b", [0, 9, 10, 9, 10, 14, 0, 14], 0.8)]
    assert identical_pages([page, moved], [page, page]) == 2
    assert parity([moved], [page]) == "2/2 lines identical (largest corner gap 0.50 px, score gap 2.0e-05)"
    assert identical_pages([page[:1]], [page]) == 0


def test_a_failing_client_fails_the_closed_loop_instead_of_lowering_its_concurrency():
    from perf.harness import closed_loop

    def call(i: int) -> int:
        if i == 5:
            raise ValueError("the baseline answered 400")
        return 1

    with pytest.raises(RuntimeError, match="1 of 2 clients failed; first: the baseline answered 400"):
        closed_loop(call, 2, duration_s=0.2, warmup_calls=0, label="baseline")


def test_stable_diffusion_paired_rounds_take_the_median_of_each_rounds_ratio():
    from perf.stable_diffusion import PairedRound, paired_summary

    rounds = [PairedRound(0.9, 0.6, 1100, 1500), PairedRound(0.5, 0.5, 2000, 1600), PairedRound(0.8, 0.4, 1000, 1250)]
    text = paired_summary(rounds, concurrency=4)
    assert "paired rounds (3;" in text and "at concurrency 4" in text
    assert "0.900 / 0.600 (1.50x)" in text and "1,100 / 1,500 (0.73)" in text
    assert "median **1.50x**" in text
    assert "median **0.80** of in-process" in text


def test_the_engine_suite_times_every_onnx_network_on_inputs_its_config_accepts():
    from perf.engines import ALONE_SHAPES, PIPELINES, Variant, fixed_feeds, network_context
    from pipelines.ocr.models import CLS_MODEL, DET_MODEL, REC_MODEL
    from lint import pbtxt
    from lint.engine_configs import engine_of
    from runtime.paths import MODEL_REPOSITORY

    networks = {p.parent.name for p in MODEL_REPOSITORY.glob("*/config.pbtxt") if engine_of(pbtxt.parse(p.read_text()))}
    assert set(ALONE_SHAPES) | {DET_MODEL, CLS_MODEL, REC_MODEL} == networks
    assert {n for pipeline in PIPELINES for n in pipeline.networks} <= networks
    rng = np.random.default_rng(0)
    for network in ALONE_SHAPES:
        served = {spec.name: spec for spec in network_context(network, Variant("onnxruntime", 1)).inputs()}
        for name, array in fixed_feeds(network, rng).items():
            spec = served[name]
            assert array.dtype == np.dtype(spec.numpy_type), (network, name)
            shape = array.shape
            assert len(shape) == len(spec.dims) + 1 and all(d in (-1, s) for d, s in zip(spec.dims, shape[1:])), (network, name, shape)


def test_fixed_feeds_refuse_shapes_that_name_other_inputs_than_the_config(monkeypatch):
    from perf import engines

    monkeypatch.setitem(engines.ALONE_SHAPES, "vit_model", {"pixels": (1, 3, 224, 224)})
    with pytest.raises(ValueError, match="vit_model.*pixel_values"):
        engines.fixed_feeds("vit_model", np.random.default_rng(0))

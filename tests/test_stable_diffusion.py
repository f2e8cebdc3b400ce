"""stable_diffusion and stable_diffusion_stream against diffusers'
StableDiffusionPipeline built from the same checkpoint folder (same
scheduler, steps, guidance, negative prompts,
generator=torch.Generator().manual_seed(seed), output_type="np", then
(x * 255).round()): at least 99% of pixel values within 2 levels and PSNR
at least 40 dB. The stream gives the plain model's picture after one
response per step; a cancelled stream stops; bad requests fail alone with a
message naming the tensor; a failing network call fails the requests that
made it and nothing else; a checkpoint of another size exported with
--source runs the same served code."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from triton_helpers import grpc_fire_all, make_inputs, wait_until
from tritonclient.utils import InferenceServerException

from clients import triton_stats
from runtime.paths import MODEL_REPOSITORY, checkpoint_dir
from references.stable_diffusion import DiffusersSD, psnr, within

PLAIN, STREAM = "stable_diffusion", "stable_diffusion_stream"
MIN_WITHIN_2, MIN_PSNR = 0.99, 40.0


def request(prompts, steps=4, guidance=7.5, seed=0, negative=None, **extra) -> dict[str, np.ndarray]:
    tensors = {
        "prompt": np.array([p.encode() for p in prompts], dtype=np.object_),
        "steps": np.array([steps], np.int32),
        "guidance_scale": np.array([guidance], np.float32),
        "seed": np.array([seed], np.int64),
    }
    if negative is not None:
        tensors["negative_prompt"] = np.array([p.encode() for p in negative], dtype=np.object_)
    for name, value in extra.items():
        tensors[name] = value
    return tensors


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """diffusers' tiny pipeline ran 20x slower with torch's two threads than
    with one on a busy 2-core machine (spinning threads); restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference():
    return DiffusersSD(checkpoint_dir("stable_diffusion"))


def assert_close(ours: np.ndarray, theirs: np.ndarray, where: str) -> None:
    assert ours.shape == theirs.shape and ours.dtype == np.uint8, (where, ours.shape, theirs.shape, ours.dtype)
    share, quality = within(ours, theirs), psnr(ours, theirs)
    print(f"\n{where}: {share:.4%} within 2 levels, PSNR {quality:.1f} dB")
    assert share >= MIN_WITHIN_2 and quality >= MIN_PSNR, (where, share, quality)


CASES = [
    ("one prompt, guided", dict(prompts=["a photo of an astronaut riding a horse"], steps=4, guidance=7.5, seed=0)),
    ("no guidance", dict(prompts=["a red bicycle"], steps=3, guidance=1.0, seed=42)),
    ("three prompts, empty one", dict(prompts=["a cat", "", "一只猫"], steps=2, guidance=3.0, seed=7)),
    ("negative prompts", dict(prompts=["a lighthouse", "a forest"], steps=3, guidance=5.0, seed=123, negative=["blurry", "dark, grainy"])),
]


@pytest.mark.parametrize("case", CASES, ids=[name for name, _ in CASES])
def test_matches_diffusers(http_client, reference, case):
    name, settings = case
    ours = http_client.infer(PLAIN, make_inputs(httpclient, request(**settings))).as_numpy("generated_image")
    theirs = reference(settings["prompts"], settings["steps"], settings["guidance"], settings["seed"], settings.get("negative"))
    assert_close(ours, theirs, name)


def test_size_and_same_pixels_every_time(grpc_client, reference):
    """Another picture size; concurrent requests (their UNet steps batched
    together) give each the pixels it gets alone."""
    tensors = request(["a castle on a hill"], steps=3, seed=5, height=np.array([32], np.int32), width=np.array([48], np.int32))
    alone = grpc_client.infer(PLAIN, make_inputs(grpcclient, tensors)).as_numpy("generated_image")
    assert_close(alone, reference(["a castle on a hill"], 3, 7.5, 5, height=32, width=48), "32x48")
    others = [request([f"other request {i}"], steps=3, seed=i, height=np.array([32], np.int32), width=np.array([48], np.int32)) for i in range(3)]
    answers = grpc_fire_all(grpc_client, PLAIN, [make_inputs(grpcclient, t) for t in [tensors, *others, tensors]], timeout=300)
    for result, error, _ in answers:
        assert error is None, error
    assert np.array_equal(answers[0][0].as_numpy("generated_image"), alone)
    assert np.array_equal(answers[-1][0].as_numpy("generated_image"), alone)


def stream_responses(client, tensors, cancel_after: int | None = None, timeout: float = 120.0) -> list:
    """The responses of one decoupled request over a gRPC stream (the empty
    final one included, as None); with `cancel_after`, the stream is
    cancelled after that many responses."""
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(STREAM, make_inputs(grpcclient, tensors), enable_empty_final_response=True)
        got = []
        while True:
            result, error = answers.get(timeout=timeout)
            if error is not None:
                raise error
            response = result.get_response()
            names = {o.name for o in response.outputs}
            got.append({name: result.as_numpy(name) for name in names} or None)
            if response.parameters["triton_final_response"].bool_param:
                return got
            if cancel_after is not None and len(got) >= cancel_after:
                client.stop_stream(cancel_requests=True)
                return got
    finally:
        client.stop_stream()


def test_stream_equals_plain(grpc_client):
    tensors = request(["a sailing boat at dawn", "a mountain lake"], steps=5, guidance=6.0, seed=11)
    plain = grpc_client.infer(PLAIN, make_inputs(grpcclient, tensors)).as_numpy("generated_image")
    got = stream_responses(grpc_client, {**tensors, "preview_every": np.array([2], np.int32)})
    steps = [r for r in got if r and "step" in r]
    finals = [r for r in got if r and "generated_image" in r]
    assert [int(r["step"][0]) for r in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 5
    previews = [int(r["step"][0]) for r in steps if "preview" in r]
    assert previews == [s for s in range(1, len(steps) + 1) if s % 2 == 0]
    assert steps[1]["preview"].dtype == np.uint8 and steps[1]["preview"].shape[0] == 2 and steps[1]["preview"].shape[-1] == 3
    assert len(finals) == 1 and got[-1] is finals[0], "the picture comes with the FINAL flag"
    assert np.array_equal(finals[0]["generated_image"], plain)


def test_http_generate_stream(triton):
    """POST /v2/models/stable_diffusion_stream/generate_stream: server-sent events, one per step, then the picture."""
    import json

    import requests

    body = {"prompt": ["a small house"], "steps": [2], "seed": [3], "guidance_scale": [1.0]}
    with requests.post(f"http://{triton.http_url}/v2/models/{STREAM}/generate_stream", json=body, stream=True, timeout=120) as response:
        assert response.status_code == 200, response.text
        events = [json.loads(line[len(b"data: ") :]) for line in response.iter_lines() if line.startswith(b"data: ")]
    steps = [event["step"] for event in events if "step" in event]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2
    assert "generated_image" in events[-1] and np.array(events[-1]["generated_image"]).size == 64 * 64 * 3


def test_cancelled_stream_stops(grpc_client, http_client):
    tensors = request(["a very long generation"], steps=999, guidance=7.5, seed=1)
    before = triton_stats.settled(http_client, "sd_unet")
    got = stream_responses(grpc_client, tensors, cancel_after=3)
    assert len(got) == 3
    time.sleep(1.0)
    stopped = triton_stats.settled(http_client, "sd_unet", quiet=1.0)
    ran = (stopped - before).inferences // 2
    assert ran < 200, f"the UNet ran {ran} of 999 steps after the client cancelled"
    # and the model goes on
    again = stream_responses(grpc_client, request(["after the cancel"], steps=2))
    assert "generated_image" in again[-1]


GOOD = request(["fine"], steps=2)
BAD = [
    ("more than 8 prompts", request([f"p{i}" for i in range(9)]), "prompt", "1 to 8 prompts"),
    ("negative_prompt count", request(["a", "b"], negative=["only one"]), "negative_prompt", "negative prompts for 2 prompts"),
    ("steps 0", request(["a"], steps=0), "steps", "must be 1 to 999"),
    ("steps 1001", request(["a"], steps=1001), "steps", "must be 1 to 999"),
    ("guidance NaN", request(["a"], guidance=float("nan")), "guidance_scale", "finite"),
    ("guidance inf", request(["a"], guidance=float("inf")), "guidance_scale", "finite"),
    ("guidance negative", request(["a"], guidance=-1.0), "guidance_scale", ">= 0"),
    ("height not a multiple", request(["a"], height=np.array([66], np.int32)), "height", "multiple of"),
    ("width too large", request(["a"], width=np.array([256], np.int32)), "width", "to 128"),
    ("negative seed", request(["a"], seed=-3), "seed", ">= 0"),
    ("invalid UTF-8", {**GOOD, "prompt": np.array([b"\xff\xfe broken"], dtype=np.object_)}, "prompt", "not valid UTF-8"),
    ("wrong dtype", {**GOOD, "steps": np.array([2.0], np.float32)}, "steps", "FP32"),
]


@pytest.mark.parametrize("model", [PLAIN, STREAM])
def test_bad_requests_fail_alone(grpc_client, model):
    for name, tensors, tensor, fragment in BAD:
        if model == PLAIN:
            with pytest.raises(InferenceServerException) as raised:
                grpc_client.infer(PLAIN, make_inputs(grpcclient, tensors))
            message = str(raised.value)
        else:
            with pytest.raises(InferenceServerException) as raised:
                stream_responses(grpc_client, tensors)
            message = str(raised.value)
        assert f"'{tensor}'" in message and fragment in message, (name, message)
    # the server and the model go on
    if model == PLAIN:
        assert grpc_client.infer(PLAIN, make_inputs(grpcclient, GOOD)).as_numpy("generated_image").shape == (1, 64, 64, 3)
    else:
        assert "generated_image" in stream_responses(grpc_client, GOOD)[-1]


class LocalNetworks:
    """The exported networks in this process (onnxruntime), for the served
    pipeline code without a server."""

    def __init__(self, repo):
        import onnxruntime as ort

        from lint.pbtxt import parse

        def served_file(model):  # the file the onnxruntime config names (sd_unet: the fused graph)
            return repo / model / "1" / (parse((repo / model / "config.pbtxt").read_text()).default_model_filename or "model.onnx")

        names = ("sd_text_encoder", "sd_unet", "sd_vae_decoder")
        self.sessions = {m: ort.InferenceSession(str(served_file(m)), providers=["CPUExecutionProvider"]) for m in names}

    def text_encoder(self, input_ids):
        return self.sessions["sd_text_encoder"].run(None, {"input_ids": input_ids})[0]

    def unet(self, sample, timestep, encoder_hidden_states):
        feeds = {"sample": sample, "timestep": timestep, "encoder_hidden_states": encoder_hidden_states}
        return self.sessions["sd_unet"].run(None, feeds)[0]

    def vae_decoder(self, latent_sample):
        return self.sessions["sd_vae_decoder"].run(None, {"latent_sample": latent_sample})[0]


def test_scheduler_by_name_matches_diffusers():
    """The `scheduler` parameter: another diffusers class (Euler ancestral
    draws noise in every step from the request's generator, as diffusers
    passes it) configured from the checkpoint's scheduler_config.json."""
    from pipelines.stable_diffusion.pipeline import Settings, StableDiffusion

    name = "EulerAncestralDiscreteScheduler"
    served = StableDiffusion(MODEL_REPOSITORY / PLAIN / "1", LocalNetworks(MODEL_REPOSITORY), Settings(scheduler=name))
    ours = served.generate(served.parse(request(["a tree"], steps=3, guidance=5.0, seed=21)))
    theirs = DiffusersSD(checkpoint_dir("stable_diffusion"), scheduler=name)(["a tree"], 3, 5.0, 21)
    assert_close(ours, theirs, name)


OTHER_SIZE = dict(
    text_encoder=dict(
        vocab_size=49408, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ),
    unet=dict(
        block_out_channels=(32, 32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4, cross_attention_dim=48,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=16,
    ),
    vae=dict(
        block_out_channels=(16, 32, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=16,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    ),
)


def test_another_checkpoint_size_exported_with_source(tmp_path, monkeypatch):
    """export/stable_diffusion.py --source on a checkpoint folder of other
    sizes (D 48, VAE scale factor 4, 3 UNet levels): configs follow it, and
    the served pipeline code on the exported networks matches diffusers. The
    networks are written as a real SD checkpoint's are (over 2 GB: the graph
    and one weights file each)."""
    from export.common import onnx_files
    from export.stable_diffusion import main as export_main
    from export.stable_diffusion import seeded_checkpoint
    from pipelines.stable_diffusion.pipeline import Settings, StableDiffusion
    from lint.pbtxt import as_json, parse

    source = seeded_checkpoint(tmp_path / "source", seed=3, **OTHER_SIZE)
    repo = tmp_path / "repo"
    for model in ("sd_text_encoder", "sd_unet", "sd_vae_decoder", PLAIN, STREAM):
        (repo / model).mkdir(parents=True)
        shutil.copyfile(MODEL_REPOSITORY / model / "config.pbtxt", repo / model / "config.pbtxt")
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_BYTES", 0)
    # in this process: diffusers and torch are imported once
    code = export_main(["--source", str(source), "--output-dir", str(repo), "--checkpoint-dir", str(tmp_path / "kept"), "--format", "onnx"])
    assert code == 0
    assert sorted(p.name for p in (repo / "sd_unet" / "1").iterdir()) == ["model.onnx", "model.onnx.data", "model_ort.onnx", "model_ort.onnx.data"]
    assert (repo / "sd_vae_decoder" / "1" / "model.onnx.data").exists() and (repo / "sd_text_encoder" / "1" / "model.onnx.data").exists()
    unet_config = as_json(parse((repo / "sd_unet" / "config.pbtxt").read_text()))
    assert [int(d) for d in unet_config["input"][2]["dims"]] == [-1, 48]

    served = StableDiffusion(repo / PLAIN / "1", LocalNetworks(repo), Settings())
    assert served.params.vae_scale_factor == 4 and served.params.size_multiple == 16 and served.params.default_height == 32
    ours = served.generate(served.parse(request(["a tiny picture", "another"], steps=3, guidance=4.0, seed=9)))
    theirs = DiffusersSD(tmp_path / "kept")(["a tiny picture", "another"], 3, 4.0, 9)
    assert_close(ours, theirs, "other size")


def test_a_hub_name_is_exported_from_the_hub_cache(tmp_path):
    """--source with a Hugging Face hub name: huggingface_hub resolves it
    (here offline, from a cache laid out as a download leaves it), and the
    snapshot is the checkpoint kept and exported."""
    from export.stable_diffusion import seeded_checkpoint
    from runtime.paths import REPO_ROOT

    commit = "0123456789abcdef0123456789abcdef01234567"
    hub = tmp_path / "hub"
    snapshot = hub / "models--tiny-org--tiny-sd" / "snapshots" / commit
    seeded_checkpoint(snapshot, seed=11)
    (hub / "models--tiny-org--tiny-sd" / "refs").mkdir()
    (hub / "models--tiny-org--tiny-sd" / "refs" / "main").write_text(commit)
    repo = tmp_path / "repo"
    for model in ("sd_text_encoder", "sd_unet", "sd_vae_decoder", PLAIN, STREAM):
        (repo / model).mkdir(parents=True)
        shutil.copyfile(MODEL_REPOSITORY / model / "config.pbtxt", repo / model / "config.pbtxt")
    kept = tmp_path / "kept"
    argv = ["--source", "tiny-org/tiny-sd", "--output-dir", str(repo), "--checkpoint-dir", str(kept), "--format", "onnx"]
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "export" / "stable_diffusion.py"), *argv], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (kept / weights).read_bytes() == (snapshot / weights).read_bytes()
    assert (repo / "sd_unet" / "1" / "model.onnx").is_file()

    unknown = subprocess.run(
        [sys.executable, str(REPO_ROOT / "export" / "stable_diffusion.py"), *argv[:1], "tiny-org/not-cached", *argv[2:]],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert unknown.returncode != 0 and "tiny-org/not-cached" in unknown.stderr
    assert (kept / weights).read_bytes() == (snapshot / weights).read_bytes()  # the kept checkpoint survives a failed source


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_streams_and_saves(triton, http_client, tmp_path, protocol):
    """clients/stable_diffusion_client.py --stream (gRPC stream, HTTP
    server-sent events) saves the plain model's pictures and the previews."""
    from PIL import Image

    from clients.stable_diffusion_client import main as client_main

    url = triton.grpc_url if protocol == "grpc" else triton.http_url
    out = tmp_path / "image.png"
    argv = ["a prompt", "another", "--steps", "3", "--seed", "7", "--out", str(out), "--url", url, "--protocol", protocol, "--stream"]
    assert client_main(argv + ["--previews", str(tmp_path / "previews"), "--preview-every", "2"]) == 0
    plain = http_client.infer(PLAIN, make_inputs(httpclient, request(["a prompt", "another"], steps=3, seed=7))).as_numpy("generated_image")
    saved = [np.array(Image.open(path)) for path in (out, tmp_path / "image-1.png")]
    assert np.array_equal(np.stack(saved), plain)
    assert sorted(p.name for p in (tmp_path / "previews").iterdir()) == ["step-0002-1.png", "step-0002.png", "step-0004-1.png", "step-0004.png"]


def streaming_model(process, config_inputs):
    """A StreamingModel (pipelines/serving/python_model.py) on the in-process pb_utils stand-in."""
    import fake_pb_utils as pb

    from pipelines.serving.python_model import ModelContext, StreamingModel

    config = {"name": "probe", "max_batch_size": 0, "input": config_inputs, "model_transaction_policy": {"decoupled": True}}
    return pb, StreamingModel(ModelContext(config=config, model_dir=MODEL_REPOSITORY), process, stop_timeout_s=5)


def test_streaming_model_sends_final_on_answer_error_cancel_and_unload():
    import threading

    inputs = [{"name": "n", "data_type": "TYPE_INT32", "dims": [1]}]
    release = threading.Event()

    def process(tensors, stream):
        n = int(tensors["n"][0])
        if n < 0:
            raise ValueError("negative n")
        for step in range(n):
            if stream.cancelled():
                return None
            stream.send({"step": np.array([step], np.int32)})
            release.wait(0.01)
        return {"done": np.array([n], np.int32)}

    pb, model = streaming_model(process, inputs)
    requests = [pb.InferenceRequest("probe", [pb.Tensor("n", np.array([k], np.int32))]) for k in (3, -1, 100000)]
    requests.append(pb.InferenceRequest("probe", [pb.Tensor("n", np.array([1.0], np.float32))]))
    assert model.execute(pb, requests) is None
    time.sleep(0.5)
    requests[2].cancelled = True  # the client cancels the long one
    for thread in list(model.threads):
        thread.join(10)
    senders = [r.get_response_sender() for r in requests]
    assert all(s.closed for s in senders), "every request gets its FINAL flag"
    first = senders[0].responses
    assert [pb.get_output_tensor_by_name(r, "step").as_numpy()[0] for r, _ in first[:-1]] == [0, 1, 2]
    assert pb.get_output_tensor_by_name(first[-1][0], "done").as_numpy()[0] == 3 and first[-1][1] == pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    assert "negative n" in senders[1].responses[-1][0].error().message()
    assert senders[2].responses[-1] == (None, pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL) and len(senders[2].responses) < 100000
    assert "'n'" in senders[3].responses[-1][0].error().message()
    # an unload stops a running request at its next check
    long = pb.InferenceRequest("probe", [pb.Tensor("n", np.array([100000], np.int32))])
    model.execute(pb, [long])
    time.sleep(0.3)
    started = time.monotonic()
    model.finalize()
    assert time.monotonic() - started < 5 and long.get_response_sender().closed


@pytest.fixture(scope="module")
def pipeline_alone(tmp_path_factory):
    """The pipeline's models on a server of their own, in explicit model
    control (so a test may unload a network under it), one instance each."""
    from perf.instance_sweep import linked_copy
    from lint.pbtxt import edit_config
    from runtime.server import TritonServer

    repo = tmp_path_factory.mktemp("sd-alone")
    for model in (PLAIN, STREAM, "sd_text_encoder", "sd_unet", "sd_vae_decoder"):
        linked_copy(MODEL_REPOSITORY / model, repo / model)
    for model in (PLAIN, STREAM):
        edit_config(repo / model / "config.pbtxt", instance_count=1, log=lambda _: None)
    server = TritonServer(repositories=[repo], explicit_model_control=True)
    server.start(timeout=300)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    yield server, client
    client.close()
    server.stop()


def test_a_failing_network_call_fails_that_request_only(pipeline_alone):
    """sd_unet unloaded under the pipeline: its BLS calls fail, so the
    request running then and those sent then fail with a message naming
    sd_unet (the stream still gets its FINAL flag); the pipeline's stubs
    live on, and once sd_unet is back the same request gives the same pixels."""
    from runtime.watchdog import server_stubs

    server, client = pipeline_alone
    tensors = request(["a failing call"], steps=3, seed=9)
    before = client.infer(PLAIN, make_inputs(grpcclient, tensors)).as_numpy("generated_image")
    stubs = {s.pid for s in server_stubs(server.process.pid, {}) if s.model in (PLAIN, STREAM)}
    assert len(stubs) == 2, stubs

    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(STREAM, make_inputs(grpcclient, request(["a long one"], steps=999)), enable_empty_final_response=True)
        result, error = answers.get(timeout=60)  # its first step ran
        assert error is None, error
        client.unload_model("sd_unet")
        wait_until(lambda: not client.is_model_ready("sd_unet"), describe="sd_unet still ready after its unload")
        failed = None
        while failed is None:
            result, error = answers.get(timeout=60)
            if error is not None:
                failed = str(error)
            else:
                assert not result.get_response().parameters["triton_final_response"].bool_param, "FINAL before the error"
    finally:
        client.stop_stream()
    print(f"\nthe running stream failed with: {failed}")
    assert "sd_unet" in failed, failed

    with pytest.raises(InferenceServerException, match="sd_unet"):
        client.infer(PLAIN, make_inputs(grpcclient, tensors))
    with pytest.raises(InferenceServerException, match="sd_unet"):
        stream_responses(client, tensors)

    client.load_model("sd_unet")
    wait_until(lambda: client.is_model_ready("sd_unet"), describe="sd_unet not ready after its load")
    after = client.infer(PLAIN, make_inputs(grpcclient, tensors)).as_numpy("generated_image")
    assert np.array_equal(after, before)
    assert "generated_image" in stream_responses(client, tensors)[-1]
    assert {s.pid for s in server_stubs(server.process.pid, {}) if s.model in (PLAIN, STREAM)} == stubs, "a pipeline stub was replaced"


def test_a_split_unet_step_goes_out_as_calls_side_by_side_and_joins_in_order():
    """unet_split 2: one step's batch of 4 (guidance halves of two prompts)
    goes to sd_unet as two calls of 2 that are in flight together, and the
    answers join in the batch's order."""
    import threading

    from pipelines.stable_diffusion.pipeline import BlsNetworks

    both_in_flight = threading.Barrier(2, timeout=10)
    calls = []

    class RecordingBls:
        def infer(self, model, inputs, outputs):
            calls.append((model, inputs["sample"].shape, inputs["timestep"].shape, inputs["encoder_hidden_states"].shape))
            both_in_flight.wait()  # a BrokenBarrierError unless the other call is in flight too
            return {"out_sample": inputs["sample"] * inputs["timestep"][:, :, None, None] + inputs["encoder_hidden_states"].mean()}

    rng = np.random.default_rng(0)
    sample, timestep, hidden = rng.random((4, 4, 8, 8), np.float32), np.arange(1, 5, dtype=np.float32)[:, None], rng.random((4, 77, 32), np.float32)
    out = BlsNetworks(RecordingBls(), unet_split=2).unet(sample, timestep, hidden)
    assert sorted(calls) == [("sd_unet", (2, 4, 8, 8), (2, 1), (2, 77, 32))] * 2
    expected = np.concatenate([sample[:2] * timestep[:2, :, None, None] + hidden[:2].mean(), sample[2:] * timestep[2:, :, None, None] + hidden[2:].mean()])
    np.testing.assert_array_equal(out, expected)
    # one prompt without guidance: nothing to split, one call
    calls.clear()
    both_in_flight = threading.Barrier(1)
    BlsNetworks(RecordingBls(), unet_split=2).unet(sample[:1], timestep[:1], hidden[:1])
    assert calls == [("sd_unet", (1, 4, 8, 8), (1, 1), (1, 77, 32))]

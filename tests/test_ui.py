"""The web page (ui/) at API level: each tab's named endpoint, called with
gradio_client on `python -m ui` against the session's tritonserver, gives
what the CLI clients give for the same input (the same OCR lines, labels,
embeddings, ranking and pixels, the stream's steps in order); Stop and a
cancelled job stop the Triton stream; bad input, a full queue and a server
that is down give a readable message and the page goes on. Also `make
demo`'s launcher: both up, Ctrl-C stops both and leaves nothing behind."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clients import clip_search, ocr_client, orientation_client, text_embedding_client, triton_metrics, triton_stats
from clients.stable_diffusion_client import StableDiffusionClient
from clients.text_embedding_client import TextEmbeddingClient
from clients.vit_client import VitClient
from runtime.paths import REPO_ROOT, TEST_REPOSITORY
from runtime.procfs import cmdline, pids
from runtime.server import free_port
from testsets.images import invalid_samples
from ui.__main__ import default_metrics_url, parse_auth
from ui.actions import Step, cls_vector, coalesced
from ui.backend import Backend, readable
from ui.drawing import ocr_overlay
from ui.samples import write_samples
from ui_helpers import UI_ENV, UiProcess, http_status

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402  (after the skip: the page's packages are requirements/ui.txt)
from gradio_client.exceptions import AppError  # noqa: E402

PROMPT = "a lighthouse on a cliff"


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """The page's sample pictures, the same bytes as the page's own."""
    return write_samples(tmp_path_factory.mktemp("ui-samples"))


@pytest.fixture(scope="module")
def page(ui_page, tmp_path_factory):
    return ui_page.client(tmp_path_factory.mktemp("ui-downloads"))


def cli_json(main, argv, capsys) -> str:
    capsys.readouterr()
    main(argv)
    return capsys.readouterr().out


def grpc_args(triton) -> list[str]:
    return ["--url", triton.grpc_url, "--protocol", "grpc"]


# -- each tab gives what the CLI gives ----------------------------------------------------


@pytest.mark.parametrize("model", ["ocr", "ocr_bls"])
def test_ocr_gives_the_cli_lines(page, triton, samples, model, capsys):
    document = samples.documents[0]
    lines, overlay, table, download, info = page.predict(handle_file(str(document)), model, api_name="/ocr")
    (expected,) = json.loads(cli_json(ocr_client.main, [str(document), *grpc_args(triton), "--model", model], capsys))
    assert lines == expected["result"] and len(lines) >= 5
    assert json.loads(Path(download).read_text()) == lines, "the JSON download holds the same lines"
    assert [row[1] for row in table["data"]] == [line["text"] for line in lines]
    assert [row[0] for row in table["data"]] == list(range(1, len(lines) + 1))
    picture, drawn = Image.open(document), Image.open(overlay)
    assert drawn.size == picture.size
    assert f"**{len(lines)} lines**" in info and " ms** from `" + model in info and "model set" in info


def test_classify_gives_the_cli_labels_and_the_vit_features(page, triton, samples, capsys):
    picture = samples.turned_pages[1]  # turned 90 degrees
    orientation, nearest, info = page.predict(handle_file(str(picture)), 3, "vit", api_name="/classify")
    expected = json.loads(cli_json(orientation_client.main, [str(picture), *grpc_args(triton), "--top-k", "3"], capsys))["top"]
    assert [c["label"] for c in orientation["confidences"]] == [e["label"] for e in expected]
    assert np.allclose([c["confidence"] for c in orientation["confidences"]], [e["score"] for e in expected], atol=1e-6)
    # vit: the nearest sample photos by CLS cosine, from VitClient's features
    vit = VitClient(triton.grpc_url, "grpc")
    references = np.stack([cls_vector(vit.features(path.read_bytes())) for path in samples.photos])
    scores = references @ cls_vector(vit.features(picture.read_bytes()))
    best = np.argsort(-scores, kind="stable")[:3]
    assert [c["label"] for c in nearest["confidences"]] == [samples.photos[i].name for i in best]
    assert np.allclose([c["confidence"] for c in nearest["confidences"]], scores[best], atol=1e-6)
    assert "last_hidden_state [197, 192]" in info


def test_text_gives_the_client_embeddings_and_ids(page, triton, capsys):
    sentences = ["A cat sleeps on the sofa.", "The kitten naps on the couch.", "Interest rates rose again."]
    payload, plot, tokens = page.predict("\n".join(sentences), api_name="/text_similarity")
    embeddings = TextEmbeddingClient(triton.grpc_url, "grpc").embed(sentences)
    assert np.array_equal(np.array(payload["embeddings"], np.float32), embeddings), "the page's embeddings are the client's"
    assert np.allclose(payload["similarity"], embeddings.astype(np.float64) @ embeddings.T.astype(np.float64), atol=1e-9)
    for number, sentence in enumerate(sentences, 1):
        ids = json.loads(cli_json(text_embedding_client.main, ["ids", sentence, *grpc_args(triton)], capsys))
        assert payload["ids"][number - 1] == ids
        assert [row[3] for row in tokens["data"] if row[0] == number] == ids
    assert [row[2] for row in tokens["data"] if row[0] == 1][:2] == ["a", "cat"], "the tokens are the vocabulary's words"
    assert plot is not None


def test_clip_search_ranks_as_the_cli(page, triton, samples, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in samples.photos:
        shutil.copy(path, photos / path.name)
    index = tmp_path / "index.npz"
    cli_json(clip_search.main, ["index", str(photos), "--out", str(index), *grpc_args(triton)], capsys)
    for query, command in (("a photo of a cat", "search"), (str(samples.photos[1]), "similar")):
        output = cli_json(clip_search.main, [command, str(index), query, "--top-k", "5", *grpc_args(triton)], capsys)
        expected = [json.loads(line) for line in output.splitlines()]
        if command == "search":
            hits, gallery, info = page.predict([], query, None, 5, api_name="/clip_search")
        else:
            hits, gallery, info = page.predict([], "", handle_file(query), 5, api_name="/clip_search")
        assert [hit["name"] for hit in hits] == [Path(e["path"]).name for e in expected]
        assert np.allclose([hit["score"] for hit in hits], [e["score"] for e in expected], atol=1e-6)
        assert len(gallery) == 5 and f"{len(samples.photos)} pictures of the sample photos" in info
    # a collection of the person's own pictures: ranked among themselves
    mine = samples.photos[:3]
    hits, _, info = page.predict([handle_file(str(p)) for p in mine], "a cat", None, 5, api_name="/clip_search")
    assert sorted(hit["name"] for hit in hits) == sorted(p.name for p in mine) and "3 pictures of your pictures" in info


def generate(page, seed: int, steps: int, **kwargs):
    return page.submit(PROMPT, "", steps, 7.5, seed, "server default", api_name="/generate", **kwargs)


def streamed_steps(job) -> list[int]:
    """Every step the page reported, in order (each update carries the steps since the one before)."""
    return [step for progress, *_ in job.outputs() if progress for step in progress["new_steps"]]


def test_generate_streams_the_steps_and_gives_the_plain_models_pixels(page, triton):
    job = generate(page, seed=5, steps=6)
    progress, preview, final, status = job.result(timeout=120)
    assert progress["state"] == "done" and "Done" in status
    client = StableDiffusionClient(triton.grpc_url, "grpc")
    try:
        plain = client.generate([PROMPT], steps=6, guidance_scale=7.5, seed=5)[0]
        streamed: list[int] = []
        client.generate_stream([PROMPT], lambda step, _: streamed.append(step), steps=6, guidance_scale=7.5, seed=5, preview_every=1)
    finally:
        client.close()
    assert np.array_equal(np.asarray(Image.open(final).convert("RGB")), plain), "same seed: the plain model's pixels"
    assert streamed_steps(job) == streamed == list(range(1, len(streamed) + 1)) and len(streamed) >= 6


def unet_steps_after(http_client, before: triton_stats.ModelStats) -> int:
    """UNet calls since `before` once the statistics settle (guidance: two inferences a step)."""
    time.sleep(1.0)
    return (triton_stats.settled(http_client, "sd_unet", quiet=1.0) - before).inferences // 2


def wait_for_step(job, step: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while max(streamed_steps(job), default=0) < step:
        assert time.monotonic() < deadline and not job.done(), f"no step {step}: {job.outputs()[-1:]}"
        time.sleep(0.05)


def test_stop_cancels_the_stream_on_the_server(page, http_client):
    before = triton_stats.settled(http_client, "sd_unet")
    job = generate(page, seed=1, steps=200)  # the page's most
    wait_for_step(job, 3)
    page.predict(api_name="/stop")  # the Stop button: this session's streams
    progress, _, final, status = job.result(timeout=60)
    assert progress["state"] == "stopped" and final is None and "<b>Stopped</b> after step" in status
    ran = unet_steps_after(http_client, before)
    assert ran < 100, f"the UNet ran {ran} of 200 steps after Stop"
    # a cancelled API job (gradio_client's job.cancel()) closes the stream too
    before = triton_stats.settled(http_client, "sd_unet")
    job = generate(page, seed=2, steps=200)
    wait_for_step(job, 3)
    job.cancel()
    ran = unet_steps_after(http_client, before)
    assert ran < 100, f"the UNet ran {ran} of 200 steps after the job was cancelled"


def test_two_sessions_generate_at_once_each_on_its_own_stream(ui_page, triton, tmp_path):
    sessions = [ui_page.client(tmp_path / f"session-{i}") for i in range(2)]
    jobs = [generate(session, seed=10 + i, steps=15) for i, session in enumerate(sessions)]
    first_step: dict[int, float] = {}
    while not all(job.done() for job in jobs):
        for i, job in enumerate(jobs):
            if i not in first_step and streamed_steps(job):
                first_step[i] = time.monotonic()
        time.sleep(0.02)
    finished = time.monotonic()
    assert len(first_step) == 2 and all(job.result()[0]["state"] == "done" for job in jobs)
    assert max(first_step.values()) < finished - 0.2, "both streams were under way at once"
    client = StableDiffusionClient(triton.grpc_url, "grpc")
    try:
        for i, job in enumerate(jobs):
            plain = client.generate([PROMPT], steps=15, guidance_scale=7.5, seed=10 + i)[0]
            assert np.array_equal(np.asarray(Image.open(job.result()[2]).convert("RGB")), plain), f"session {i} got its own picture"
    finally:
        client.close()


def test_server_state_from_the_metrics_and_open_apis(page, http_client, triton):
    for _ in range(3):
        TextEmbeddingClient(triton.grpc_url, "grpc").ids("count me")
    expected = triton_stats.settled(http_client, "text2ids").requests
    deadline = time.monotonic() + 10
    while True:
        table, summary = page.predict(api_name="/server_state")
        rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
        if rows["text2ids"]["requests"] == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rows["text2ids"]["requests"] == expected, "the metrics' count is the statistics API's"
    for model in ("ocr", "orientation", "vit", "text_embedding", "clip_image_embedding", "stable_diffusion_stream", "queue_probe"):
        assert rows[model]["state"] == "READY" and rows[model]["versions"] == "1", rows[model]
    assert rows["text2ids"]["compute ms/request"] > 0
    assert f"of {len(rows)} models READY" in summary


# -- bad input, a full queue, a server that is down --------------------------------------


BAD = {name: (data, fragment) for name, data, fragment in invalid_samples()}


@pytest.mark.parametrize("name", ["empty", "text", "jpeg-truncated-half", "png-header-9000x100", "png-header-8000x6000"])
def test_a_bad_picture_gives_a_message_and_the_page_goes_on(page, samples, name, tmp_path):
    data, fragment = BAD[name]
    bad = tmp_path / f"{name}.png"
    bad.write_bytes(data)
    with pytest.raises(AppError) as refused:
        page.predict(handle_file(str(bad)), 2, "vit", api_name="/classify")
    message = str(refused.value)
    assert fragment in message and "refused the request" in message and "Traceback" not in message
    orientation, *_ = page.predict(handle_file(str(samples.turned_pages[0])), 1, "vit", api_name="/classify")
    assert orientation["label"] == "0"


def test_an_empty_or_oversized_upload_gives_a_message(page, samples, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match="empty image"):
        page.predict(handle_file(str(empty)), "ocr", api_name="/ocr")
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(samples.documents[0].read_bytes() + bytes(21 * 2**20))
    with pytest.raises(ValueError, match="maximum file size"):  # the page's upload limit, 20 MB
        page.predict(handle_file(str(huge)), "ocr", api_name="/ocr")
    with pytest.raises(AppError, match="Write one or more sentences"):
        page.predict("  \n ", api_name="/text_similarity")


def test_a_full_queue_reads_as_busy(http_client):
    """queue_probe (tests/model_repository: 3 places, 0.3 s a batch) flooded:
    the server's own refusal is what the page turns into its message."""
    import tritonclient.http as httpclient

    from clients.common import make_inputs

    flood = [http_client.async_infer("queue_probe", make_inputs(httpclient, {"x": np.ones((1, 4), np.float32)})) for _ in range(16)]
    refusals = []
    for request in flood:
        try:
            request.get_result()
        except Exception as error:  # the refused ones
            refusals.append(error)
    assert refusals, "the flood never filled the queue"
    message = readable(refusals[0], Backend("localhost:8001"), "queue_probe")
    assert message == "The server is busy: the queue of `queue_probe` is full. Try again in a moment."


def test_a_server_that_is_down_gives_a_message_behind_a_login(samples, tmp_path):
    dead = f"localhost:{free_port()}"
    with UiProcess(dead, f"http://localhost:{free_port()}/metrics", auth="tester:correct-horse,other:battery", name="ui-down") as down:
        with pytest.raises(Exception):
            down.client(tmp_path, auth=("tester", "wrong"))
        page = down.client(tmp_path, auth=("tester", "correct-horse"))
        with pytest.raises(AppError, match=f"Triton is not reachable at {dead}"):
            page.predict(handle_file(str(samples.turned_pages[0])), 1, "vit", api_name="/classify")
        with pytest.raises(AppError, match="Triton's metrics are not reachable"):
            page.predict(api_name="/server_state")
        with pytest.raises(AppError, match="not reachable"):
            generate(page, seed=0, steps=2).result(timeout=60)
        log = down.log()
    assert "Connection refused" in log or "failed to connect" in log, "the UI process logs the cause"


# -- make demo ---------------------------------------------------------------------------------


def test_demo_runs_server_and_page_and_ctrl_c_stops_both():
    http_port, grpc_port, metrics_port, ui_port = (free_port() for _ in range(4))
    folders_before = set(Path(tempfile.gettempdir()).glob("triton-ui-*"))
    command = [sys.executable, "-m", "ui.demo", "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
               "--port", str(ui_port), "--model-repository", str(TEST_REPOSITORY)]
    # a session of its own, as a terminal's foreground group: Ctrl-C is SIGINT to the whole group
    demo = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **UI_ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("demo: every model READY" in line for line in output):
            assert demo.poll() is None and time.monotonic() < deadline, "".join(output[-40:])
            time.sleep(0.2)
        assert http_status(f"http://127.0.0.1:{ui_port}") == 200
        assert http_status(f"http://localhost:{http_port}/v2/health/ready") == 200
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(90) == 0, "".join(output[-40:])
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    reader.join(5)
    ports = {str(http_port), str(ui_port)}
    left = [pid for pid in pids() if any(port in arg for arg in (cmdline(pid) or []) for port in ports)]
    assert not left, f"left behind: {[cmdline(pid) for pid in left]}"
    assert http_status(f"http://127.0.0.1:{ui_port}") is None and http_status(f"http://localhost:{http_port}/v2/health/live") is None
    assert set(Path(tempfile.gettempdir()).glob("triton-ui-*")) <= folders_before, "the page's work folder is removed"


# -- pure parts -------------------------------------------------------------------------------


def test_auth_from_pairs_or_a_file(tmp_path):
    assert parse_auth(None) is None and parse_auth(" ") is None
    assert parse_auth("alice:one:two,bob:pw") == [("alice", "one:two"), ("bob", "pw")]
    users = tmp_path / "users"
    users.write_text("# who may log in\nalice:s3cret\n\ncarol:pa:ss\n")
    assert parse_auth(str(users)) == [("alice", "s3cret"), ("carol", "pa:ss")]
    with pytest.raises(ValueError, match="user:password") as refused:
        parse_auth("alice:ok,bob")
    assert "ok" not in str(refused.value), "a password is never echoed"


def test_metrics_page_parsed_per_model_version():
    text = "\n".join(
        [
            "# HELP nv_inference_request_success Number of successful inference requests",
            "# TYPE nv_inference_request_success counter",
            'nv_inference_request_success{model="ocr",version="1"} 12',
            'nv_inference_request_failure{model="ocr",reason="REJECTED",version="1"} 2',
            'nv_inference_count{model="ocr",version="1"} 12',
            'nv_inference_queue_duration_us{model="ocr",version="1"} 3000',
            'nv_inference_compute_infer_duration_us{model="ocr",version="1"} 240000',
            'nv_inference_request_success{model="vit",version="2"} 0',
            'nv_cpu_utilization 0.5',
        ]
    )
    counters = triton_metrics.parse(text)
    assert set(counters) == {("ocr", "1"), ("vit", "2")}
    ocr = counters[("ocr", "1")]
    assert (ocr.requests, ocr.failures, ocr.inferences) == (12, 2, 12)
    assert ocr.queue_ms_per_request == pytest.approx(0.25) and ocr.compute_ms_per_request == pytest.approx(20.0)
    assert counters[("vit", "2")].compute_ms_per_request is None
    assert default_metrics_url("triton.example:8001") == "http://triton.example:8002/metrics"


def test_overlay_draws_each_quadrilateral_as_given():
    picture = io.BytesIO()
    Image.new("RGB", (400, 200), "white").save(picture, format="PNG")
    rotated = [60, 40, 200, 80, 190, 115, 50, 75]  # a tilted line
    drawn = np.asarray(ocr_overlay(picture.getvalue(), [{"box": rotated, "text": "x", "text_score": 0.9}]))
    assert drawn.shape == (200, 400, 3)
    on_edge = drawn[60, 130]  # halfway along the top edge (60,40)-(200,80)
    assert tuple(on_edge) != (255, 255, 255), "the tilted edge is drawn"
    assert tuple(drawn[150, 350]) == (255, 255, 255), "nothing away from the box"


def test_steps_are_coalesced_into_updates_and_none_is_lost():
    now = [0.0]
    preview = np.zeros((1, 8, 8, 3), np.uint8)
    events = [Step(1), Step(2, preview), Step(3), Step(4), Step(5), Step(-1, image=np.ones((8, 8, 3), np.uint8))]

    def stream():
        for event in events:
            now[0] += 0.07  # a step every 70 ms
            yield event

    updates = list(coalesced(stream(), interval=0.2, clock=lambda: now[0]))
    assert [u.state for u in updates] == ["running", "running", "done"]
    assert [u.new_steps for u in updates] == [[1], [2, 3, 4], [5]], "every step once, in order"
    assert updates[1].preview is preview and updates[1].step == 4 and updates[-1].image is not None
    closed = []

    def endless():
        try:
            step = 0
            while True:
                step += 1
                yield Step(step)
        finally:
            closed.append(True)

    pages = coalesced(endless(), interval=0.0)
    next(pages)
    pages.close()
    assert closed == [True], "closing the updates closes the stream (the page's Stop, a cancelled job)"

"""clients/clip_search.py and clients/vit_client.py against a real server: the
index holds exactly the server's embeddings (HTTP and gRPC), search and similar
rank by the dot product, broken pictures are skipped and reported, and the two
ViT deployments give the same features through the client."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from clients import clip_search, vit_client
from clients.common import encoded_bytes_tensor, make_inputs, make_outputs
from testsets import images as testset

PICKS = ("gradient.png", "shapes.jpg", "noise-64.png", "strip-600x40.jpg", "page-sans-90.webp")


@pytest.fixture(scope="module")
def pictures() -> dict[str, bytes]:
    samples = {sample.name: sample.data for sample in testset.photo_samples()}
    return {name: samples[name] for name in PICKS}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, pictures) -> Path:
    """The pictures, one in a subfolder (the index searches recursively), and a
    file the index must ignore by its extension."""
    root = tmp_path_factory.mktemp("pictures")
    (root / "nested").mkdir()
    for i, (name, data) in enumerate(pictures.items()):
        (root / ("nested" if i == 0 else ".") / name).write_bytes(data)
    (root / "notes.txt").write_text("not a picture")
    return root


def server_embedding(http_client, model: str, tensor: np.ndarray) -> np.ndarray:
    inputs = make_inputs(httpclient, {"input_image" if model == clip_search.IMAGE_MODEL else "text": tensor})
    return http_client.infer(model, inputs, outputs=make_outputs(httpclient, ["embedding"])).as_numpy("embedding")[0]


@pytest.fixture(scope="module")
def expected(http_client, pictures) -> dict[str, np.ndarray]:
    """Each picture's embedding, asked of the server directly."""
    return {name: server_embedding(http_client, clip_search.IMAGE_MODEL, encoded_bytes_tensor(data)[None]) for name, data in pictures.items()}


@pytest.fixture(scope="module")
def index(triton, folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "vectors.npz"
    assert clip_search.main(["index", str(folder), "--out", str(out), "--url", triton.http_url]) == 0
    return out


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_index_holds_the_server_embeddings(triton, folder, expected, tmp_path, capsys, protocol):
    url = triton.http_url if protocol == "http" else triton.grpc_url
    out = tmp_path / "vectors.npz"
    argv = ["index", str(folder), "--out", str(out), "--url", url, "--protocol", protocol, "--concurrency", "3"]
    assert clip_search.main(argv) == 0
    assert f"{len(PICKS)}/{len(PICKS)}" in capsys.readouterr().err  # the progress bar's last state
    vectors, paths = clip_search.load_index(out)
    assert vectors.dtype == np.float32 and vectors.shape == (len(PICKS), 512)
    assert sorted(Path(p).name for p in paths) == sorted(PICKS)
    assert any(Path(p).parent.name == "nested" for p in paths)
    for path, vector in zip(paths, vectors):
        assert float(np.abs(vector - expected[Path(path).name]).max()) < 1e-5, path


def test_search_ranks_by_dot_product(triton, http_client, index, capsys):
    query = "a photo of colourful shapes"
    assert clip_search.main(["search", str(index), query, "--top-k", "3", "--url", triton.http_url]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    vectors, paths = clip_search.load_index(index)
    query_vector = server_embedding(http_client, clip_search.TEXT_MODEL, np.array([[query.encode()]], dtype=np.object_))
    dots = vectors @ query_vector
    assert len(hits) == 3
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    for hit in hits:
        assert abs(hit["score"] - float(dots[paths.index(hit["path"])])) < 1e-5
    assert hits[0]["score"] == pytest.approx(float(dots.max()), abs=1e-5)


def test_similar_finds_the_picture_itself(triton, index, capsys):
    vectors, paths = clip_search.load_index(index)
    picture = paths[2]
    assert clip_search.main(["similar", str(index), picture, "--url", triton.grpc_url, "--protocol", "grpc"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == min(5, len(paths))
    assert hits[0]["path"] == picture and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_broken_picture_is_skipped(triton, pictures, tmp_path, capsys):
    for name in PICKS[:2]:
        (tmp_path / name).write_bytes(pictures[name])
    (tmp_path / "broken.jpg").write_bytes(pictures["shapes.jpg"][:40])
    out = tmp_path / "vectors.npz"
    assert clip_search.main(["index", str(tmp_path), "--out", str(out), "--url", triton.http_url]) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "truncated or corrupt JPEG" in err
    _, paths = clip_search.load_index(out)
    assert sorted(Path(p).name for p in paths) == sorted(PICKS[:2])


def test_rank_orders_by_score():
    vectors = np.eye(3, dtype=np.float32)
    hits = clip_search.rank(vectors, np.array([0.2, 0.9, 0.4], np.float32), k=2)
    assert [row for row, _ in hits] == [1, 2] and hits[0][1] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="width"):
        clip_search.rank(vectors, np.zeros(4, np.float32), k=1)


def test_vit_client_models_agree(triton, pictures, tmp_path, capsys):
    names = PICKS[:2]
    for name in names:
        (tmp_path / name).write_bytes(pictures[name])
    broken = tmp_path / "broken.png"
    broken.write_bytes(pictures["gradient.png"][:60])
    features = {}
    for model in vit_client.MODELS:
        out = tmp_path / f"{model}.npz"
        argv = [str(tmp_path), "--model", model, "--out", str(out), "--url", triton.grpc_url, "--protocol", "grpc", "--concurrency", "2"]
        assert vit_client.main(argv) == 1  # the broken picture
        lines = {Path(line["filename"]).name: line for line in map(json.loads, capsys.readouterr().out.splitlines())}
        assert "error" in lines["broken.png"] and "PNG" in lines["broken.png"]["error"]
        for name in names:
            assert lines[name]["shape"] == [197, 192] and len(lines[name]["cls"]) == 5
        with np.load(out) as saved:
            assert [Path(f).name for f in saved["filenames"]] == sorted(names)
            features[model] = saved["last_hidden_state"]
    assert features["vit"].shape == (len(names), 197, 192)
    np.testing.assert_allclose(features["vit"], features["vit_python"], atol=1e-4)

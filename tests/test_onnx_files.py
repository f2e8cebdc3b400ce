"""Large networks: the graph plus one weights file (export/common/onnx_files.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from export.common import onnx_files
from export.common.networks import export_onnx


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 32)

    def forward(self, x):
        return torch.relu(self.linear(x))


def test_a_large_export_is_one_graph_and_one_weights_file_that_move_and_run_together(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_BYTES", 0)  # as a network over the limit
    module = Tiny().eval()
    sample = {"x": np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)}
    staged = tmp_path / "scratch" / "model.onnx"
    export_onnx(module, sample, staged, "y", {"x": {0: "batch"}})
    assert sorted(p.name for p in staged.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert staged.stat().st_size < 4096  # the weights are not in the graph file

    target = tmp_path / "repo" / "net" / "1" / "model.onnx"
    target.parent.mkdir(parents=True)
    onnx_files.data_file(target).write_bytes(b"stale weights of an earlier export")
    onnx_files.move_onnx(staged, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, sample)[0]
    with torch.inference_mode():
        expected = module(torch.from_numpy(sample["x"])).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_small_export_is_one_file_and_a_stale_weights_file_goes(tmp_path):
    staged = tmp_path / "model.onnx"
    onnx_files.data_file(staged).write_bytes(b"stale")
    export_onnx(Tiny(), {"x": np.zeros((1, 64), np.float32)}, staged, "y", {"x": {0: "batch"}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]

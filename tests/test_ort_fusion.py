"""ONNX Runtime's CPU fusions of the exported UNet (export/common/ort_fusion.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.common.ort_fusion import FUSED_FILENAME, unpack_self_attention
from runtime.paths import MODEL_REPOSITORY
from lint.pbtxt import parse

UNET = MODEL_REPOSITORY / "sd_unet"


def test_the_served_unet_is_the_fused_graph_and_every_attention_is_flash_capable():
    assert parse((UNET / "config.pbtxt").read_text()).default_model_filename == FUSED_FILENAME
    graph = onnx.load(str(UNET / "1" / FUSED_FILENAME), load_external_data=False).graph
    operators = [(node.domain, node.op_type) for node in graph.node]
    plain = [(node.domain, node.op_type) for node in onnx.load(str(UNET / "1" / "model.onnx"), load_external_data=False).graph.node]
    # every Softmax of the plain export is inside a MultiHeadAttention now; no packed Attention is left
    assert operators.count(("com.microsoft", "MultiHeadAttention")) == plain.count(("", "Softmax")) > 0
    assert ("", "Softmax") not in operators and ("com.microsoft", "Attention") not in operators
    assert not any(domain not in ("", "com.microsoft") for domain, _ in operators)


def test_the_fused_unet_gives_the_plain_exports_outputs():
    sessions = [ort.InferenceSession(str(UNET / "1" / name), providers=["CPUExecutionProvider"]) for name in ("model.onnx", FUSED_FILENAME)]
    width = sessions[0].get_inputs()[2].shape[-1]
    rng = np.random.default_rng(5)
    for batch, size in ((3, 32), (1, 16)):
        feeds = {
            "sample": rng.standard_normal((batch, 4, size, size), np.float32),
            "timestep": rng.uniform(0, 1000, (batch, 1)).astype(np.float32),
            "encoder_hidden_states": rng.standard_normal((batch, 77, width), np.float32),
        }
        plain, fused = (session.run(None, feeds)[0] for session in sessions)
        assert np.abs(fused - plain).max() <= 1e-5 * np.abs(plain).max()


def attention_model(extra_input: bool = False) -> onnx.ModelProto:
    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 24)).astype(np.float32), "qkv_weight")
    bias = numpy_helper.from_array(np.zeros(24, np.float32), "qkv_bias")
    inputs = ["x", "qkv_weight", "qkv_bias"] + (["mask"] if extra_input else [])
    node = helper.make_node("Attention", inputs, ["y"], name="self_attention", domain="com.microsoft", num_heads=2)
    graph = helper.make_graph(
        [node],
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 8])]
        + ([helper.make_tensor_value_info("mask", TensorProto.INT32, [1, 5])] if extra_input else []),
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 8])],
        [weights, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def test_a_packed_self_attention_becomes_three_projections_and_the_same_outputs():
    model = attention_model()
    x = np.random.default_rng(1).standard_normal((1, 5, 8)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert unpack_self_attention(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "MatMul", "MatMul", "MultiHeadAttention"]
    assert "qkv_weight" not in {init.name for init in model.graph.initializer}
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_an_attention_with_a_mask_is_refused_not_rewritten_wrong():
    with pytest.raises(ValueError, match="self_attention.*not the plain self-attention"):
        unpack_self_attention(attention_model(extra_input=True))

"""ONNX Runtime's own fusions of a transformer-style ONNX graph, for a network
the onnxruntime engine serves on CPU.

The TorchScript exporter writes attention as MatMul, Softmax, MatMul: ONNX
Runtime then builds every [L, L] score matrix in memory (4 MB per head at
L = 1024). ONNX Runtime's transformer optimizer turns these blocks into
com.microsoft `MultiHeadAttention` (flash attention on CPU) and layer norms
with their residual Add into `SkipLayerNormalization`. Self-attention comes
out as the `Attention` op, whose CPU kernel still builds the scores, and the
packed-QKV form of `MultiHeadAttention` has no CPU kernel; so each
`Attention` is rewritten as three projections into an unpacked
`MultiHeadAttention`. GPU-only fusions (GroupNorm, NhwcConv, BiasSplitGelu,
BiasAdd) stay off.

The fused file uses com.microsoft operators, which TensorRT and OpenVINO do
not read: the plain export stays beside it for those engines."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from onnx import helper, numpy_helper
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.optimizer import optimize_model

from export.common.onnx_files import save_onnx

FUSED_FILENAME = "model_ort.onnx"
"""The onnxruntime config's default_model_filename; model.onnx stays the portable export."""


def cpu_fusion_options(model_type: str):
    options = FusionOptions(model_type)
    for gpu_only in (
        "enable_nhwc_conv",
        "enable_group_norm",
        "enable_skip_group_norm",
        "enable_bias_splitgelu",
        "enable_bias_add",
        "enable_packed_qkv",
        "enable_packed_kv",
    ):
        if hasattr(options, gpu_only):
            setattr(options, gpu_only, False)
    return options


def unpack_self_attention(model) -> int:
    """Each com.microsoft `Attention` (input, packed [C, 3C] weights, bias) ->
    three MatMuls and a `MultiHeadAttention` (q, k, v, bias). Returns how many."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type != "Attention" or node.domain != "com.microsoft":
            nodes.append(node)
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if len(node.input) != 3 or set(attributes) != {"num_heads"} or node.input[1] not in initializers:
            raise ValueError(
                f"{node.name}: an Attention node with inputs {list(node.input)} and attributes {sorted(attributes)} is not the plain self-attention this rewrite handles"
            )
        source, weights_name, bias_name = node.input
        weights = numpy_helper.to_array(initializers[weights_name])
        width = weights.shape[1] // 3
        projections = []
        for index, part in enumerate("qkv"):
            name = f"{node.name}_{part}"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weights[:, index * width : (index + 1) * width]), f"{name}_weight"))
            nodes.append(helper.make_node("MatMul", [source, f"{name}_weight"], [name], name=f"{name}_MatMul"))
            projections.append(name)
        nodes.append(
            helper.make_node(
                "MultiHeadAttention",
                [*projections, bias_name],
                [node.output[0]],
                name=f"{node.name}_unpacked",
                domain="com.microsoft",
                num_heads=attributes["num_heads"],
            )
        )
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return rewritten


def fuse_for_onnxruntime_cpu(source: Path, target: Path, model_type: str) -> Counter:
    """Write `source` with ONNX Runtime's CPU fusions to `target`; returns the
    count of each fused operator in it."""
    logging.getLogger("onnxruntime.transformers").setLevel(logging.WARNING)
    optimized = optimize_model(str(source), model_type=model_type, opt_level=0, optimization_options=cpu_fusion_options(model_type), use_gpu=False)
    model = optimized.model
    unpack_self_attention(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_onnx(model, target)
    return Counter(node.op_type for node in model.graph.node if node.domain == "com.microsoft")

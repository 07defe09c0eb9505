"""ReLU6 (ONNX Clip with constant bounds) becomes one clip op and the epilogue of the conv before it."""

from __future__ import annotations

import pytest
import tvm
from tvm import relax

from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from sqnxt_compiler.passes import CanonicalizeClip
from sqnxt_compiler.passes._conv_graph import ConvGraph
from sqnxt_compiler.verify import reference_outputs, relative_error
from test_fusion_passes import _folded, _seeded_input, compile_and_run


def _conv_clip(low: float, high: float, kernel=(1, 1), groups: int = 1):
    g = GraphBuilder(seed=5)
    x = Tensor("data", (1, 16, 20, 20))
    pad = (kernel[0] // 2, kernel[1] // 2)
    y = g.clip(g.batch_norm(g.conv(x, 16, kernel, pad=pad, groups=groups)), low, high)
    return g.finish("conv_clip", x, y)


def _ops(mod: tvm.IRModule) -> list[str]:
    ops: list[str] = []
    relax.analysis.post_order_visit(mod["main"], lambda e: ops.append(
        e.op.name if e.op.name != "relax.call_tir" else f"call_tir:{e.args[0].name_hint}")
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None)
    return ops


@pytest.mark.parametrize("low, high, epilogue", [(0.0, 6.0, True), (-1.0, 1.0, False)])
def test_clip_becomes_one_op_and_relu6_a_conv_epilogue(low, high, epilogue):
    model = _conv_clip(low, high)
    mod = _folded(model)
    assert any(op.startswith("call_tir:maximum") for op in _ops(mod))  # what the importer writes
    mod = CanonicalizeClip()(mod)
    ops = _ops(mod)
    assert ops.count("relax.clip") == 1 and not any(op.startswith("call_tir:m") for op in ops)
    clip_var = next(var for var, value in ConvGraph(mod["main"]).bindings.items()
                    if isinstance(value, relax.Call) and value.op.name == "relax.clip")
    unit = ConvGraph(mod["main"]).unit_at(clip_var)
    assert (unit is not None and unit.relu_max == high) == epilogue


@pytest.mark.parametrize("kernel, groups", [((1, 1), 1), ((3, 3), 1), ((3, 3), 16)])
def test_relu6_fused_equals_unfused_and_onnxruntime(kernel, groups):
    """The pixel-chunk kernel (1x1), the Winograd rows kernel (3x3) and the generic conv (depthwise) clip
    alike."""
    model = _conv_clip(0.0, 6.0, kernel, groups)
    data = _seeded_input(model) * 4  # enough of the outputs above 6
    fused, _ = compile_and_run(model, True, data)
    unfused, _ = compile_and_run(model, False, data)
    (expected,) = reference_outputs(model, {"data": data})
    assert (expected >= 6).mean() > 0.05 and (expected <= 0).mean() > 0.05
    assert relative_error(fused, expected) <= 1e-5 and relative_error(unfused, expected) <= 1e-5

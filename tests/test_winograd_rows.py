"""Winograd along rows: its matrices, its kernel (the polyphase stride-2 stems, and stride-1 row convs such as
3x1) under every schedule, and where the stem pass applies it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tvm import relax, s_tir

from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.models import build_model
from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from sqnxt_compiler.pipeline import PHASES, CompileContext, run_pipeline
from sqnxt_compiler.kernels.winograd import MaxPoolWindow, transform_weights, winograd_matrices, winograd_rows_kernel
from sqnxt_compiler.schedules import find_rule
from sqnxt_compiler.target import load_target
from sqnxt_compiler.verify import reference_outputs, relative_error
from test_fusion_passes import _seeded_input, compile_and_run
from winograd_reference import POOL_CASES, check_every_schedule, direct_conv, max_pool, random_conv

SPEC = load_target("host")


@pytest.mark.parametrize("rows, taps", [(4, 2), (4, 3), (4, 4)])
def test_matrices_compute_a_correlation(rows, taps) -> None:
    at, g, bt = winograd_matrices(rows, taps)
    rng = np.random.default_rng(rows * taps)
    for _ in range(5):
        d, w = rng.standard_normal(rows + taps - 1), rng.standard_normal(taps)
        expected = [sum(w[q] * d[i + q] for q in range(taps)) for i in range(rows)]
        np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), expected, rtol=1e-12, atol=1e-12)


CASES = [  # data shape, out channels, kernel, stride, padding (top, left, bottom, right), bias, relu
    ((1, 3, 227, 227), 64, (7, 7), 2, (0, 0, 0, 0), True, True),   # 1.0-SqNxt-23's stem
    ((2, 1, 37, 45), 16, (5, 5), 2, (2, 2, 2, 2), False, False),   # batch 2, one channel, a partial last row tile
    ((1, 4, 40, 33), 12, (7, 7), 2, (3, 1, 2, 3), True, False),    # asymmetric padding, odd width
    ((1, 3, 23, 39), 8, (5, 5), 2, (0, 2, 1, 0), True, True),      # 10 rows: the last row tile overlaps by 2
    ((1, 32, 28, 28), 32, (3, 1), 1, (1, 0, 1, 0), True, True),    # a SqueezeNext 3x1 at 28x28
    ((2, 24, 14, 14), 40, (3, 1), 1, (1, 0, 1, 0), True, False),   # 14 columns: narrower than one chunk
    ((1, 16, 55, 55), 16, (3, 1), 1, (1, 0, 1, 0), False, True),   # odd rows and columns
    ((1, 8, 19, 21), 12, (3, 3), 1, (1, 1, 1, 1), True, True),     # a 3x3 stride-1 conv: 3 column taps
    ((2, 16, 13, 13), 48, (3, 3), 1, (1, 1, 1, 1), True, True),    # 3x3 on a narrow image (SqueezeNet 1.1)
    ((1, 8, 10, 30), 32, (3, 3), 1, (0, 0, 0, 0), False, False),   # 3x3 without padding
    ((1, 6, 17, 40), 40, (3, 3), 1, (1, 0, 0, 1), True, False),    # 3x3, asymmetric padding
]


@pytest.mark.parametrize("target_name", ["host", "x86-avx2"])  # AVX2: the rows do not fit the 16 registers
@pytest.mark.parametrize("shape, out_channels, kernel, stride, padding, bias, relu", CASES)
def test_kernel_matches_a_direct_conv_under_every_schedule(shape, out_channels, kernel, stride, padding, bias,
                                                           relu, target_name) -> None:
    data, weight, bias_values = random_conv(shape, out_channels, kernel, bias)
    expected = direct_conv(data, weight, bias_values, padding, relu, stride)
    func = winograd_rows_kernel(shape, out_channels, kernel, stride, padding, bias, relu)
    inputs = [data, transform_weights(weight, stride)] + ([bias_values] if bias else [])
    check_every_schedule(func, inputs, expected, target_name)




@pytest.mark.parametrize("target_name", ["host", "x86-avx2"])
@pytest.mark.parametrize("shape, out_channels, kernel, padding, window", POOL_CASES)
def test_stem_with_its_max_pool_matches_under_every_schedule(shape, out_channels, kernel, padding, window,
                                                             target_name) -> None:
    """Signed outputs (no ReLU), so a pool that read the buffer's rows past the image or a zero would fail."""
    data, weight, bias_values = random_conv(shape, out_channels, kernel, bias=True, seed=3)
    expected = max_pool(direct_conv(data, weight, bias_values, padding, False, 2), window)
    func = winograd_rows_kernel(shape, out_channels, kernel, 2, padding, True, False, pool=window)
    check_every_schedule(func, [data, transform_weights(weight, 2), bias_values], expected, target_name)


def _calls_after(proto, phase: str, spec=SPEC) -> Counter:
    """Calls in `main` after BatchNorm folding and `phase`: operator names, and the names of call_tir'd
    kernels (without their numbering)."""
    phases = [p for p in PHASES if p.name in ("fold_batchnorm", phase)]
    mod = run_pipeline(import_to_relax(proto, resolve_inputs(proto)), CompileContext(spec), phases)
    counts: Counter = Counter()

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            counts[expr.args[0].name_hint.rstrip("0123456789") if expr.op.name == "relax.call_tir"
                   else expr.op.name] += 1

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return counts


@pytest.mark.parametrize("target_name", ["x86-avx2", "x86-avx512"])
@pytest.mark.parametrize("model", ["1.0-SqNxt-23", "1.0-SqNxt-23v5", "squeezenet1.0", "alexnet", "resnet-tiny"])
def test_pass_replaces_the_stride_2_stem_and_nothing_else(model, target_name) -> None:
    """A stem with its max pool becomes the 4x4-tile kernel where a vector holds 16 column tiles (AVX-512),
    the row kernel elsewhere; a stem without one is always the row kernel."""
    proto = build_model(model)
    stem = next(node for node in proto.graph.node if node.op_type == "Conv")
    attrs = {a.name: list(a.ints) for a in stem.attribute}
    kernel = attrs.get("kernel_shape", [0])[0]
    expected = int(kernel in (5, 7) and attrs.get("strides") == [2, 2])  # alexnet: 11x11/4; resnet-tiny: 3x3
    readers = [node for node in proto.graph.node if stem.output[0] in node.input]
    while len(readers) == 1 and readers[0].op_type in ("BatchNormalization", "Relu"):
        readers = [node for node in proto.graph.node if readers[0].output[0] in node.input]
    pooled = expected * int(len(readers) == 1 and readers[0].op_type == "MaxPool"
                            and not any(a.name == "pads" and any(a.ints) for a in readers[0].attribute))
    counts = _calls_after(proto, "winograd_stem", load_target(target_name))
    tiles = pooled if target_name == "x86-avx512" else 0
    assert counts["fused_winograd_stem_tiles"] == tiles
    assert counts["fused_winograd_stem"] == expected - tiles
    assert counts["relax.nn.conv2d"] == sum(node.op_type == "Conv" for node in proto.graph.node) - expected
    max_pools = sum(node.op_type == "MaxPool" for node in proto.graph.node)
    assert counts["relax.nn.max_pool2d"] == max_pools - pooled
    assert pooled == (model != "alexnet" and model != "resnet-tiny")  # each Winograd stem here has its pool


def _eligible_row_convs(proto) -> int:
    """3x1 (without column padding) and 3x3 stride-1 convs with >= 32 outputs on images of >= 8 rows and >= 9
    columns, from the ONNX graph and ONNX Runtime's shape inference (independent of the pass's own reading of the Relax graph)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    weights = {t.name: list(t.dims) for t in proto.graph.initializer}
    count = 0
    for node in (n for n in proto.graph.node if n.op_type == "Conv"):
        kernel = weights[node.input[1]][2:]
        attrs = {a.name: list(a.ints) or a.i for a in node.attribute}
        padded_columns = any(attrs.get("pads", [0] * 4)[i] for i in (1, 3))
        if not (kernel == [3, 3] or (kernel == [3, 1] and not padded_columns)):
            continue
        _, out_channels, rows, columns = shapes[node.output[0]]
        count += (attrs.get("strides", [1, 1]) == [1, 1] and attrs.get("group", 1) == 1 and out_channels >= 32
                  and rows >= 8 and columns >= 9)
    return count


@pytest.mark.parametrize("model, expected", [("1.0-SqNxt-23", 14), ("1.0-SqNxt-23v5", 18), ("2.0-SqNxt-23", 20),
                                             ("squeezenet1.0", 8), ("resnet-tiny", 2), ("resnet-18", 10)])
def test_row_pass_takes_the_3x1_and_3x3_convs_where_winograd_wins(model, expected) -> None:
    """SqueezeNext's 3x1s at 28x28 and 14x14 (2.0-SqNxt-23: also at 55x55, 32 outputs), not with 16 outputs
    (1.0-SqNxt-23 at 55x55), not at 7x7; the 3x3 stride-1 convs of SqueezeNet's expands and ResNet's blocks
    with >= 32 outputs (resnet-tiny: one per stage after the first; ResNet-18: all but the 7x7 stage's)."""
    proto = build_model(model)
    counts = _calls_after(proto, "winograd_rows")
    assert counts["fused_winograd_rows"] == _eligible_row_convs(proto) == expected


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 24), st.integers(32, 72), st.integers(8, 30), st.integers(9, 40), st.booleans(),
       st.sampled_from(["none", "relu", "relu6"]))
def test_3x3_convs_through_the_pipeline_match_onnxruntime(cin, cout, height, width, padded, activation) -> None:
    """Random 3x3 stride-1 convs (BatchNorm folded into a bias, ReLU / ReLU6 / none) that the row pass takes,
    compiled whole and compared with ONNX Runtime."""
    g = GraphBuilder(seed=cin * cout + height)
    x = Tensor("data", (1, cin, height, width))
    y = g.batch_norm(g.conv(x, cout, (3, 3), pad=(1, 1) if padded else (0, 0)))
    if activation != "none":
        y = g.relu(y) if activation == "relu" else g.relu6(y)
    model = g.finish("conv3x3", x, y)
    data = _seeded_input(model) * 2
    actual, notes = compile_and_run(model, True, data)
    assert relative_error(actual, reference_outputs(model, {"data": data})[0]) <= 1e-5
    rows, columns = (height, width) if padded else (height - 2, width - 2)
    taken = rows >= 8 and columns >= 9
    assert notes["winograd_rows"][0].startswith("winograd_rows: 1 fused") == taken

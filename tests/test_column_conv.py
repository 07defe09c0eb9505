"""Column convs (`kernels/column_conv.py`), depthwise and few-channel: random shapes against ONNX Runtime, and the
passes take exactly the convs they are for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqnxt_compiler.kernels.column_conv import column_conv_kernel
from sqnxt_compiler.kernels.contract import FEW_CHANNEL_CONV
from sqnxt_compiler.kernels.winograd import MaxPoolWindow
from sqnxt_compiler.models import build_model
from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from sqnxt_compiler.verify import reference_outputs, relative_error
from test_fusion_passes import SETTINGS, _seeded_input, compile_and_run
from utils import runs_here
from winograd_reference import check_every_schedule, direct_conv, max_pool, random_conv


def _spatial(draw, kernels):
    kernel = draw(st.sampled_from(kernels))
    return dict(height=draw(st.integers(kernel[0], 40)), width=draw(st.integers(kernel[1], 40)), kernel=kernel,
                stride=draw(st.sampled_from([1, 2])), padded=draw(st.booleans()),
                activation=draw(st.sampled_from(["none", "relu", "relu6"])), batch=draw(st.sampled_from([1, 2])))


@st.composite
def depthwise_convs(draw):
    channels = draw(st.integers(2, 40))
    return dict(in_channels=channels, out_channels=channels, groups=channels,
                **_spatial(draw, [(3, 3), (5, 5), (3, 1), (1, 3)]))


@st.composite
def few_channel_convs(draw):
    # fewer than 32 outputs: stride-1 3x3s with more are Winograd rows' (`passes/winograd_row_conv.py`)
    return dict(in_channels=draw(st.integers(1, 4)), out_channels=draw(st.integers(1, 31)), groups=1,
                **_spatial(draw, [(3, 3), (3, 1), (1, 3), (2, 2)]))


def conv_model(in_channels, out_channels, groups, height, width, kernel, stride, padded, activation, batch):
    g = GraphBuilder(seed=in_channels * height + width)
    x = Tensor("data", (batch, in_channels, height, width))
    pad = (kernel[0] // 2, kernel[1] // 2) if padded else (0, 0)
    y = g.batch_norm(g.conv(x, out_channels, kernel, stride, pad, groups=groups))
    if activation != "none":
        y = g.relu(y) if activation == "relu" else g.relu6(y)
    return g.finish("column_conv", x, y)


@SETTINGS
@given(st.one_of(depthwise_convs(), few_channel_convs()))
def test_column_conv_matches_onnxruntime(conv):
    """Depthwise and few-channel (1-4 inputs) convs: narrow images (one chunk computed wide), widths that are no
    multiple of a chunk (the last chunk moved back), odd widths at stride 2 (the last even column without an
    odd partner), images of fewer rows than a tile, output channels that are no multiple of the register tile
    (a prime count takes a tile of 1), both strides, with and without padding."""
    model = conv_model(**conv)
    data = _seeded_input(model) * 3
    actual, notes = compile_and_run(model, True, data)
    (expected,) = reference_outputs(model, {"data": data})
    assert relative_error(actual, expected) <= 1e-5
    phase, pattern = ("depthwise_conv", "depthwise") if conv["groups"] > 1 else ("few_channel_conv",) * 2
    assert notes[phase][0].startswith(f"{pattern}: 1 fused")


@pytest.mark.parametrize("size, stride", [(14, 1), (28, 2), (7, 1)])
def test_depthwise_tiles_taller_than_the_register_file(size, stride):
    """A narrow image's depthwise tile holds every output row (14 at 14x14); AVX2's 8 accumulators take them
    in groups. The AVX2 build runs on any x86-64 test machine."""
    from sqnxt_compiler.target import load_target

    model = conv_model(16, 16, 16, size, size, (3, 3), stride, True, "relu6", 1)
    data = _seeded_input(model)
    actual, notes = compile_and_run(model, True, data, load_target("x86-avx2"))
    assert relative_error(actual, reference_outputs(model, {"data": data})[0]) <= 1e-5
    rows = size // stride
    described = next(line for line in notes["schedule"] if "column_conv" in line)
    assert f"{rows}-row tiles" in described and ((rows > 8) == ("in groups of 7" in described))


@pytest.mark.parametrize("target_name, groups_of", [("x86-avx2", 7), ("x86-avx512", 14), ("arm", 7)])
def test_depthwise_row_groups_sized_per_class(target_name, groups_of):
    """A 14-row depthwise tile accumulates its rows 7 at a time on AVX2 (8 accumulators) and on NEON (half of its 16:
    LLVM's AArch64 backend spilled 14), all 14 at once on AVX-512 (the schedule only; numerics above and under
    emulation)."""
    from tvm import s_tir

    from sqnxt_compiler.kernels.column_conv import column_conv_kernel
    from sqnxt_compiler.schedules.column_conv import schedule_column_conv
    from sqnxt_compiler.target import load_target

    func = column_conv_kernel((1, 16, 14, 14), 16, 16, (3, 3), 1, (1, 1, 1, 1), True, True, 6.0)
    described = schedule_column_conv(s_tir.Schedule(func), load_target(target_name))
    assert described.startswith("14-row tiles") and (f"in groups of {groups_of}" in described) == (groups_of < 14)


@pytest.mark.parametrize("target_name, rows, channels", [("x86-avx2", 3, 4), ("x86-avx512", 4, 4)])
def test_few_channel_tiles_sized_for_the_register_file(target_name, rows, channels):
    """A 3x3/2 stem on 3 channels (MobileNetV2's, on a smaller image): on 16 registers its register tile is 3 rows
    x 4 channels (12 accumulators), on 32 4 x 4; the rows that are no multiple of a tile (17 = 5 x 3 + 2) end in a
    tile moved back. Either way it matches ONNX Runtime (run where this CPU has the target's instructions)."""
    from sqnxt_compiler.target import load_target

    if not runs_here(target_name):
        pytest.skip("this CPU has no AVX-512")
    model = conv_model(3, 32, 1, 33, 33, (3, 3), 2, True, "relu6", 1)
    data = _seeded_input(model)
    actual, notes = compile_and_run(model, True, data, load_target(target_name))
    assert relative_error(actual, reference_outputs(model, {"data": data})[0]) <= 1e-5
    described = next(line for line in notes["schedule"] if "column_conv" in line)
    assert f"{rows}-row tiles x {channels} channels" in described


@pytest.mark.parametrize("width", [34, 100, 112, 33])
@pytest.mark.parametrize("target_name", ["host", "x86-avx2"])
def test_stride_2_rows_split_by_shuffles_on_even_widths(width, target_name):
    """At stride 2 an even-width input row is split into its two column phases by shuffles of two whole vectors
    (the last pair moved back to end at the row's end: 34 and 100 columns), and the kernel states its FLOPs for the
    tuner; an odd width (33) keeps the lane-wise copy. Either way the result matches ONNX Runtime."""
    from sqnxt_compiler.kernels.column_conv import ESTIMATED_FLOPS_ATTR, column_conv_kernel
    from sqnxt_compiler.target import load_target

    kernel = column_conv_kernel([1, 8, 9, width], 8, 8, (3, 3), 2, (1, 1, 1, 1), True, True, relu_max=6.0)
    assert (ESTIMATED_FLOPS_ATTR in kernel.attrs) == (width % 2 == 0)
    model = conv_model(8, 8, 8, 9, width, (3, 3), 2, True, "relu6", 1)
    data = _seeded_input(model)
    actual, _ = compile_and_run(model, True, data, load_target(target_name))
    assert relative_error(actual, reference_outputs(model, {"data": data})[0]) <= 1e-5


def test_mobilenet_v2_has_every_depthwise_conv_taken():
    model = build_model("mobilenet-v2", resolution=64)
    _, notes = compile_and_run(model, True, _seeded_input(model))
    assert notes["depthwise_conv"][0].startswith("depthwise: 17 fused (3x3/s1: 13, 3x3/s2: 4)")


@pytest.mark.parametrize("groups", [1, 4])
def test_grouped_but_not_depthwise_convs_stay_generic(groups):
    g = GraphBuilder(seed=1)
    x = Tensor("data", (1, 8, 12, 12))
    model = g.finish("grouped", x, g.conv(x, 8, (3, 3), pad=(1, 1), groups=groups))
    actual, notes = compile_and_run(model, True, _seeded_input(model))
    assert notes["depthwise_conv"] == notes["few_channel_conv"] == ["nothing to fuse; module unchanged"]
    assert relative_error(actual, reference_outputs(model, {"data": _seeded_input(model)})[0]) <= 1e-5


@pytest.mark.parametrize("name, taken", [("mobilenet-v2", "3x3/s2, 3 channels: 1"),
                                         ("squeezenet1.1", "3x3/s2, 3 channels + max pool 3x3/2: 1"),
                                         ("1.0-SqNxt-23", None)])
def test_the_few_channel_pass_takes_the_3x3_stems_only(name, taken):
    """The 3x3 stride-2 stems, with SqueezeNet's max pool; SqueezeNext's 7x7 stem stays the Winograd stem's."""
    model = build_model(name, resolution=64 if name != "1.0-SqNxt-23" else 227)
    _, notes = compile_and_run(model, True, _seeded_input(model))
    if taken is None:
        assert notes["few_channel_conv"] == ["nothing to fuse; module unchanged"]
        assert notes["winograd_stem"][0].startswith("winograd_stem_tiles: 1 fused") or \
            notes["winograd_stem"][0].startswith("winograd_stem: 1 fused")
    else:
        assert f"({taken})" in notes["few_channel_conv"][0]


@pytest.mark.parametrize("target_name", ["host", "x86-avx2"])
@pytest.mark.parametrize("shape, out_channels, stride, padding, window", [
    ((1, 3, 224, 224), 64, 2, (0, 0, 0, 0), MaxPoolWindow(3, 2, 55, 55)),  # SqueezeNet 1.1: 111 -> 55
    ((2, 3, 41, 38), 6, 2, (1, 1, 1, 1), MaxPoolWindow(3, 2, 10, 10)),     # 21 x 19, ceil mode, a narrow image
    ((1, 1, 30, 70), 5, 1, (0, 0, 0, 0), MaxPoolWindow(2, 2, 14, 34)),     # 28 x 68, 2x2/2, rows past the last tile
    ((1, 4, 21, 40), 8, 1, (1, 1, 1, 1), MaxPoolWindow(3, 2, 10, 20)),     # 21 x 40, ceil mode, 4 channels
])
def test_few_channel_stem_with_its_max_pool_matches_under_every_schedule(shape, out_channels, stride, padding,
                                                                         window, target_name):
    """Signed outputs (no ReLU), so a pool that read the conv's rows or columns past the image would fail."""
    data, weight, bias_values = random_conv(shape, out_channels, (3, 3), bias=True, seed=5)
    expected = max_pool(direct_conv(data, weight, bias_values, padding, False, stride), window)
    func = column_conv_kernel(shape, out_channels, 1, (3, 3), stride, padding, True, False,
                              pattern=FEW_CHANNEL_CONV, pool=window)
    check_every_schedule(func, [data, weight, bias_values], expected, target_name, rule_name="column_conv")


"""Column convs (`kernels/column_conv.py`), depthwise and few-channel: random shapes against ONNX Runtime, and the
passes take exactly the convs they are for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqnxt_compiler.models import build_model
from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from sqnxt_compiler.verify import reference_outputs, relative_error
from test_fusion_passes import SETTINGS, _seeded_input, compile_and_run


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
                                         ("squeezenet1.1", "3x3/s2, 3 channels: 1"), ("1.0-SqNxt-23", None)])
def test_the_few_channel_pass_takes_the_3x3_stems_only(name, taken):
    """The 3x3 stride-2 stems; SqueezeNext's 7x7 stem stays the Winograd stem's."""
    model = build_model(name, resolution=64 if name != "1.0-SqNxt-23" else 227)
    _, notes = compile_and_run(model, True, _seeded_input(model))
    if taken is None:
        assert notes["few_channel_conv"] == ["nothing to fuse; module unchanged"]
        assert notes["winograd_stem"][0].startswith("winograd_stem_tiles: 1 fused") or \
            notes["winograd_stem"][0].startswith("winograd_stem: 1 fused")
    else:
        assert f"({taken})" in notes["few_channel_conv"][0]

"""The simulator's int8 output equals a straightforward numpy model of the same quantized layer, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqnxt_compiler.accel import (AccelConfig, LayerSpec, Requant, compile_layer, default_tiling,
                                  reference_layer, simulate)
from sqnxt_compiler.accel.machine.reference import reference_requantize
from sqnxt_compiler.accel.machine.tiling import overflows
from sqnxt_compiler.errors import SqnxtError

from test_accel_strategies import KERNELS, layers, random_operands, random_residual, requants, tilings, tiny_config

TINY = tiny_config()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_layers_and_tilings_are_exact(data):
    layer = data.draw(layers())
    tiling = data.draw(tilings(layer))
    if overflows(layer, TINY, tiling):
        tiling = default_tiling(layer, TINY, tiling.dataflow)
    requant = data.draw(requants(layer.cout))
    seed = data.draw(st.integers(0, 2**16))
    x, w, b = random_operands(layer, seed)
    residual = random_residual(layer, seed)
    program = compile_layer(layer, TINY, tiling, requant)
    output, report = simulate(program, x, w, b, residual=residual)
    np.testing.assert_array_equal(output, reference_layer(layer, x, w, b, requant, residual))
    assert report.macs == layer.macs


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_every_kernel_on_the_real_config(kernel, stride, dataflow):
    config = AccelConfig.load("accel-16x16")
    layer = LayerSpec.conv2d(cin=24, cout=40, hw=(19, 17), kernel=kernel, stride=stride, groups=2)
    requant = Requant(multiplier=tuple(range(100, 140)), shift=14, zero_point=-5, relu=True)
    x, w, b = random_operands(layer, seed=kernel[0] * 10 + kernel[1])
    output, _ = simulate(compile_layer(layer, config, default_tiling(layer, config, dataflow), requant), x, w, b)
    expected = reference_layer(layer, x, w, b, requant)
    np.testing.assert_array_equal(output, expected)
    assert len(np.unique(expected)) > 20, "the requantization should not collapse the output"


def test_dense_and_batch():
    config = AccelConfig.load("accel-32x32")
    layer = LayerSpec.dense(300, 70, n=3)
    requant = Requant(multiplier=77, shift=16)
    x, w, b = random_operands(layer, seed=1)
    for dataflow in ("ws", "os"):
        output, _ = simulate(compile_layer(layer, config, default_tiling(layer, config, dataflow), requant), x, w, b)
        np.testing.assert_array_equal(output, reference_layer(layer, x, w, b, requant))


def test_simulate_rebinds_requantization_and_checks_operands():
    config = AccelConfig.load("accel-16x16")
    layer = LayerSpec.conv2d(8, 16, 6, 3)
    x, w, b = random_operands(layer, seed=2)
    program = compile_layer(layer, config)
    requant = Requant(multiplier=3, shift=9, relu=True)
    output, _ = simulate(program, x, w, b, requant)
    np.testing.assert_array_equal(output, reference_layer(layer, x, w, b, requant))
    with pytest.raises(SqnxtError, match=r"inputs must be int8\[1, 6, 6, 8\], got float32"):
        simulate(program, x.astype(np.float32), w, b)


@settings(max_examples=50, deadline=None)
@given(largest=st.floats(1e-6, 50.0), ratios=st.lists(st.floats(2.0 ** -16, 1.0), min_size=1, max_size=8),
       zero_point=st.integers(-10, 10))
def test_requant_from_real_scales_rounds_like_floating_point(largest, ratios, zero_point):
    scales = largest * np.array(ratios)   # per-channel scales within 2^16 of each other
    requant = Requant.from_scale(scales, zero_point=zero_point)
    acc = np.random.default_rng(0).integers(-(1 << 20), 1 << 20, (64, len(scales)))
    exact = np.clip(np.floor(acc * np.array(scales) + 0.5) + zero_point, -128, 127)
    got = reference_requantize(acc, requant, len(scales)).astype(np.int64)
    assert np.abs(got - exact).max() <= 1      # fixed point vs float: off by at most one step
    assert np.mean(got == exact) > 0.95


def test_requant_from_scale_refuses_bad_scales():
    with pytest.raises(SqnxtError, match="finite and positive"):
        Requant.from_scale(np.array([0.5, -1.0]))
    assert isinstance(Requant.from_scale(0.25).multiplier, int)


def test_fused_squeezenext_merge():
    """The last 1x1 expand of a SqueezeNext block with its merge fused: out = ReLU(conv(x) + shortcut)."""
    config = AccelConfig.load("accel-16x16")
    layer = LayerSpec.conv2d(32, 64, 28, 1, residual=True, name="expand+merge")
    x, w, b = random_operands(layer, seed=5)
    shortcut = random_residual(layer, seed=5)
    requant = Requant(multiplier=3, shift=12, relu=True, residual_multiplier=1 << 11)   # shortcut scale 1/2
    for dataflow in ("ws", "os"):
        program = compile_layer(layer, config, default_tiling(layer, config, dataflow), requant)
        output, report = simulate(program, x, w, b, residual=shortcut)
        np.testing.assert_array_equal(output, reference_layer(layer, x, w, b, requant, shortcut))
        assert report.dram_bytes["residual"] == shortcut.size
    with pytest.raises(SqnxtError, match="adds a residual: pass residual=int8"):
        simulate(program, x, w, b)

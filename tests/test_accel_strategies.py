"""Shared hypothesis strategies and data for the accelerator tests (no tests of its own)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from sqnxt_compiler.accel import AccelConfig, LayerSpec, Requant, Tiling

KERNELS = [(1, 1), (3, 1), (1, 3), (3, 3), (5, 5), (7, 7)]


def tiny_config(**changes) -> AccelConfig:
    """A 4x4 array with small buffers: real tiling (partial tiles, split reductions) on tiny layers."""
    base = AccelConfig.load("accel-16x16")
    return base.replace(name="tiny-4x4", rows=4, cols=4, alu_lanes=4, input_bytes=4096, weight_bytes=4096,
                        accumulator_bytes=8192, **changes)


@st.composite
def layers(draw, max_hw: int = 14) -> LayerSpec:
    kh, kw = draw(st.sampled_from(KERNELS))
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    cin = groups * draw(st.integers(1, 6))
    cout = groups * draw(st.integers(1, 6))
    stride = draw(st.integers(1, 2))
    pad = tuple(draw(st.integers(0, k // 2)) for k in (kh, kw, kh, kw))
    h = draw(st.integers(max(1, kh - pad[0] - pad[2]), max_hw))
    w = draw(st.integers(max(1, kw - pad[1] - pad[3]), max_hw))
    n = draw(st.sampled_from([1, 1, 2]))
    return LayerSpec(n=n, cin=cin, h=h, w=w, cout=cout, kh=kh, kw=kw, stride=(stride, stride),
                     pad=pad, groups=groups, name="random", residual=draw(st.booleans()))


@st.composite
def tilings(draw, layer: LayerSpec) -> Tiling:
    return Tiling(draw(st.sampled_from(["ws", "os"])), draw(st.integers(1, layer.out_h)),
                  draw(st.integers(1, layer.out_w)), draw(st.integers(1, layer.cout_per_group)),
                  draw(st.integers(1, layer.cin_per_group)))


@st.composite
def requants(draw, cout: int) -> Requant:
    per_channel = draw(st.booleans())
    multiplier = (tuple(draw(st.lists(st.integers(1, 1 << 15), min_size=cout, max_size=cout)))
                  if per_channel else draw(st.integers(1, 1 << 15)))
    return Requant(multiplier=multiplier, shift=draw(st.integers(0, 24)), zero_point=draw(st.integers(-20, 20)),
                   relu=draw(st.booleans()), residual_multiplier=draw(st.integers(-(1 << 20), 1 << 20)))


def random_operands(layer: LayerSpec, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(-128, 128, layer.input_shape, dtype=np.int8),
            rng.integers(-128, 128, layer.weight_shape, dtype=np.int8),
            rng.integers(-(1 << 16), 1 << 16, layer.cout, dtype=np.int32))


def random_residual(layer: LayerSpec, seed: int) -> np.ndarray | None:
    """The int8 merge operand of a layer with a fused residual add (None otherwise)."""
    if not layer.residual:
        return None
    return np.random.default_rng(seed + 1).integers(-128, 128, layer.output_shape, dtype=np.int8)

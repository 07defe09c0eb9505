"""A straightforward numpy model of a quantized layer: the ground truth the simulator's output must equal."""

from __future__ import annotations

import numpy as np

from .layer import LayerSpec, Requant


def reference_layer(layer: LayerSpec, inputs: np.ndarray, weights: np.ndarray, bias: np.ndarray,
                    requant: Requant, residual: np.ndarray | None = None) -> np.ndarray:
    """int8 NHWC in, int8 OHWI weights, int32 bias (, int8 NHWC residual) -> int8 NHWC out, with int64
    arithmetic throughout (one loop over kernel taps, no tiling): it shares nothing with the accelerator."""
    acc = reference_accumulators(layer, inputs, weights) + bias.astype(np.int64)
    return reference_requantize(acc, requant, layer.cout, residual if layer.residual else None)


def reference_accumulators(layer: LayerSpec, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The exact convolution sums, (n, out_h, out_w, cout) int64."""
    top, left, bottom, right = layer.pad
    x = np.pad(inputs.astype(np.int64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    sh, sw = layer.stride
    out = np.zeros(layer.output_shape, dtype=np.int64)
    cig, cog = layer.cin_per_group, layer.cout_per_group
    for g in range(layer.groups):
        xg = x[..., g * cig:(g + 1) * cig]
        wg = weights[g * cog:(g + 1) * cog].astype(np.int64)
        for i in range(layer.kh):
            for j in range(layer.kw):
                window = xg[:, i:i + sh * (layer.out_h - 1) + 1:sh, j:j + sw * (layer.out_w - 1) + 1:sw, :]
                out[..., g * cog:(g + 1) * cog] += window @ wg[:, i, j, :].T
    return out


def reference_requantize(acc: np.ndarray, requant: Requant, cout: int,
                         residual: np.ndarray | None = None) -> np.ndarray:
    """Fixed-point rescale (plus the scaled residual) with round-half-up, saturate to int8, optional ReLU."""
    scaled = acc * requant.multipliers(cout)
    if residual is not None:
        scaled = scaled + residual.astype(np.int64) * requant.residual_multiplier
    if requant.shift:
        scaled = (scaled + (1 << (requant.shift - 1))) >> requant.shift
    y = np.clip(scaled + requant.zero_point, -128, 127)
    if requant.relu:
        y = np.maximum(y, requant.zero_point)
    return y.astype(np.int8)

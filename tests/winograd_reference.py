"""Shared by the Winograd kernel tests: float64 references (direct conv, max pool) and the check of a kernel
under every schedule its rule makes."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import s_tir

from sqnxt_compiler.kernels.winograd import MaxPoolWindow
from sqnxt_compiler.schedules import find_rule
from sqnxt_compiler.target import load_target


POOL_CASES = [  # stems with their max pool: data shape, out channels, kernel, padding, pool window; relu: no
    ((1, 3, 227, 227), 64, (5, 5), (1, 1, 1, 1), MaxPoolWindow(3, 2, 56, 56)),  # 1.0-SqNxt-23v5: 113 -> 56, ceil
    ((2, 3, 227, 227), 64, (7, 7), (0, 0, 0, 0), MaxPoolWindow(3, 2, 55, 55)),  # 1.0-SqNxt-23 at batch 2
    ((1, 2, 45, 70), 8, (5, 5), (2, 2, 2, 2), MaxPoolWindow(2, 2, 11, 17)),     # 23 x 35, floor mode, 2x2/2
    ((1, 3, 40, 50), 12, (7, 7), (3, 3, 3, 3), MaxPoolWindow(3, 1, 18, 23)),    # stride-1 pool, 20 x 25
]


def direct_conv(data, weight, bias, padding, relu, stride) -> np.ndarray:
    """float64 reference: conv2d(`stride`) [+ bias] [+ ReLU]."""
    top, left, bottom, right = padding
    kernel_h, kernel_w = weight.shape[2:]
    padded = np.pad(data.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_h, out_w = (padded.shape[2] - kernel_h) // stride + 1, (padded.shape[3] - kernel_w) // stride + 1
    out = np.zeros((data.shape[0], weight.shape[0], out_h, out_w))
    for ky in range(kernel_h):
        for kx in range(kernel_w):
            window = padded[:, :, ky:ky + stride * (out_h - 1) + 1:stride, kx:kx + stride * (out_w - 1) + 1:stride]
            out += np.einsum("oc,ncyx->noyx", weight[:, :, ky, kx].astype(np.float64), window)
    if bias is not None:
        out += bias[None, :, None, None]
    return np.maximum(out, 0) if relu else out


def max_pool(planes: np.ndarray, window: MaxPoolWindow) -> np.ndarray:
    """float64 reference: a max pool without padding whose windows past the image (ceil mode) are clipped."""
    height, width = planes.shape[2:]
    out = np.empty(planes.shape[:2] + (window.out_h, window.out_w))
    for y in range(window.out_h):
        for x in range(window.out_w):
            top, left = window.stride * y, window.stride * x
            out[:, :, y, x] = planes[:, :, top:min(top + window.kernel, height),
                                     left:min(left + window.kernel, width)].max(axis=(2, 3))
    return out


def random_conv(shape, out_channels, kernel, bias, seed: int = 0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape).astype(np.float32)
    weight = (rng.standard_normal((out_channels, shape[1], *kernel)) / kernel[0]).astype(np.float32)
    bias_values = rng.standard_normal(out_channels).astype(np.float32) if bias else None
    return data, weight, bias_values


def check_every_schedule(func, inputs: list[np.ndarray], expected: np.ndarray, target_name: str,
                         rule_name: str = "winograd_rows", tolerance: float = 2e-6) -> None:
    """`func` under the default schedule, unscheduled and in two sampled design spaces matches `expected`."""
    spec = load_target(target_name)
    rule = find_rule(func, spec)
    assert rule is not None and rule.name == rule_name
    target = spec.tvm_target()
    default = s_tir.Schedule(func)
    rule.apply(default, spec)
    schedules = [s_tir.Schedule(func).mod, default.mod]
    for seed in (1, 7):
        with spec.scope():
            schedules += [space.mod for space in rule.design_space(s_tir.Schedule(func, seed=seed))]
    for index, mod in enumerate(schedules):
        tensors = [tvm.runtime.tensor(a) for a in inputs] + [tvm.runtime.tensor(np.full(expected.shape, np.nan,
                                                                                         np.float32))]
        tvm.compile(mod, target)(*tensors)
        error = np.abs(tensors[-1].numpy() - expected).max() / np.abs(expected).max()
        assert error <= tolerance, f"schedule {index}: relative error {error:.2e}"

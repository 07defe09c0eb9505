"""Pixel-chunk kernels in tests: chunk-major arrays to and from NCHW, and running a kernel under its schedule."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import s_tir, tirx

from sqnxt_compiler.kernels import ChainStage
from sqnxt_compiler.kernels.contract import CHAIN_SPEC_ATTR
from sqnxt_compiler.kernels.pixel_chunks import PIXEL_CHUNK, image_chunks
from sqnxt_compiler.schedules.fused_pixel_chunks import schedule_pixel_chunks
from sqnxt_compiler.target import TargetSpec


def chunk_starts(pixels: int, chunk_group: int = 1) -> list[int]:
    """The first pixel of each chunk: the last chunk, and any the group adds, end at the last pixel."""
    return [min(k * PIXEL_CHUNK, pixels - PIXEL_CHUNK) for k in range(image_chunks(pixels, chunk_group))]


def to_chunk_major(nchw: np.ndarray, chunk_group: int = 1) -> np.ndarray:
    batch, channels, height, width = nchw.shape
    flat = nchw.reshape(batch, channels, height * width)
    return np.stack([flat[:, :, start:start + PIXEL_CHUNK] for start in chunk_starts(height * width, chunk_group)],
                    axis=1)


def from_chunk_major(chunks: np.ndarray, height: int, width: int, chunk_group: int = 1) -> np.ndarray:
    """The NCHW tensor; every pixel stored twice (the last chunk's overlap) must hold the same value both times."""
    batch, _, channels, _ = chunks.shape
    flat = np.full((batch, channels, height * width), np.nan, "float32")
    for k, start in enumerate(chunk_starts(height * width, chunk_group)):
        stored = flat[:, :, start:start + PIXEL_CHUNK]
        written = ~np.isnan(stored)
        np.testing.assert_array_equal(stored[written], chunks[:, k][written])
        flat[:, :, start:start + PIXEL_CHUNK] = chunks[:, k]
    return flat.reshape(batch, channels, height, width)


def stage(out_channels: int, relu: bool = True) -> ChainStage:
    """A 1x1 stride-1 conv stage with its bias."""
    return ChainStage(out_channels, (1, 1), (1, 1), (0, 0, 0, 0), 1, True, relu)


def chain_arrays(shape: tuple, stages: list[ChainStage], residual: bool, seed: int = 0) -> list[np.ndarray]:
    """Seeded NCHW arguments of a pointwise chain kernel (data, weights and biases, [residual], zeroed output)."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype("float32")]
    in_channels = shape[1]
    for chain_stage in stages:
        arrays += [rng.standard_normal((chain_stage.out_channels, in_channels, 1, 1)).astype("float32"),
                   rng.standard_normal(chain_stage.out_channels).astype("float32")]
        in_channels = chain_stage.out_channels
    out_shape = (shape[0], in_channels, *shape[2:])
    if residual:
        arrays.append(rng.standard_normal(out_shape).astype("float32"))
    return arrays + [np.zeros(out_shape, "float32")]


def run_scheduled(func: tirx.PrimFunc, spec: TargetSpec, arrays: list[np.ndarray]) -> tuple[np.ndarray, str]:
    """The kernel's output (its last argument) under its default schedule for `spec`, and the schedule's line."""
    sch = s_tir.Schedule(func.without_attr(CHAIN_SPEC_ATTR))
    description = schedule_pixel_chunks(sch, spec)
    lib = tvm.compile(sch.mod, spec.tvm_target())
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*tensors)
    return tensors[-1].numpy(), description

"""Depthwise convolutions (one filter per channel, as in MobileNet's 3x3 blocks; stride 1 or 2) with the output
columns in vectors.

The generic conv schedules vectorize over output channels; in NCHW a depthwise conv has nothing to reduce
across channels, and a vector of channels is a gather (a channel's pixels lie H*W floats apart). Here a vector
holds CHUNK output columns of one row: each of the K x K taps is one multiply-add of a contiguous input vector
by a broadcast weight.

- A tile of ROWS output rows first copies the input rows it reads, with the zero padding, into a buffer of its
  own (PHASE_BLOCK), split by column parity at stride 2, so that every tap reads a contiguous vector.
- The last row tile and, on images at least a chunk wide, the last chunk are moved back to end at the last
  output row / column: they overlap the ones before and write some outputs twice, with identical values.
  Narrower images are computed a whole chunk wide and only their real columns are stored."""

from __future__ import annotations

from typing import Sequence

from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from .common import ZERO, epilogue_value, grid_block
from .contract import CONV_BLOCK, DEPTHWISE, FUSION_ATTR, MACS_ATTR, OPAQUE_PATTERN, OUTPUT_BLOCK, PHASE_BLOCK
from .winograd import conv_output_size

ROWS = 4  # output rows per tile: the register tile is ROWS rows x one chunk
CHUNK = 16  # output columns per chunk (one AVX-512 vector, two AVX2, four NEON)
ACCUMULATE_BLOCK = f"{CONV_BLOCK}0"


def depthwise_kernel(data_shape: Sequence[int], kernel: tuple[int, int], stride: int,
                     padding: tuple[int, int, int, int], has_bias: bool, relu: bool,
                     relu_max: float | None = None) -> tirx.PrimFunc:
    """The PrimFunc (data, weight [C, 1, KH, KW], [bias], output) of a depthwise conv2d (channel multiplier 1)
    [+ bias][+ ReLU, clipped at `relu_max` when given], NCHW. Blocks: PHASE_BLOCK (a row tile's input rows,
    padded, by column parity), ACCUMULATE_BLOCK (the taps, into [.., tile, row, chunk, lane]), OUTPUT_BLOCK
    (bias, ReLU, store of the real columns)."""
    batch, channels, height, width = (int(d) for d in data_shape)
    kernel_h, kernel_w = kernel
    top, left, _, _ = padding
    out_h, out_w = conv_output_size(height, width, kernel, stride, padding)
    rows = min(ROWS, out_h)
    tiles, chunks = -(-out_h // rows), -(-out_w // CHUNK)
    narrow = out_w < CHUNK
    computed_w = CHUNK if narrow else out_w
    phase_width = -(-(computed_w + (kernel_w - 1) // stride) // CHUNK) * CHUNK  # whole vectors
    phase_rows = (rows - 1) * stride + kernel_h

    def first_row(tile):
        return tirx.min(tile * rows, out_h - rows)

    def first_column(chunk):
        return chunk * CHUNK if narrow else tirx.min(chunk * CHUNK, out_w - CHUNK)

    with IRBuilder() as builder:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            data = T.arg("data", T.buffer((batch, channels, height, width), "float32"))
            weight = T.arg("weight", T.buffer((channels, 1, kernel_h, kernel_w), "float32"))
            bias = T.arg("bias", T.buffer((channels,), "float32")) if has_bias else None
            output = T.arg("output", T.buffer((batch, channels, out_h, out_w), "float32"))
            T.func_attr({FUSION_ATTR: DEPTHWISE, MACS_ATTR: batch * channels * out_h * out_w * kernel_h * kernel_w,
                         "op_pattern": OPAQUE_PATTERN, "tirx.noalias": True})
            with T.sblock("root"):
                phase = IRBuilder.name("phase", T.sblock_alloc_buffer(
                    (batch, channels, tiles, stride, phase_rows, phase_width), "float32"))
                acc = IRBuilder.name("acc", T.sblock_alloc_buffer(
                    (batch, channels, tiles, rows, chunks, CHUNK), "float32"))

                def copy_rows(b, c, t, px, r, x):
                    row, col = stride * first_row(t) + r - top, stride * x + px - left
                    inside = tirx.all(row >= 0, row < height, col >= 0, col < width)
                    T.buffer_store(phase, tirx.if_then_else(inside, data[b, c, row, col], ZERO),
                                   [b, c, t, px, r, x])

                def accumulate(b, c, t, i, chunk, lane, ky, kx):
                    with T.init():
                        T.buffer_store(acc, ZERO, [b, c, t, i, chunk, lane])
                    column = first_column(chunk) + lane + tirx.floordiv(kx, stride)
                    tap = phase[b, c, t, tirx.floormod(kx, stride), i * stride + ky, column]
                    T.buffer_store(acc, acc[b, c, t, i, chunk, lane] + weight[c, 0, ky, kx] * tap,
                                   [b, c, t, i, chunk, lane])

                def store_output(b, c, t, i, chunk, lane):
                    T.buffer_store(output, epilogue_value(acc[b, c, t, i, chunk, lane], bias, c, relu,
                                                          relu_max=relu_max),
                                   [b, c, first_row(t) + i, first_column(chunk) + lane])

                grid_block(PHASE_BLOCK, (batch, channels, tiles, stride, phase_rows, phase_width), "SSSSSS",
                           "b c t px r x".split(), copy_rows)
                grid_block(ACCUMULATE_BLOCK, (batch, channels, tiles, rows, chunks, CHUNK, kernel_h, kernel_w),
                           "SSSSSSRR", "b c t i chunk lane ky kx".split(), accumulate)
                grid_block(OUTPUT_BLOCK, (batch, channels, tiles, rows, chunks, out_w if narrow else CHUNK),
                           "SSSSSS", "b c t i chunk lane".split(), store_output)
    return builder.get()

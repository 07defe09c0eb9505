"""A stride-2 stem and its max pool computed as polyphase Winograd F(4x4, r x r) over tiles of 4x4 outputs.

Why: `winograd.winograd_rows_kernel` transforms the rows only and multiplies along the columns directly (the
columns are the vector dimension). Transforming the columns too, with the vector lanes over column tiles
instead of columns, halves the multiplies again: per output and input channel of a 7x7/2 stem (1.0-SqNxt-23),
49 direct, 24.5 along rows, 12.25 over tiles; of a 5x5/2 stem (1.0-SqNxt-23v5) 25, 15, 9. AT and BT along
columns take back part of that, and the lanes over 16 column tiles need a 16-lane vector to keep a transformed
row's accumulators in registers: the stem pass uses this kernel on AVX-512 only.

How:
1. Polyphase as in `winograd.py`: the four parity images, each a stride-1 conv with r x r taps.
2. The phase images are stored column-tile-major: the column 4s + q of a phase row at [q, s] (q < 4), so the
   a = 4 + r - 1 columns of column tile s are [0..3, s] and [0..r-2, s + 1]: whole vectors over s.
3. BT along rows, then along columns; the product is, per transformed point (j, k), a reduction over (row
   phase, column phase, input channel), the weights transformed by G on both sides at compile time.
4. AT along columns, then rows, + bias + ReLU into a row tile's buffer in the same layout (conv[o, y, x, s]
   is the output column 4s + x), which the max pool reduces right away (`winograd.emit_pool_over_row_tiles`):
   its windows' columns are constant offsets in that layout, so the reduction runs on whole vectors over s.

Row and column tiles past the image are computed whole and never read. Only stems with a pool:
without one, the result would need a 4-way interleave of every output row, which the pool absorbs for free
(it reads scalars anyway).

Accuracy: float32 error of F(4x4, 4x4) against a float64 direct conv ~1e-5 of the output's range (2e-6
median), F(4x4, 3x3) ~3e-6."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from .common import epilogue_value, grid_block
from .contract import (COLUMN_INVERSE_BLOCK, COLUMN_TRANSFORM_BLOCK, FUSION_ATTR, INVERSE_BLOCK, MACS_ATTR,
                       OPAQUE_PATTERN, PHASE_BLOCK, POOL_ATTR, PRODUCT_BLOCK, TAPS_ATTR,
                       TRANSFORM_BLOCK, WINOGRAD_STEM_TILES)
from .winograd import (ROWS_PER_TILE, MaxPoolWindow, coefficient, conv_output_size, emit_pool_over_row_tiles, masked,
                       max_of, row_taps, winograd_matrices)

STRIDE = 2
TILE_CHUNK = 16  # column tiles per chunk: one AVX-512 vector, two AVX2, four NEON


def transform_weights_2d(weight: np.ndarray) -> np.ndarray:
    """OIHW weights of a KxK stride-2 conv -> u[o, py, px, c, j, k] = (G w_phase G^T)[j, k], w_phase[q, p] =
    w[o, c, 2q + py, 2p + px] (zero past the kernel)."""
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    r = row_taps(max(kernel_h, kernel_w), STRIDE)
    _, g, _ = winograd_matrices(ROWS_PER_TILE, r)
    by_phase = np.zeros((out_channels, STRIDE, STRIDE, in_channels, r, r))
    for py in range(STRIDE):
        for px in range(STRIDE):
            taps = weight[:, :, py::STRIDE, px::STRIDE].astype(np.float64)
            by_phase[:, py, px, :, :taps.shape[2], :taps.shape[3]] = taps
    return np.einsum("jq,kp,oyxcqp->oyxcjk", g, g, by_phase).astype(np.float32)


def winograd_tiles_kernel(data_shape: Sequence[int], out_channels: int, kernel: int, padding: tuple[int, int, int, int],
                          has_bias: bool, relu: bool, pool: MaxPoolWindow, relu_max: float | None = None
                          ) -> tirx.PrimFunc:
    """The PrimFunc (data, u [from `transform_weights_2d`], [bias], output) of conv2d(kernel x kernel, stride 2,
    `padding`) [+ bias][+ ReLU, clipped at `relu_max` when given] + max `pool`, NCHW. Blocks: PHASE_BLOCK (a row
    tile's input rows by parity, column-tile-major), TRANSFORM_BLOCK (BT along rows), COLUMN_TRANSFORM_BLOCK (BT
    along columns), PRODUCT_BLOCK (reduction), COLUMN_INVERSE_BLOCK (AT along columns), INVERSE_BLOCK (AT along
    rows, bias, ReLU), POOL_ROWS_BLOCK and OUTPUT_BLOCK (the pool, `winograd.emit_pool_over_row_tiles`)."""
    batch, channels, height, width = (int(d) for d in data_shape)
    top, left, _, _ = padding
    out_h, out_w = conv_output_size(height, width, (kernel, kernel), STRIDE, padding)
    m, r = ROWS_PER_TILE, row_taps(kernel, STRIDE)
    a = m + r - 1
    at, _, bt = winograd_matrices(m, r)
    row_tiles, chunks = -(-out_h // m), -(-out_w // (m * TILE_CHUNK))
    column_tiles = chunks * TILE_CHUNK
    # column tile s reads phase columns [q, s + 1] for q < a - m: one vector past the last chunk
    phase_tiles = column_tiles + TILE_CHUNK
    pool.check_fits_row_tiles()
    per_tile = pool.rows_per_tile()  # and pooled columns per column tile
    zero = tirx.const(0.0, "float32")

    with IRBuilder() as builder:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            data = T.arg("data", T.buffer((batch, channels, height, width), "float32"))
            u = T.arg("u", T.buffer((out_channels, STRIDE, STRIDE, channels, a, a), "float32"))
            bias = T.arg("bias", T.buffer((out_channels,), "float32")) if has_bias else None
            output_shape = (batch, out_channels, pool.out_h, pool.out_w)
            output = T.arg("output", T.buffer(output_shape, "float32"))
            T.func_attr({FUSION_ATTR: WINOGRAD_STEM_TILES, TAPS_ATTR: r, POOL_ATTR: pool.kernel,
                         MACS_ATTR: batch * out_channels * out_h * out_w * channels * kernel * kernel,
                         "op_pattern": OPAQUE_PATTERN, "tirx.noalias": True})
            with T.sblock("root"):
                phase_shape = (batch, row_tiles, STRIDE, STRIDE, channels, a, m, phase_tiles)
                phase = IRBuilder.name("phase", T.sblock_alloc_buffer(phase_shape, "float32"))
                row_transformed = IRBuilder.name("row_transformed", T.sblock_alloc_buffer(phase_shape, "float32"))
                transformed_shape = (batch, row_tiles, STRIDE, STRIDE, channels, a, a, column_tiles)
                transformed = IRBuilder.name("transformed", T.sblock_alloc_buffer(transformed_shape, "float32"))
                product_shape = (batch, out_channels, row_tiles, a, a, chunks, TILE_CHUNK)
                product = IRBuilder.name("product", T.sblock_alloc_buffer(product_shape, "float32"))
                column_inverse_shape = (batch, out_channels, row_tiles, a, m, chunks, TILE_CHUNK)
                column_inverse = IRBuilder.name("column_inverse",
                                                T.sblock_alloc_buffer(column_inverse_shape, "float32"))
                # one column tile more: the pool's windows of the last tile read into the next one (masked)
                conv = IRBuilder.name("conv", T.sblock_alloc_buffer(
                    (batch, out_channels, row_tiles * m, m, column_tiles + 1), "float32"))

                def split_by_parity(b, t, py, px, c, k, q, s):
                    row, col = STRIDE * (t * m + k) + py - top, STRIDE * (s * m + q) + px - left
                    inside = tirx.all(row >= 0, row < height, col >= 0, col < width)
                    # a select of a clamped read, not a branch per element around the read
                    clamped = data[b, c, tirx.max(tirx.min(row, height - 1), 0), tirx.max(tirx.min(col, width - 1), 0)]
                    T.buffer_store(phase, tirx.Select(inside, clamped, zero), [b, t, py, px, c, k, q, s])

                def transform_rows(b, t, py, px, c, j, q, s):
                    value = sum((coefficient(bt, j, k) * phase[b, t, py, px, c, k, q, s] for k in range(a)), zero)
                    T.buffer_store(row_transformed, value, [b, t, py, px, c, j, q, s])

                def transform_columns(b, t, py, px, c, j, k, s):
                    # declared to read the whole rows: the row transform then spans whole vectors
                    T.reads(row_transformed[b, t, py, px, c, j, 0:m, 0:phase_tiles])
                    T.writes(transformed[b, t, py, px, c, j, k, s])
                    value = sum((coefficient(bt, k, p) * row_transformed[b, t, py, px, c, j, p % m, s + p // m]
                                 for p in range(a)), zero)
                    T.buffer_store(transformed, value, [b, t, py, px, c, j, k, s])

                def multiply_add(b, o, t, j, k, chunk, lane, py, px, c):
                    with T.init():
                        T.buffer_store(product, zero, [b, o, t, j, k, chunk, lane])
                    T.buffer_store(product, product[b, o, t, j, k, chunk, lane] + u[o, py, px, c, j, k]
                                   * transformed[b, t, py, px, c, j, k, chunk * TILE_CHUNK + lane],
                                   [b, o, t, j, k, chunk, lane])

                def inverse_columns(b, o, t, j, x, chunk, lane):
                    value = sum((coefficient(at, x, k) * product[b, o, t, j, k, chunk, lane] for k in range(a)), zero)
                    T.buffer_store(column_inverse, value, [b, o, t, j, x, chunk, lane])

                def inverse_rows(b, o, t, i, x, s):
                    # over column tiles s, not (chunk, lane): the pool's region of the conv is then a range of
                    # one variable, which compute_at can map back (from chunk * 16 + lane it kept one lane)
                    chunk, lane = tirx.floordiv(s, TILE_CHUNK), tirx.floormod(s, TILE_CHUNK)
                    value = sum((coefficient(at, i, j) * column_inverse[b, o, t, j, x, chunk, lane]
                                 for j in range(a)), zero)
                    T.buffer_store(conv, epilogue_value(value, bias, o, relu, relu_max=relu_max),
                                   [b, o, t * m + i, x, s])

                def horizontal_max(b, o, row, e, s):
                    # pooled column per_tile s + e reads conv columns m s + stride e + dx, at [offset % m, s +
                    # offset / m]: whole vectors over s once the schedule unrolls e
                    offsets = [pool.stride * e + dx for dx in range(pool.kernel)]
                    return max_of(masked(m * s + offset < out_w, conv[b, o, row, tirx.floormod(offset, m),
                                                                       s + tirx.floordiv(offset, m)])
                                  for offset in offsets)

                grid_block(PHASE_BLOCK, phase_shape, "SSSSSSSS", "b t py px c k q s".split(), split_by_parity)
                grid_block(TRANSFORM_BLOCK, phase_shape, "SSSSSSSS", "b t py px c j q s".split(), transform_rows)
                grid_block(COLUMN_TRANSFORM_BLOCK, transformed_shape, "SSSSSSSS", "b t py px c j k s".split(),
                           transform_columns)
                grid_block(PRODUCT_BLOCK, (*product_shape, STRIDE, STRIDE, channels), "SSSSSSSRRR",
                           "b o t j k chunk lane py px c".split(), multiply_add)
                grid_block(COLUMN_INVERSE_BLOCK, column_inverse_shape, "SSSSSSS", "b o t j x chunk lane".split(),
                           inverse_columns)
                grid_block(INVERSE_BLOCK, (batch, out_channels, row_tiles, m, m, column_tiles), "SSSSSS",
                           "b o t i x s".split(), inverse_rows)
                emit_pool_over_row_tiles(pool, conv, out_h, (m, column_tiles), (per_tile, column_tiles),
                                         horizontal_max,
                                         lambda x: (tirx.floormod(x, per_tile), tirx.floordiv(x, per_tile)), output)
    return builder.get()

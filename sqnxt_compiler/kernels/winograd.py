"""Convolutions computed as Winograd F(m, r) along rows: the stride-2 stems (polyphase) and stride-1 convs
whose taps run down the rows (3x1), and their matrices.

Why: the 7x7/2 stem of 1.0-SqNxt-23 is 42% of the network's multiply-adds (116M of 278M) and as a direct
convolution already runs near the FMA peak: only fewer multiplies make it faster. The same holds for the
3x1 convs of the SqueezeNext blocks (F(4, 3): 6 multiplies per 4 outputs instead of 12).

How, in two steps:
1. Polyphase (stride 2 only). Split the input by the parity of its row and column, x[c, 2Y + py, 2X + px].
   Each of the four phase images, convolved at stride 1 with the taps of matching parity
   (w[o, c, 2q + py, 2s + px]), gives a quarter of the sum; a stride-2 conv is their total. Stride 1 makes the
   columns contiguous, so the kernel vectorizes over output columns with plain loads. At stride 1 there is
   one phase: the (padded) input rows themselves.
2. Winograd F(m, r) along rows, r = ceil(KH / stride) row taps per phase: each output tile of m rows reads
   m + r - 1 input rows, transformed by BT; the weights are transformed by G at compile time (constants); the
   product is a dense multiply-add over (row phase, input channel, column tap) per transformed row j, and AT
   maps the m + r - 1 products back to m rows. With m = 4, K = 7 at stride 2: 7 x 42 multiply-adds per 4
   output pixels of a channel, vs 4 x 147 direct (2.0x fewer); K = 5: 6 x 30 vs 4 x 75 (1.67x); a 3x1 conv at
   stride 1: 6 vs 12 (2x). The odd row phase has one tap fewer; it gets a zero tap so both phases share one
   transform. Columns are not transformed: Winograd along the vector dimension would need lane shuffles.

Tiles never need predicates: like `pixel_chunks`' chunks, the last row tile and the last 16-column chunk
are moved back to end at the last output row / column, so they overlap the tile before and write a few
outputs twice with identical values. An image narrower than a chunk (14x14) is computed at the chunk's width,
AT included (INVERSE_BLOCK, into a chunk-wide buffer), and only its real columns are copied out: the products
then stay whole vectors. The phase images read zeros outside the input (padding, and the rows
and columns past it that only zero taps or discarded outputs touch).

A stem followed by a max pool takes the pool (`MaxPoolWindow`, `emit_pool_over_row_tiles`): each row tile
reduces its conv rows for the pool right after computing them, so the conv's result (~3 MB an image) never
exists whole; the tiles are then computed whole, never moved back.

Accuracy: the interpolation points 0, -1, 1, 1/2, -2, -1/2 (Barabasz et al., "Error analysis and improving
the accuracy of Winograd convolution", 2018: the points TVM's own winograd_util uses); float32 error on the
stem of 1.0-SqNxt-23 vs a float64 direct conv ~1e-6 of the output's range."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from .common import epilogue_value, grid_block
from .contract import (FUSION_ATTR, INVERSE_BLOCK, MACS_ATTR, OPAQUE_PATTERN, OUTPUT_BLOCK, PHASE_BLOCK, POOL_ATTR,
                       POOL_ROWS_BLOCK, PRODUCT_BLOCK, TAPS_ATTR, TRANSFORM_BLOCK, WINOGRAD_STEM)

ROWS_PER_TILE = 4  # m of F(m, r)
NEGATIVE_INFINITY = tirx.min_value("float32")  # what a pool window's positions past the image contribute
COLUMN_CHUNK = 16  # output columns per vector chunk (one AVX-512 vector, two AVX2, four NEON)

# Interpolation points in order of use; F(m, r) takes the first m + r - 2 and infinity.
_POINTS = (0.0, -1.0, 1.0, 0.5, -2.0, -0.5, 2.0, -0.25)


def winograd_matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AT (m x a), G (a x r), BT (a x a), a = m + r - 1, of F(m, r): for rows d (a) and taps g (r),
    AT @ ((G @ g) * (BT @ d)) == [sum_q g[q] d[i + q] for i in range(m)]. AT and G are the Vandermonde
    matrices of the points (infinity: the last row / column); BT is the unique solution of that identity,
    which is linear in BT."""
    a = m + r - 1
    if a - 1 > len(_POINTS):
        raise ValueError(f"F({m}, {r}) needs {a - 1} interpolation points; {len(_POINTS)} are defined")
    points = np.array(_POINTS[:a - 1])
    at = np.zeros((m, a))
    g = np.zeros((a, r))
    at[:, :a - 1] = points[None, :] ** np.arange(m)[:, None]
    g[:a - 1, :] = points[:, None] ** np.arange(r)[None, :]
    at[m - 1, a - 1] = g[a - 1, r - 1] = 1.0
    # sum_k AT[i, k] G[k, q] BT[k, p] = [p == i + q] for all i, q, p: one equation per (i, q, p)
    equations = np.einsum("ik,kq,kl,pn->iqpln", at, g, np.eye(a), np.eye(a)).reshape(m * r * a, a * a)
    wanted = np.array([float(p == i + q) for i in range(m) for q in range(r) for p in range(a)])
    bt = np.linalg.solve(equations.T @ equations, equations.T @ wanted).reshape(a, a)
    bt[np.abs(bt) < 1e-12] = 0.0  # solver noise on the exact zeros, which the unrolled transform then skips
    if not np.allclose(np.einsum("ik,kq,kp->iqp", at, g, bt),
                       np.array([[[float(p == i + q) for p in range(a)] for q in range(r)] for i in range(m)])):
        raise ValueError(f"no Winograd F({m}, {r}) for these points")
    return at, g, bt


@dataclass(frozen=True)
class MaxPoolWindow:
    """A max pool without padding (`out_h` x `out_w` from the graph: floor or ceil mode) applied to a kernel's
    result. A window that a ceil-mode pool runs past the image is clipped to the image."""

    kernel: int
    stride: int
    out_h: int
    out_w: int

    def rows_per_tile(self) -> int:
        """Pooled rows whose windows start in a tile of ROWS_PER_TILE conv rows."""
        return ROWS_PER_TILE // self.stride

    def carry_rows(self) -> int:
        """The first rows of the next tile that a tile's last window also reads."""
        return max(0, self.stride * (self.rows_per_tile() - 1) + self.kernel - ROWS_PER_TILE)

    def fits_row_tiles(self) -> bool:
        """Whether each tile starts whole windows and they read at most into the next tile."""
        return ROWS_PER_TILE % self.stride == 0 and self.carry_rows() <= ROWS_PER_TILE

    def check_fits_row_tiles(self) -> None:
        """What a stem kernel says of a pool it cannot take (the stem pass only fuses pools that fit)."""
        if not self.fits_row_tiles():
            raise ValueError(f"a {self.kernel}x{self.kernel} pool of stride {self.stride} does not fit "
                             f"{ROWS_PER_TILE}-row tiles")


def masked(inside: tirx.PrimExpr, value: tirx.PrimExpr) -> tirx.PrimExpr:
    """`value` where `inside`, else what a max ignores: a pool window's positions past the image."""
    return tirx.Select(inside, value, NEGATIVE_INFINITY)


def max_of(values: Iterable[tirx.PrimExpr]) -> tirx.PrimExpr:
    return functools.reduce(tirx.max, values)


def window_columns_max(pool: MaxPoolWindow, x, width: int,
                       column_value: Callable[[tirx.PrimExpr], tirx.PrimExpr]) -> tirx.PrimExpr:
    """The max over the columns of pooled column x's window of `column_value(column)` (which clamps its read),
    -inf past `width`."""
    return max_of(masked(column < width, column_value(column))
                  for column in (pool.stride * x + dx for dx in range(pool.kernel)))


def emit_pool_over_row_tiles(pool: MaxPoolWindow, conv: tirx.Buffer, conv_h: int, conv_columns: Sequence[int],
                             column_shape: Sequence[int], horizontal_max: Callable[..., tirx.PrimExpr],
                             output_columns: Callable[[tirx.PrimExpr], tuple], output: tirx.Buffer) -> None:
    """In a stem kernel's root block: the max pool of its conv result, computed per row tile of ROWS_PER_TILE
    conv rows while the tile is in cache, so the result never goes through memory. POOL_ROWS_BLOCK reduces a
    tile's rows into one row per window that starts in the tile, then keeps the tile's first rows that the
    tile before also reads (`carry_rows`); OUTPUT_BLOCK takes a window's row and the next tile's carried rows.
    `horizontal_max(b, o, row, *columns)` is the max of conv row `row` over the window of the pooled column at
    `columns` (an index into `column_shape`, the kernel's layout of pooled columns), -inf past the image;
    `output_columns(x)` maps output column x to it. `conv` is (batch, channels, rows, *columns), of which the
    kernel writes `conv_columns`; a window may read past them (masked), so POOL_ROWS_BLOCK declares that it
    reads its tile's rows of what is written."""
    tile_rows = alloc_pool_rows(pool, conv, column_shape)
    emit_pool_rows(pool, conv, conv_h, conv_columns, horizontal_max, tile_rows)
    emit_pool_output(pool, conv_h, tile_rows, output_columns, output)


def alloc_pool_rows(pool: MaxPoolWindow, conv: tirx.Buffer, column_shape: Sequence[int]) -> tirx.Buffer:
    """In a stem kernel's root block: POOL_ROWS_BLOCK's buffer, (batch, channels, tiles, rows, *column_shape)."""
    batch, channels, rows = (int(d) for d in conv.shape[:3])
    shape = (batch, channels, rows // ROWS_PER_TILE, pool.rows_per_tile() + pool.carry_rows(), *column_shape)
    return IRBuilder.name("tile_rows", T.sblock_alloc_buffer(shape, "float32"))


def emit_pool_rows(pool: MaxPoolWindow, conv: tirx.Buffer, conv_h: int, conv_columns: Sequence[int],
                   horizontal_max: Callable[..., tirx.PrimExpr], tile_rows: tirx.Buffer) -> None:
    """POOL_ROWS_BLOCK of `emit_pool_over_row_tiles`."""
    m = ROWS_PER_TILE
    column_names = [f"x{i}" for i in range(len(tile_rows.shape) - 4)]

    def reduce_tile(b, o, t, v, *columns):
        T.reads(conv[(b, o, slice(t * m, t * m + m), *(slice(0, extent) for extent in conv_columns))])
        T.writes(tile_rows[(b, o, t, v, *columns)])
        T.buffer_store(tile_rows, tile_row_max(pool, conv_h, t, v, lambda row: horizontal_max(b, o, row, *columns)),
                       [b, o, t, v, *columns])

    grid_block(POOL_ROWS_BLOCK, tile_rows.shape, "S" * len(tile_rows.shape), ["b", "o", "t", "v", *column_names],
               reduce_tile)


def tile_row_max(pool: MaxPoolWindow, conv_h: int, t, v, row_value: Callable[[tirx.PrimExpr], tirx.PrimExpr]
                 ) -> tirx.PrimExpr:
    """Row v of row tile t's pooling rows, from `row_value(conv row)`: v < rows_per_tile, the max over the rows
    of the window that starts in the tile (those in it: the rest are the next tile's carried rows); else the
    carried row v - rows_per_tile. -inf past the image. Folds once v is unrolled."""
    m, per_tile = ROWS_PER_TILE, pool.rows_per_tile()

    def row_max(offset, in_tile):
        return masked(tirx.all(in_tile, t * m + offset < conv_h), row_value(t * m + tirx.min(offset, m - 1)))

    window = max_of(row_max(pool.stride * v + dy, pool.stride * v + dy < m) for dy in range(pool.kernel))
    carried_row = row_max(tirx.max(v - per_tile, 0), v >= per_tile)
    return tirx.Select(v < per_tile, window, carried_row)


def emit_pool_output(pool: MaxPoolWindow, conv_h: int, tile_rows: tirx.Buffer,
                     output_columns: Callable[[tirx.PrimExpr], tuple], output: tirx.Buffer) -> None:
    """OUTPUT_BLOCK of `emit_pool_over_row_tiles`: each pooled row from its tile's rows and the next tile's."""
    m, per_tile, carry = ROWS_PER_TILE, pool.rows_per_tile(), pool.carry_rows()
    tiles = int(tile_rows.shape[2])
    batch, channels = (int(d) for d in output.shape[:2])

    def pool_output(b, o, y, x):
        t, e, columns = tirx.floordiv(y, per_tile), tirx.floormod(y, per_tile), output_columns(x)

        def carried(dy):
            i = pool.stride * e + dy - m
            inside = tirx.all(i >= 0, (t + 1) * m + i < conv_h)
            next_tile, carried_row = tirx.min(t + 1, tiles - 1), tirx.max(tirx.min(i, carry - 1), 0)
            return masked(inside, tile_rows[(b, o, next_tile, per_tile + carried_row, *columns)])

        passing = range(m - pool.stride * (per_tile - 1), pool.kernel)  # the offsets that can pass the tile
        value = max_of([tile_rows[(b, o, t, e, *columns)], *(carried(dy) for dy in passing)])
        T.buffer_store(output, value, [b, o, y, x])

    grid_block(OUTPUT_BLOCK, (batch, channels, pool.out_h, pool.out_w), "SSSS", "b o y x".split(), pool_output)


def conv_output_size(height: int, width: int, kernel: tuple[int, int], stride: int,
                     padding: tuple[int, int, int, int]) -> tuple[int, int]:
    top, left, bottom, right = padding
    return (height + top + bottom - kernel[0]) // stride + 1, (width + left + right - kernel[1]) // stride + 1


def row_taps(kernel: int, stride: int = 2) -> int:
    return -(-kernel // stride)


def transform_weights(weight: np.ndarray, stride: int = 2) -> np.ndarray:
    """OIHW weights of a KHxKW conv at `stride` -> u[o, py, c, kx, j] = sum_q G[j, q] w[o, c, stride q + py, kx]."""
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    r = row_taps(kernel_h, stride)
    _, g, _ = winograd_matrices(ROWS_PER_TILE, r)
    by_phase = np.zeros((out_channels, stride, in_channels, r, kernel_w))
    for py in range(stride):
        taps = weight[:, :, py::stride, :].astype(np.float64)
        by_phase[:, py, :, :taps.shape[2], :] = taps
    return np.einsum("jq,opcqk->opckj", g, by_phase).astype(np.float32)


def coefficient(matrix: np.ndarray, row, col: int):
    """matrix[row, col] for a loop variable `row`: a Select chain that folds to a constant once the schedule
    unrolls `row`."""
    value = tirx.const(float(matrix[-1, col]), "float32")
    for index in range(matrix.shape[0] - 2, -1, -1):
        value = tirx.Select(row == index, tirx.const(float(matrix[index, col]), "float32"), value)
    return value


def winograd_rows_kernel(data_shape: Sequence[int], out_channels: int, kernel: tuple[int, int], stride: int,
                         padding: tuple[int, int, int, int], has_bias: bool, relu: bool,
                         pattern: str = WINOGRAD_STEM, pool: MaxPoolWindow | None = None,
                         relu_max: float | None = None) -> tirx.PrimFunc:
    """The PrimFunc (data, u [from `transform_weights`], [bias], output) of conv2d(KHxKW, `stride` 1 or 2,
    `padding`) [+ bias][+ ReLU, clipped at `relu_max` when given][+ max `pool`], NCHW, at least ROWS_PER_TILE
    output rows. Blocks: PHASE_BLOCK
    (the input rows a row tile needs, split by parity), TRANSFORM_BLOCK (BT along rows), PRODUCT_BLOCK
    (reduction), OUTPUT_BLOCK (AT, bias, ReLU, store). Narrow images: INVERSE_BLOCK does those into a
    chunk-wide buffer and OUTPUT_BLOCK copies the real columns; with a pool, INVERSE_BLOCK writes a tile's conv
    rows, POOL_ROWS_BLOCK and OUTPUT_BLOCK pool them (`emit_pool_over_row_tiles`). `pattern` names the rewrite
    that made it (FUSION_ATTR)."""
    batch, channels, height, width = (int(d) for d in data_shape)
    kernel_h, kernel_w = kernel
    top, left, _, _ = padding
    out_h, out_w = conv_output_size(height, width, kernel, stride, padding)
    m, r = ROWS_PER_TILE, row_taps(kernel_h, stride)
    a = m + r - 1
    at, _, bt = winograd_matrices(m, r)
    tiles, chunks = -(-out_h // m), -(-out_w // COLUMN_CHUNK)
    narrow = out_w < COLUMN_CHUNK
    if narrow and pool is not None:
        raise ValueError(f"a pool after a conv narrower than {COLUMN_CHUNK} columns is not fused")
    if pool is not None:
        pool.check_fits_row_tiles()
    # Tiles past the image are computed whole and not stored (narrow images: the columns) or not read (a pool's
    # buffer, tiles x chunks whole: its stores are then plain enough for the schedule's region analysis)
    rows_moved_back, columns_moved_back = pool is None, pool is None and not narrow
    computed_w = out_w if columns_moved_back else chunks * COLUMN_CHUNK
    phase_width = -(-(computed_w + (kernel_w - 1) // stride) // COLUMN_CHUNK) * COLUMN_CHUNK  # whole vectors
    zero = tirx.const(0.0, "float32")

    def first_row(tile):
        return tirx.min(tile * m, out_h - m) if rows_moved_back else tile * m

    def first_column(chunk):
        return tirx.min(chunk * COLUMN_CHUNK, out_w - COLUMN_CHUNK) if columns_moved_back else chunk * COLUMN_CHUNK

    with IRBuilder() as builder:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            data = T.arg("data", T.buffer((batch, channels, height, width), "float32"))
            u = T.arg("u", T.buffer((out_channels, stride, channels, kernel_w, a), "float32"))
            bias = T.arg("bias", T.buffer((out_channels,), "float32")) if has_bias else None
            conv_shape = (batch, out_channels, out_h, out_w)
            output_shape = conv_shape if pool is None else (batch, out_channels, pool.out_h, pool.out_w)
            output = T.arg("output", T.buffer(output_shape, "float32"))
            macs = batch * out_channels * out_h * out_w * channels * kernel_h * kernel_w
            attrs = {FUSION_ATTR: pattern, MACS_ATTR: macs, TAPS_ATTR: r, "op_pattern": OPAQUE_PATTERN,
                     "tirx.noalias": True}
            T.func_attr(attrs if pool is None else {**attrs, POOL_ATTR: pool.kernel})
            with T.sblock("root"):
                tile_shape = (batch, tiles, stride, stride, channels, a, phase_width)
                phase = IRBuilder.name("phase", T.sblock_alloc_buffer(tile_shape, "float32"))
                transformed = IRBuilder.name("transformed", T.sblock_alloc_buffer(tile_shape, "float32"))
                product = IRBuilder.name("product", T.sblock_alloc_buffer(
                    (batch, out_channels, tiles, a, chunks, COLUMN_CHUNK), "float32"))

                def split_by_parity(b, t, py, px, c, k, x):
                    row, col = stride * (first_row(t) + k) + py - top, stride * x + px - left
                    inside = tirx.all(row >= 0, row < height, col >= 0, col < width)
                    T.buffer_store(phase, tirx.if_then_else(inside, data[b, c, row, col], zero),
                                   [b, t, py, px, c, k, x])

                def transform_rows(b, t, py, px, c, j, x):
                    value = sum((coefficient(bt, j, k) * phase[b, t, py, px, c, k, x] for k in range(a)), zero)
                    T.buffer_store(transformed, value, [b, t, py, px, c, j, x])

                def multiply_add(b, o, t, j, chunk, lane, py, c, kx):
                    # declared to read the whole transformed row: the transform, computed at the row tile for
                    # what the products read, then spans whole vectors (the chunks alone read a ragged 55 or 114
                    # columns, and the transform's tail was scalar code: half of a 55x55 16->16 kernel's time)
                    T.reads(u[o, py, c, kx, j], transformed[b, t, py, 0:stride, c, j, 0:phase_width],
                            product[b, o, t, j, chunk, lane])
                    T.writes(product[b, o, t, j, chunk, lane])
                    with T.init():
                        T.buffer_store(product, zero, [b, o, t, j, chunk, lane])
                    column = first_column(chunk) + lane + tirx.floordiv(kx, stride)
                    T.buffer_store(product, product[b, o, t, j, chunk, lane] + u[o, py, c, kx, j]
                                   * transformed[b, t, py, tirx.floormod(kx, stride), c, j, column],
                                   [b, o, t, j, chunk, lane])

                inverse_shape = (batch, out_channels, tiles, m, chunks, COLUMN_CHUNK)
                inverse = IRBuilder.name("inverse", T.sblock_alloc_buffer(inverse_shape, "float32")) if narrow else None
                conv = output if pool is None else IRBuilder.name("conv", T.sblock_alloc_buffer(
                    (batch, out_channels, tiles * m, computed_w), "float32"))

                def store_output(b, o, t, i, chunk, lane):
                    value = sum((coefficient(at, i, j) * product[b, o, t, j, chunk, lane] for j in range(a)), zero)
                    if narrow:
                        T.buffer_store(inverse, epilogue_value(value, bias, o, relu, relu_max=relu_max),
                                       [b, o, t, i, chunk, lane])
                    else:
                        T.buffer_store(conv, epilogue_value(value, bias, o, relu, relu_max=relu_max),
                                       [b, o, first_row(t) + i, first_column(chunk) + lane])

                def copy_columns(b, o, t, i, chunk, lane):
                    T.buffer_store(output, inverse[b, o, t, i, chunk, lane], [b, o, first_row(t) + i, lane])

                def horizontal_max(b, o, row, x):
                    return window_columns_max(pool, x, out_w, lambda c: conv[b, o, row, tirx.min(c, computed_w - 1)])

                grid_block(PHASE_BLOCK, tile_shape, "SSSSSSS", "b t py px c k x".split(), split_by_parity)
                grid_block(TRANSFORM_BLOCK, tile_shape, "SSSSSSS", "b t py px c j x".split(), transform_rows)
                grid_block(PRODUCT_BLOCK, (batch, out_channels, tiles, a, chunks, COLUMN_CHUNK, stride, channels,
                                           kernel_w),
                            "SSSSSSRRR", "b o t j chunk lane py c kx".split(), multiply_add)
                names = "b o t i chunk lane".split()
                grid_block(INVERSE_BLOCK if narrow or pool else OUTPUT_BLOCK, inverse_shape, "SSSSSS", names,
                           store_output)
                if narrow:
                    grid_block(OUTPUT_BLOCK, (*inverse_shape[:-1], out_w), "SSSSSS", names, copy_columns)
                if pool:
                    emit_pool_over_row_tiles(pool, conv, out_h, (computed_w,), (pool.out_w,), horizontal_max,
                                             lambda x: (x,), output)
    return builder.get()

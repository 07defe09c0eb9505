"""Direct convs with the output columns in vectors, for convs with few input channels per group: depthwise
convs (one filter per channel, as in MobileNet's blocks) and the first conv of a network, on an image's 3
channels. Stride 1 or 2.

The generic conv schedules vectorize over output channels; in NCHW a depthwise conv has nothing to reduce
across channels, and a vector of channels is a gather (a channel's pixels lie H*W floats apart), and a stem's
3 input channels feed too short a reduction to hide its transposed stores. Here a vector holds CHUNK output
columns of one row: each tap is one multiply-add of a contiguous input vector by a broadcast weight, and an
input vector feeds every output channel of the register tile.

- A tile of output rows of a group first copies the input rows it reads into a buffer of its own, one
  plane per input channel and column phase (stride 2: the even and the odd columns), so that every tap reads a
  contiguous vector. The planes' margins are zeroed (PAD_BLOCK: the padding) and the image's columns copied in
  whole vectors with no per-column test (PHASE_BLOCK; a per-lane test would make TVM copy lane by lane). At stride
  2 on an even width, two vectors of input columns are split into a vector of each phase by two shuffles (one
  permute each on AVX-512, `uzp1`/`uzp2` on NEON).
- The last row tile and, on images at least a chunk wide, the last chunk (and the last copied vector of a row)
  are moved back to end at the last row / column: they overlap the ones before and write some values twice,
  identically. Narrower images are computed a whole chunk wide and only their real columns are stored.
- A few-channel stem with the max pool that follows it (SqueezeNet 1.1's 3x3/2 stem) pools each row tile in the
  tile's loops, while it is in cache: first over its windows' rows, in whole-row vectors, then over their
  stride-apart columns. The tiles are then ROWS_PER_TILE rows from row 0, the last one computed past the image
  and masked, and the conv's result (25 MB at batch 8) never goes through memory."""

from __future__ import annotations

from typing import Sequence

from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from .common import ZERO, epilogue_value, grid_block
from .contract import (CONV_BLOCK, DEPTHWISE, FUSION_ATTR, INVERSE_BLOCK, MACS_ATTR, OPAQUE_PATTERN, OUTPUT_BLOCK,
                       PHASE_BLOCK, POOL_ATTR, POOL_ROWS_BLOCK)
from .winograd import (ROWS_PER_TILE, MaxPoolWindow, alloc_pool_rows, conv_output_size, emit_pool_output,
                       tile_row_max, window_columns_max)

MAX_DEPTHWISE_ROWS = 16  # rows of a depthwise tile (one output channel); the schedule accumulates them in groups
# that fit the target's accumulator budget
WIDE_ROWS = 8  # rows per depthwise tile on images at least WIDE_IMAGE columns wide
WIDE_IMAGE = 56
CHUNK = 16  # output columns per chunk (one AVX-512 vector, two AVX2, four NEON)
ACCUMULATE_BLOCK = f"{CONV_BLOCK}0"
PAD_BLOCK = f"{PHASE_BLOCK}_pad"
# meta_schedule's FLOP count of a kernel, read instead of counting its body (it has no case for shuffles)
ESTIMATED_FLOPS_ATTR = "estimated_flops"
# A pooled tile's rows reduced over each window's rows first, along whole rows (vectors); POOL_ROWS_BLOCK then
# takes the windows' stride-apart columns from them
POOL_WINDOW_ROWS_BLOCK = f"{POOL_ROWS_BLOCK}_window_rows"


def takes_pool(pool: MaxPoolWindow) -> bool:
    """Whether a column conv can compute this max pool of its result: windows that fit its row tiles, at a stride
    of at least 2 (TVM cannot map a stride-1 window's columns back to the pool's for the schedule)."""
    return pool.fits_row_tiles() and pool.stride >= 2


def several_channel_tile(vector_registers: int) -> tuple[int, int]:
    """(rows, accumulators) of the register tile of a conv with several output channels per group, rows x output
    channels of one vector each: 4 rows and half the register file on 32 registers. On 16 (AVX2) 3 rows and 12: 8
    accumulators leave the two FMA pipes waiting on their latency, and the taps read the input rows as the FMAs'
    memory operands, so 12 fit beside the broadcast weight (docs/performance.md)."""
    return (4, vector_registers // 2) if vector_registers >= 32 else (3, 12)


def tile_rows(out_h: int, out_w: int, in_group: int, out_group: int, vector_registers: int | None) -> int:
    """Output rows per tile. Several output channels per group: the register tile's rows (`several_channel_tile`,
    for the target's `vector_registers`). Depthwise: the fewest rows computed, counting two more per tile for what
    a tile costs besides its rows (zeroing and filling its planes, the halo), the taller tile on a tie, up to
    MAX_DEPTHWISE_ROWS; WIDE_ROWS on wide images (per-shape timings: docs/performance.md)."""
    if in_group > 1 or out_group > 1:
        if vector_registers is None:
            raise ValueError("a column conv with several output channels per group needs the target's vector registers")
        return min(several_channel_tile(vector_registers)[0], out_h)
    if out_w >= WIDE_IMAGE:
        return min(WIDE_ROWS, out_h)
    candidates = range(1, min(MAX_DEPTHWISE_ROWS, out_h) + 1)
    return min(candidates, key=lambda rows: (-(-out_h // rows) * (rows + 2), -rows))


def column_conv_kernel(data_shape: Sequence[int], out_channels: int, groups: int, kernel: tuple[int, int],
                       stride: int, padding: tuple[int, int, int, int], has_bias: bool, relu: bool,
                       relu_max: float | None = None, pattern: str = DEPTHWISE,
                       pool: MaxPoolWindow | None = None, vector_registers: int | None = None) -> tirx.PrimFunc:
    """The PrimFunc (data, weight [out_channels, in_channels / groups, KH, KW], [bias], output) of a conv2d in
    `groups` groups [+ bias][+ ReLU, clipped at `relu_max` when given][+ max `pool`], NCHW. Blocks, each over
    (batch, group, row tile) loops: PAD_BLOCK and PHASE_BLOCK (the tile's input planes), ACCUMULATE_BLOCK (the
    taps, into [.., out channel, row, chunk, lane]), OUTPUT_BLOCK (bias, ReLU, store of the real columns); with
    a pool, that store is INVERSE_BLOCK's, into the conv's rows, and POOL_ROWS_BLOCK and OUTPUT_BLOCK pool them.
    `pattern` names the rewrite that made it (FUSION_ATTR); `vector_registers` (the target's) sizes the row tiles of
    a conv with several output channels per group (`tile_rows`)."""
    batch, channels, height, width = (int(d) for d in data_shape)
    in_group, out_group = channels // groups, out_channels // groups
    kernel_h, kernel_w = kernel
    top, left, _, _ = padding
    out_h, out_w = conv_output_size(height, width, kernel, stride, padding)
    if pool is not None and not takes_pool(pool):
        raise ValueError(f"a column conv cannot take a {pool.kernel}x{pool.kernel} max pool of stride {pool.stride}")
    rows = ROWS_PER_TILE if pool is not None else tile_rows(out_h, out_w, in_group, out_group, vector_registers)
    # pooled, the conv's rows are computed as wide as the pool's windows reach (ceil mode: past the image)
    reach_w = out_w if pool is None else max(out_w, pool.stride * (pool.out_w - 1) + pool.kernel)
    tiles, chunks = -(-out_h // rows), -(-reach_w // CHUNK)
    # pooled, every chunk is computed whole from column 0 (the pool masks the columns past the image): the conv's
    # rows are then written where TVM can prove they cover what the pool reads
    narrow = out_w < CHUNK and pool is None
    computed_w = chunks * CHUNK if pool is not None else CHUNK if narrow else out_w
    # plane p holds input columns stride * x + p at column margin + x, zeros around them
    plane_w = -(-width // stride)
    margin = -(-left // stride)
    deinterleaved = stride == 2 and width % 2 == 0  # shuffled into both phases: both planes are plane_w wide
    copy_lanes = 1 << (min(CHUNK, plane_w).bit_length() - 1)  # a power of two: LLVM splits other widths lane by lane
    copy_vectors = -(-plane_w // copy_lanes)
    reach = margin + computed_w + max(0, (kernel_w - 1 - left) // stride)
    phase_width = -(-max(reach, margin + plane_w) // CHUNK) * CHUNK
    # only the margins are zeroed: the copy writes every column from margin to margin + plane_w (zeros for rows
    # past the image), and no tap reads at or past `reach`; zeroing whole planes was a memset per tile. Planes with
    # no margin are still zeroed whole: with the copy (its last vector overlapping the one before) as their only
    # writer, TVM's schedule rejects the kernel's scope as not a stage pipeline
    margin_columns = margin + max(0, reach - margin - plane_w)
    phase_rows = (rows - 1) * stride + kernel_h

    def first_row(tile):
        return tile * rows if pool is not None else tirx.min(tile * rows, out_h - rows)

    def first_column(chunk):
        return chunk * CHUNK if narrow or pool is not None else tirx.min(chunk * CHUNK, out_w - CHUNK)

    with IRBuilder() as builder:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            data = T.arg("data", T.buffer((batch, channels, height, width), "float32"))
            weight = T.arg("weight", T.buffer((out_channels, in_group, kernel_h, kernel_w), "float32"))
            bias = T.arg("bias", T.buffer((out_channels,), "float32")) if has_bias else None
            output_hw = (out_h, out_w) if pool is None else (pool.out_h, pool.out_w)
            output = T.arg("output", T.buffer((batch, out_channels, *output_hw), "float32"))
            macs = batch * out_channels * out_h * out_w * in_group * kernel_h * kernel_w
            T.func_attr({FUSION_ATTR: pattern, MACS_ATTR: macs, "op_pattern": OPAQUE_PATTERN, "tirx.noalias": True,
                         **({} if pool is None else {POOL_ATTR: pool.kernel}),
                         **({ESTIMATED_FLOPS_ATTR: 2 * macs} if deinterleaved else {})})
            with T.sblock("root"):
                conv = None if pool is None else IRBuilder.name("conv", T.sblock_alloc_buffer(
                    (batch, out_channels, tiles * rows, computed_w), "float32"))
                pooled_rows = None if pool is None else alloc_pool_rows(pool, conv, (pool.out_w,))
                window_rows = None if pool is None else IRBuilder.name("window_rows", T.sblock_alloc_buffer(
                    (*pooled_rows.shape[:4], computed_w), "float32"))
                phase = IRBuilder.name("phase", T.sblock_alloc_buffer(
                    (batch, groups, tiles, in_group, stride, phase_rows, phase_width), "float32"))
                acc = IRBuilder.name("acc", T.sblock_alloc_buffer(
                    (batch, groups, tiles, out_group, rows, chunks, CHUNK), "float32"))

                def input_column(b, c, row, p, x):
                    if stride == 1:
                        return data[b, c, row, x]
                    column = stride * x + p  # an odd width: the last even column has no odd partner
                    return tirx.if_then_else(column < width, data[b, c, row, tirx.min(column, width - 1)], ZERO)

                def zero_margins(b, g, t, ci, p, r, k):
                    column = tirx.Select(k < margin, k, plane_w + k) if margin_columns else k
                    T.buffer_store(phase, ZERO, [b, g, t, ci, p, r, column])

                def tile_input_row(t, r):
                    """(the input row a tile's phase row r copies, clamped into the image, whether it is inside)"""
                    row = stride * first_row(t) + r - top
                    return tirx.max(tirx.min(row, height - 1), 0), tirx.all(row >= 0, row < height)

                def copy_planes(b, g, t, ci, p, r, v, lane):
                    row, inside = tile_input_row(t, r)
                    x = tirx.min(v * copy_lanes, plane_w - copy_lanes) + lane
                    value = input_column(b, g * in_group + ci, row, p, x)
                    T.buffer_store(phase, tirx.if_then_else(inside, value, ZERO), [b, g, t, ci, p, r, margin + x])

                def copy_both_phases(b, g, t, ci, r, v):
                    # the input columns of a vector of both phases, as two contiguous vectors
                    row, inside = tile_input_row(t, r)
                    x = tirx.min(v * copy_lanes, plane_w - copy_lanes)
                    columns = [data[b, g * in_group + ci, row, tirx.Ramp(stride * x + half * copy_lanes, 1, copy_lanes)]
                               for half in range(2)]
                    zeros = tirx.Broadcast(ZERO, copy_lanes)
                    for p in range(stride):
                        value = tirx.Shuffle(columns, [stride * lane + p for lane in range(copy_lanes)])
                        T.buffer_store(phase, tirx.Select(inside, value, zeros),
                                       [b, g, t, ci, p, r, tirx.Ramp(margin + x, 1, copy_lanes)])

                def accumulate(b, g, t, co, i, chunk, lane, ci, ky, kx):
                    with T.init():
                        T.buffer_store(acc, ZERO, [b, g, t, co, i, chunk, lane])
                    plane, offset = tirx.floormod(kx - left, stride), tirx.floordiv(kx - left, stride)
                    tap = phase[b, g, t, ci, plane, i * stride + ky, margin + first_column(chunk) + lane + offset]
                    T.buffer_store(acc, acc[b, g, t, co, i, chunk, lane]
                                   + weight[g * out_group + co, ci, ky, kx] * tap, [b, g, t, co, i, chunk, lane])

                def store_output(b, g, t, co, i, chunk, lane):
                    channel = g * out_group + co
                    T.buffer_store(output if pool is None else conv,
                                   epilogue_value(acc[b, g, t, co, i, chunk, lane], bias, channel, relu,
                                                  relu_max=relu_max),
                                   [b, channel, first_row(t) + i, first_column(chunk) + lane])

                def reduce_window_rows(b, g, t, o, v, x):
                    T.reads(conv[b, o, t * rows:t * rows + rows, x])
                    T.writes(window_rows[b, o, t, v, x])
                    T.buffer_store(window_rows, tile_row_max(pool, out_h, t, v, lambda row: conv[b, o, row, x]),
                                   [b, o, t, v, x])

                def reduce_window_columns(b, g, t, o, v, x):
                    T.reads(window_rows[b, o, t, v, pool.stride * x:pool.stride * x + pool.kernel])
                    T.writes(pooled_rows[b, o, t, v, x])
                    T.buffer_store(pooled_rows, window_columns_max(
                        pool, x, out_w, lambda c: window_rows[b, o, t, v, tirx.min(c, out_w - 1)]), [b, o, t, v, x])

                with T.grid(batch, groups, tiles) as tile_loops:
                    outer = list(zip(("b", "g", "t"), IRBuilder.name_many(["b", "g", "t"], tile_loops)))
                    grid_block(PAD_BLOCK, (in_group, stride, phase_rows, margin_columns or phase_width), "SSSS",
                               "ci p r k".split(), zero_margins, outer)
                    if deinterleaved:
                        grid_block(PHASE_BLOCK, (in_group, phase_rows, copy_vectors), "SSS", "ci r v".split(),
                                   copy_both_phases, outer)
                    else:
                        grid_block(PHASE_BLOCK, (in_group, stride, phase_rows, copy_vectors, copy_lanes), "SSSSS",
                                   "ci p r v lane".split(), copy_planes, outer)
                    grid_block(ACCUMULATE_BLOCK, (out_group, rows, chunks, CHUNK, in_group, kernel_h, kernel_w),
                               "SSSSRRR", "co i chunk lane ci ky kx".split(), accumulate, outer)
                    grid_block(OUTPUT_BLOCK if pool is None else INVERSE_BLOCK,
                               (out_group, rows, chunks, out_w if narrow else CHUNK), "SSSS",
                               "co i chunk lane".split(), store_output, outer)
                    if pool is not None:  # in the tile's loops: its rows are pooled while in cache
                        pooling_rows = (out_channels, pooled_rows.shape[3])
                        grid_block(POOL_WINDOW_ROWS_BLOCK, (*pooling_rows, computed_w), "SSS", "o v x".split(),
                                   reduce_window_rows, outer)
                        grid_block(POOL_ROWS_BLOCK, (*pooling_rows, pool.out_w), "SSS", "o v x".split(),
                                   reduce_window_columns, outer)
                if pool is not None:
                    emit_pool_output(pool, out_h, pooled_rows, lambda x: (x,), output)
    return builder.get()

"""Schedule family for the kernels computed as Winograd along rows (`kernels/winograd.py`): the polyphase
stems and the stride-1 3x1 convs.

Row tiles (m = 4 output rows each) run in parallel. A tile first splits the input rows it needs by parity (at
stride 1: copies them) and transforms them (BT, vectorized along the phase rows, ~40 KB: L1/L2); then, per
tile of output channels and 16-column chunk, the (channels x transformed rows) accumulators stay in registers through the reduction over
(row phase, input channel, column tap), each transformed-row vector loaded once and multiplied by broadcast
weights, and AT + bias + ReLU turn them into the tile's 4 output rows.

Default channel tile: as many channels as keep the accumulators in all but 4 vector registers (AVX-512:
4 channels x 7 rows = 28 of 32). The column-tap loop stays rolled: unrolled, it was slower."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernels.contract import (INVERSE_BLOCK, OUTPUT_BLOCK, PHASE_BLOCK, POOL_ATTR, POOL_ROWS_BLOCK,
                                PRODUCT_BLOCK, TAPS_ATTR, TRANSFORM_BLOCK, WINOGRAD_ROWS, WINOGRAD_STEM, fusion_pattern)
from ..kernels.winograd import COLUMN_CHUNK, ROWS_PER_TILE

from .rule import ScheduleRule
from ._common import SAMPLE, Knob, has_block, largest_divisor_at_most, last_iteration_apart, machine_knobs, tile
from .fused_conv_chain import runs_in_parallel

if TYPE_CHECKING:
    from tvm import s_tir

    from ..target import TargetSpec

FREE_REGISTERS = 4  # the transformed-row vector and the loop's addresses; broadcasts fold into the FMAs
MAX_CHANNEL_TILE = 8


def _row_taps(sch: "s_tir.Schedule") -> int:
    return int(sch.mod["main"].attrs[TAPS_ATTR])


def _transformed_rows(sch: "s_tir.Schedule") -> int:
    return ROWS_PER_TILE + _row_taps(sch) - 1  # a = m + r - 1 of F(m, r)


def _vectors_per_row(spec: "TargetSpec | None") -> int:
    return max(1, COLUMN_CHUNK // machine_knobs(spec).lanes)


def _pooled(sch: "s_tir.Schedule") -> bool:
    return POOL_ATTR in sch.mod["main"].attrs


def schedule_pool(sch: "s_tir.Schedule", parallel: bool, lanes_per_vector: int | None) -> "s_tir.LoopRV":
    """A stem with its max pool (`winograd.emit_pool_over_row_tiles`), one image at a time: its row tiles (in
    parallel) each reduce their conv rows for the pool right after computing them, so they stay in L2 (~130 KB
    a tile) instead of going through the last-level cache or memory (3.2 MB an image); then the pool's output
    with its channels in parallel. Returns the row-tile loop, under which the conv's blocks are computed. The
    reduction's rows and column groups unrolled, its last loop vectorized `lanes_per_vector` wide (None: its
    reads are stride-2 columns: scalar, the last pooled column apart)."""
    pool = sch.get_sblock(OUTPUT_BLOCK)
    images, channels, *_ = sch.get_loops(pool)
    tile_rows = sch.get_sblock(POOL_ROWS_BLOCK)
    sch.compute_at(tile_rows, images, preserve_unit_loops=True)
    image, channels_of_tile, tiles, rows, *columns = sch.get_loops(tile_rows)[1:]
    sch.reorder(image, tiles, channels_of_tile)
    row_tiles = sch.fuse(image, tiles)
    for loop in (rows, *columns[:-1]):
        sch.unroll(loop)
    sch.compute_at(sch.get_sblock(INVERSE_BLOCK), row_tiles, preserve_unit_loops=True)
    if lanes_per_vector is not None:
        sch.vectorize(sch.split(columns[-1], [None, lanes_per_vector])[1])
    else:
        last_iteration_apart(sch, columns[-1])
    if parallel:
        sch.parallel(row_tiles)
        sch.parallel(channels)
    return row_tiles


def rows_fit_in_registers(sch: "s_tir.Schedule", spec: "TargetSpec | None") -> bool:
    """Whether at least two channels' accumulators for every transformed row fit the register file (AVX-512:
    2 x 7 zmm of 32). Else (AVX2: 7 rows x 2 ymm per channel of 16; NEON: 7 x 4 q of 32) each transformed row
    is a GEMM of its own, with a channel x column tile in registers and its result kept in L1 for AT."""
    per_channel = _transformed_rows(sch) * _vectors_per_row(spec)
    return (machine_knobs(spec).vector_registers - FREE_REGISTERS) // per_channel >= 2


def default_channel_tile(sch: "s_tir.Schedule", spec: "TargetSpec | None", rows_in_registers: bool) -> int:
    vectors_per_channel = _vectors_per_row(spec) * (_transformed_rows(sch) if rows_in_registers else 1)
    out_channels = int(sch.get(sch.get_loops(sch.get_sblock(OUTPUT_BLOCK))[1]).extent)
    budget = (machine_knobs(spec).vector_registers - FREE_REGISTERS) // vectors_per_channel
    return largest_divisor_at_most(out_channels, min(MAX_CHANNEL_TILE, budget))


def schedule_winograd_rows(sch: "s_tir.Schedule", spec: "TargetSpec") -> str:
    """The default schedule, from the target; returns a one-line description for --explain."""
    in_registers = rows_fit_in_registers(sch, spec)
    return _schedule(sch, default_channel_tile(sch, spec, in_registers), runs_in_parallel(sch, spec, None),
                     in_registers, machine_knobs(spec).lanes)


def _schedule(sch: "s_tir.Schedule", channel_tile: Knob, parallel: bool, rows_in_registers: bool,
              lanes_per_vector: int) -> str:
    """Schedule in place with this channel tile (an int, or SAMPLE in a design space); the transformed rows
    inside the register tile (`rows_in_registers`) or one after another around it."""
    pooled = _pooled(sch)
    if pooled:
        schedule_pool(sch, parallel, None)
    narrow = not pooled and has_block(sch, INVERSE_BLOCK)  # narrower than a chunk: AT, then its columns copied
    out = sch.get_sblock(INVERSE_BLOCK if narrow or pooled else OUTPUT_BLOCK)
    batch, channels, tiles, rows, chunks, lanes = sch.get_loops(out)[-6:]
    channel_tiles, channels = tile(sch, channels, channel_tile, MAX_CHANNEL_TILE)
    if lanes_per_vector < COLUMN_CHUNK:
        # AT one vector register wide and one channel at a time: the channel's transformed rows are loaded
        # once for its 4 output rows (7 of 16 ymm registers); rows outside channels spilled on AVX2
        lane_vectors, lanes = sch.split(lanes, [None, lanes_per_vector])
        sch.reorder(batch, tiles, channel_tiles, chunks, lane_vectors, channels, rows, lanes)
    else:
        # AT channel by channel: a channel's accumulators die after its output rows (rows outer kept all of
        # them live beside AT's constants, and LLVM spilled a few)
        sch.reorder(batch, tiles, channel_tiles, chunks, channels, rows, lanes)
    row_tiles = sch.fuse(batch, tiles)  # pooled: one tile, in the pool's parallel row-tile loop
    if parallel and not pooled:
        sch.parallel(row_tiles)
    sch.unroll(rows)
    if rows_in_registers:  # else AT reads the rows from L1: unrolled over channels too, LLVM hoists and spills
        sch.unroll(channels)
    sch.vectorize(lanes)

    product = sch.get_sblock(PRODUCT_BLOCK)
    sch.compute_at(product, chunks, preserve_unit_loops=True)
    _, p_channels, _, p_rows, _, p_lanes, row_phase, in_channels, taps = sch.get_loops(product)[-9:]
    if rows_in_registers:
        sch.reorder(row_phase, in_channels, taps, p_channels, p_rows, p_lanes)
        sch.unroll(p_rows)
    else:
        sch.reorder(p_rows, row_phase, in_channels, taps, p_channels, p_lanes)
    sch.unroll(p_channels)
    sch.vectorize(p_lanes)
    sch.decompose_reduction(product, row_phase)
    if narrow:  # each output row copied as soon as AT made it: LLVM forwards it in registers, no stack tile
        copy = sch.get_sblock(OUTPUT_BLOCK)
        sch.reverse_compute_at(copy, rows, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(copy)[-1])

    for name in (TRANSFORM_BLOCK, PHASE_BLOCK):  # consumers before their producers, as compute_at requires
        block = sch.get_sblock(name)
        sch.compute_at(block, row_tiles, preserve_unit_loops=True)
        loops = sch.get_loops(block)
        # one vector register wide: the unrolled rows of BT (inputs and outputs) then fit 16 ymm registers
        column_vectors, column_lanes = sch.split(loops[-1], [None, lanes_per_vector])
        if name == TRANSFORM_BLOCK:
            # all transformed rows of one column vector at a time, their BT coefficients constants: each input
            # vector is loaded once, and LLVM has no row loops to unroll and interleave into spills
            sch.reorder(column_vectors, loops[-2])
            sch.unroll(loops[-2])
        sch.vectorize(column_lanes)
    tile_text = "sampled" if channel_tile is SAMPLE else str(channel_tile)
    rows = "all transformed rows" if rows_in_registers else "one transformed row at a time"
    return (f"F({ROWS_PER_TILE},{_row_taps(sch)}) row tiles, {tile_text} channels x {COLUMN_CHUNK} columns x "
            f"{rows} in registers" + (", parallel" if parallel else "")
            + (", then its max pool, an image at a time" if pooled else ""))


def winograd_rows_design_space(sch: "s_tir.Schedule") -> list["s_tir.Schedule"]:
    """Row tiles on all cores; the channel tile sampled, in the loop order that fits the target's register
    file."""
    _schedule(sch, SAMPLE, parallel=True, rows_in_registers=rows_fit_in_registers(sch, None),
              lanes_per_vector=machine_knobs().lanes)
    return [sch]


RULE = ScheduleRule("winograd_rows", lambda func, _spec: fusion_pattern(func) in (WINOGRAD_STEM, WINOGRAD_ROWS),
                    schedule_winograd_rows, winograd_rows_design_space)

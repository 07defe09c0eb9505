"""Schedule family for a stem and its max pool computed as Winograd over 4x4 tiles (`kernels/winograd_tiles.py`).

One image at a time, its row tiles in parallel. A row tile splits its input rows by parity into column-tile-major
rows (scalar: each input row read in order, its 8 column phases written to 8 rows; as vectors it was a gather of
16 lanes) and transforms them along rows (~60 KB: L2); then, per chunk of 16 column tiles (per vector register of
it when the chunk is wider), it transforms them along columns (12 x a x a vectors, L1) and, per channel tile and
transformed row j, keeps the (channels x a points) accumulators in registers through the reduction over (row
phase, column phase, input channel); AT along columns turns them into 4 vectors per channel (L1), and AT along
rows, bias and ReLU write the tile's conv rows, which the pool reduces right after (`schedule_pool`); its output
rows are stored as vectors of the columns at one place in their tile, interleaved by LLVM.

Default channel tile: as many channels as keep a transformed row's accumulators in half the vector registers
(AVX-512: 2 channels x 7 points = 14 of 32). LLVM keeps the last row's accumulators live through AT along rows
(their buffer's address does not change between channel tiles, so it sinks their stores out of the loops), and
that AT needs the other half: with 4 channels (28 registers) it ran on 4 registers and spilled, and the kernel
was 1.2x slower."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernels.contract import (COLUMN_INVERSE_BLOCK, COLUMN_TRANSFORM_BLOCK, INVERSE_BLOCK, OUTPUT_BLOCK, PHASE_BLOCK,
                                POOL_ROWS_BLOCK, PRODUCT_BLOCK, TAPS_ATTR, TRANSFORM_BLOCK, WINOGRAD_STEM_TILES,
                                fusion_pattern)
from ..kernels.winograd import ROWS_PER_TILE
from ..kernels.winograd_tiles import TILE_CHUNK

from .rule import ScheduleRule
from ._common import SAMPLE, Knob, largest_divisor_at_most, machine_knobs, tile
from .fused_conv_chain import runs_in_parallel
from .winograd_rows import MAX_CHANNEL_TILE, schedule_pool

if TYPE_CHECKING:
    from tvm import s_tir

    from ..target import TargetSpec


def _points_per_row(sch: "s_tir.Schedule") -> int:
    return ROWS_PER_TILE + int(sch.mod["main"].attrs[TAPS_ATTR]) - 1  # a = m + r - 1


def default_channel_tile(sch: "s_tir.Schedule", spec: "TargetSpec | None") -> int:
    out_channels = int(sch.get(sch.get_loops(sch.get_sblock(INVERSE_BLOCK))[1]).extent)
    budget = machine_knobs(spec).vector_registers // 2 // _points_per_row(sch)
    return largest_divisor_at_most(out_channels, max(1, min(MAX_CHANNEL_TILE, budget)))


def schedule_winograd_tiles(sch: "s_tir.Schedule", spec: "TargetSpec") -> str:
    """The default schedule, from the target; returns a one-line description for --explain."""
    return _schedule(sch, default_channel_tile(sch, spec), runs_in_parallel(sch, spec, None),
                     machine_knobs(spec).lanes)


def _schedule(sch: "s_tir.Schedule", channel_tile: Knob, parallel: bool, lanes_per_vector: int) -> str:
    """Schedule in place with this channel tile (an int, or SAMPLE in a design space)."""
    schedule_pool(sch, parallel, lanes_per_vector)
    _store_pooled_columns_in_order(sch)
    out = sch.get_sblock(INVERSE_BLOCK)
    batch, channels, tiles, rows, columns, column_tiles = sch.get_loops(out)[-6:]
    chunks, lane_vectors, lanes = sch.split(column_tiles, [None, TILE_CHUNK // lanes_per_vector, lanes_per_vector])
    channel_tiles, channels = tile(sch, channels, channel_tile, MAX_CHANNEL_TILE)
    sch.reorder(batch, tiles, chunks, lane_vectors, channel_tiles, channels, columns, rows, lanes)
    row_tiles = sch.fuse(batch, tiles)  # one tile, in the pool's parallel row-tile loop
    sch.unroll(columns)
    sch.unroll(rows)
    sch.vectorize(lanes)

    # per transformed row: the products, then AT along columns while they are still in registers
    column_inverse = sch.get_sblock(COLUMN_INVERSE_BLOCK)
    sch.compute_at(column_inverse, channel_tiles, preserve_unit_loops=True)
    ci_channels, _, ci_rows, ci_columns, _, ci_lanes = sch.get_loops(column_inverse)[-6:]
    sch.reorder(ci_rows, ci_channels, ci_columns, ci_lanes)
    sch.unroll(ci_channels)
    sch.unroll(ci_columns)
    sch.vectorize(ci_lanes)
    product = sch.get_sblock(PRODUCT_BLOCK)
    sch.compute_at(product, ci_rows, preserve_unit_loops=True)
    p_channels, _, _, p_points, _, p_lanes, row_phase, column_phase, in_channels = sch.get_loops(product)[-9:]
    sch.reorder(row_phase, column_phase, in_channels, p_channels, p_points, p_lanes)
    sch.unroll(p_channels)
    sch.unroll(p_points)
    sch.vectorize(p_lanes)
    sch.decompose_reduction(product, row_phase)

    # BT along columns for this vector of column tiles (L1); along rows, and the parity split, for the row tile
    column_transform = sch.get_sblock(COLUMN_TRANSFORM_BLOCK)
    sch.compute_at(column_transform, lane_vectors, preserve_unit_loops=True)
    *_, ct_points, ct_lanes = sch.get_loops(column_transform)
    sch.unroll(ct_points)
    sch.vectorize(ct_lanes)
    row_transform = sch.get_sblock(TRANSFORM_BLOCK)
    sch.compute_at(row_transform, row_tiles, preserve_unit_loops=True)
    *_, rt_points, _, rt_columns = sch.get_loops(row_transform)
    column_vectors, column_lanes = sch.split(rt_columns, [None, lanes_per_vector])
    sch.reorder(column_vectors, rt_points)  # every transformed row of one vector at a time: inputs loaded once
    sch.unroll(rt_points)
    sch.vectorize(column_lanes)
    phase = sch.get_sblock(PHASE_BLOCK)
    sch.compute_at(phase, row_tiles, preserve_unit_loops=True)
    row_phase, column_phase, in_channels, rows, column_in_tile, column_tiles = sch.get_loops(phase)[-6:]
    sch.reorder(row_phase, in_channels, rows, column_tiles, column_in_tile, column_phase)  # input columns in order
    sch.unroll(column_in_tile)
    sch.unroll(column_phase)

    tile_text = "sampled" if channel_tile is SAMPLE else str(channel_tile)
    points = _points_per_row(sch)
    return (f"F(4x4,{points - 3}x{points - 3}) tiles, {tile_text} channels x {points} points x "
            f"{lanes_per_vector} column tiles in registers" + (", parallel" if parallel else "")
            + ", then its max pool, an image at a time")


def _store_pooled_columns_in_order(sch: "s_tir.Schedule") -> None:
    """The pool keeps a column tile's pooled columns apart (column per_tile * s + e at [e, s]); left to LLVM,
    the output loop gathered every lane. Per output row, the columns at each place e in their tile are one
    vector, stored to every per_tile-th column (LLVM interleaves the stores); the columns past the last whole
    tile apart."""
    pool = sch.get_sblock(OUTPUT_BLOCK)
    columns = sch.get_loops(pool)[-1]
    per_tile = int(sch.get(sch.get_sblock(POOL_ROWS_BLOCK)).writes[0].source.shape[-2])
    extent = int(sch.get(columns).extent)
    whole = extent - extent % per_tile
    if whole < extent:
        columns, _ = sch.loop_partition(columns, [whole, None])
    tiles, place = sch.split(columns, [None, per_tile])
    sch.reorder(place, tiles)
    sch.unroll(place)
    sch.vectorize(tiles)


def winograd_tiles_design_space(sch: "s_tir.Schedule") -> list["s_tir.Schedule"]:
    """Row tiles on all cores; the channel tile sampled."""
    _schedule(sch, SAMPLE, parallel=True, lanes_per_vector=machine_knobs().lanes)
    return [sch]


RULE = ScheduleRule("winograd_tiles", lambda func, _spec: fusion_pattern(func) == WINOGRAD_STEM_TILES,
                    schedule_winograd_tiles, winograd_tiles_design_space)

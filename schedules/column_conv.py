"""Schedule family for the column convs (`kernels/column_conv.py`): depthwise convs and few-channel stems.

Row tiles of all groups run in parallel. A tile zeroes and fills its input planes (a few KB: L1) in vectors,
then per chunk, one vector register wide at a time, its output channels x rows accumulators stay in registers
while the taps, unrolled, stream past: LLVM loads each input vector once for every output row and channel that
reads it (a 3x3 at stride 1: 6 input rows for 4 output rows). A depthwise tile taller than the accumulator
budget (`kernels.column_conv.tile_rows`) accumulates its rows in groups. The epilogue (bias, ReLU / ReLU6)
stores each row group as it is finished."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tvm import DataType

from ..cpu import NEON
from ..kernels.column_conv import ACCUMULATE_BLOCK, CHUNK, PAD_BLOCK, POOL_WINDOW_ROWS_BLOCK, several_channel_tile
from ..kernels.contract import (DEPTHWISE, FEW_CHANNEL_CONV, INVERSE_BLOCK, OUTPUT_BLOCK, PHASE_BLOCK, POOL_ATTR,
                                POOL_ROWS_BLOCK, fusion_pattern)
from .fused_conv_chain import runs_in_parallel, serial_and_parallel_spaces
from .rule import ScheduleRule
from ._common import MachineKnobs, largest_divisor_at_most, last_iteration_apart, machine_knobs

if TYPE_CHECKING:
    from tvm import s_tir

    from ..target import TargetSpec


def output_channel_tile(out_group: int, rows: int, knobs: MachineKnobs) -> int:
    """Output channels in the register tile: with `rows` rows of one vector each, as many as the tile's
    accumulators (`kernels.column_conv.several_channel_tile`) allow, dividing the group's channels."""
    return largest_divisor_at_most(out_group, several_channel_tile(knobs.vector_registers)[1] // rows)


def row_budget(knobs: MachineKnobs) -> int:
    """Rows, one vector each, that a tile accumulates at a time: the accumulator budget, but half of it on NEON, where
    LLVM's AArch64 backend keeps more of the taps' input vectors live beside them: MobileNetV2's 14x14 depthwise convs
    spilled 45-98 stack moves each with 14 rows, 7-22 with 7 (docs/performance.md)."""
    return knobs.accumulator_budget // 2 if knobs.cpu_class == NEON.cpu_class else knobs.accumulator_budget


def schedule_column_conv(sch: "s_tir.Schedule", spec: "TargetSpec | None",
                         sampled_parallel: bool | None = None) -> str:
    """Schedule a column conv in place; returns a one-line description for --explain. The tiles run in
    parallel when the kernel has the target's `parallel_min_macs`, or as a design space says."""
    parallel = runs_in_parallel(sch, spec, sampled_parallel)
    knobs = machine_knobs(spec)
    accumulate = sch.get_sblock(ACCUMULATE_BLOCK)
    batch, groups, tiles, channels, rows, chunks, lanes, in_channels, taps_y, taps_x = sch.get_loops(accumulate)
    out_group, row_count = (int(sch.get(loop).extent) for loop in (channels, rows))
    # a depthwise tile taller than its row budget (14 rows on AVX2) accumulates its rows in groups
    row_group = largest_divisor_at_most(row_count, row_budget(knobs))
    row_groups, rows = sch.split(rows, [None, row_group])
    channel_tile = output_channel_tile(out_group, row_group, knobs)
    channel_tiles, channels = sch.split(channels, [None, channel_tile])
    # a chunk one register wide at a time (AVX2, NEON): its accumulators, channel_tile x rows, fit the file
    lane_vectors, lanes = sch.split(lanes, [max(1, CHUNK // knobs.lanes), None])
    sch.reorder(channel_tiles, chunks, lane_vectors, row_groups, in_channels, taps_y, taps_x, channels, rows, lanes)
    row_tiles = sch.fuse(batch, groups, tiles)
    if parallel:
        sch.parallel(row_tiles)
    for loop in (taps_y, taps_x, channels, rows):  # the input channels too: more spills, slower
        sch.unroll(loop)
    sch.vectorize(lanes)
    sch.decompose_reduction(accumulate, in_channels)
    pooled = POOL_ATTR in sch.mod["main"].attrs
    # the store under the accumulation, not the other way round: a chunk of a narrower image (7 or 14
    # columns) still multiply-adds whole vectors, and only the store is as narrow as the image
    out = sch.get_sblock(INVERSE_BLOCK if pooled else OUTPUT_BLOCK)
    sch.reverse_compute_at(out, row_groups, preserve_unit_loops=True)
    out_channels, out_rows, _, out_lanes = sch.get_loops(out)[-4:]
    for loop in (out_channels, out_rows):
        sch.unroll(loop)
    sch.vectorize(out_lanes)
    pad_columns = sch.get_loops(sch.get_sblock(PAD_BLOCK))[-1]
    if int(sch.get(pad_columns).extent) < knobs.lanes:  # margins narrower than a vector: a store each
        sch.unroll(pad_columns)
    else:  # a whole plane (no margin), or a narrow image's columns past its last (7x7 on AVX2: 10-11 a row)
        sch.vectorize(sch.split(pad_columns, [None, knobs.lanes])[1])
    phase = sch.get_sblock(PHASE_BLOCK)
    if not _stores_vectors(sch, phase):  # the stride-2 copy of an even width shuffles whole vectors itself
        sch.vectorize(sch.get_loops(phase)[-1])
    if pooled:
        _schedule_pool(sch, knobs, channel_tiles, parallel)
    tile = f"{channel_tile} channels x " if out_group > 1 else ""
    groups = f" in groups of {row_group}" if row_group < row_count else ""
    return (f"{row_count}-row tiles{groups} x {tile}{CHUNK}-column chunks, the taps unrolled"
            + (", parallel" if parallel else ""))


def _stores_vectors(sch: "s_tir.Schedule", block) -> bool:
    """Whether a block's (first) store writes a whole vector, which the kernel built itself."""
    body = sch.get(block).body
    first = body.seq[0] if hasattr(body, "seq") else body
    return DataType(str(first.value.ty)).lanes > 1


def _schedule_pool(sch: "s_tir.Schedule", knobs: MachineKnobs, channel_tiles, parallel: bool) -> None:
    """A stem with its max pool: each tile of output channels, right after its conv rows (in L1), reduces its
    windows' rows in vectors along the rows, then their columns (stride-2 reads: left to LLVM, which vectorizes
    them with permutes), the last pooled column apart, which alone can pass the image's edge. Then the pooled
    rows, a few per row tile, are taken channel by channel."""
    for name in (POOL_WINDOW_ROWS_BLOCK, POOL_ROWS_BLOCK):
        sch.reverse_compute_at(sch.get_sblock(name), channel_tiles, preserve_unit_loops=True)
    *_, rows, columns = sch.get_loops(sch.get_sblock(POOL_WINDOW_ROWS_BLOCK))
    sch.unroll(rows)
    sch.vectorize(sch.split(columns, [None, knobs.lanes])[1])
    *_, rows, columns = sch.get_loops(sch.get_sblock(POOL_ROWS_BLOCK))
    sch.unroll(rows)
    last_iteration_apart(sch, columns)
    if parallel:
        sch.parallel(sch.fuse(*sch.get_loops(sch.get_sblock(OUTPUT_BLOCK))[:2]))


def column_conv_design_space(sch: "s_tir.Schedule") -> list["s_tir.Schedule"]:
    """Row tiles on one core or in parallel."""
    return serial_and_parallel_spaces(sch, schedule_column_conv)


RULE = ScheduleRule("column_conv", lambda func, _spec: fusion_pattern(func) in (DEPTHWISE, FEW_CHANNEL_CONV),
                    schedule_column_conv, column_conv_design_space)

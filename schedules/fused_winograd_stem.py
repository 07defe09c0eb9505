"""Schedule family for the polyphase Winograd stems (`kernels/winograd.py`).

Row tiles (m = 4 output rows each) run in parallel. A tile first splits the input rows it needs by parity and
transforms them (BT, vectorized along the phase rows, ~40 KB: L1/L2); then, per tile of output channels and
16-column chunk, the (channels x transformed rows) accumulators stay in registers through the reduction over
(row phase, input channel, column tap), each transformed-row vector loaded once and multiplied by broadcast
weights, and AT + bias + ReLU turn them into the tile's 4 output rows.

Default channel tile: as many channels as keep the accumulators in all but 4 vector registers (AVX-512:
4 channels x 7 rows = 28 of 32). The column-tap loop stays rolled: unrolled, it was slower."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernels.contract import (OUTPUT_BLOCK, PHASE_BLOCK, PRODUCT_BLOCK, TAPS_ATTR, TRANSFORM_BLOCK, WINOGRAD_STEM,
                                fusion_pattern)
from ..kernels.winograd import COLUMN_CHUNK, ROWS_PER_TILE

from .rule import ScheduleRule
from ._common import SAMPLE, Knob, largest_divisor_at_most, machine_knobs, tile
from .fused_conv_chain import runs_in_parallel

if TYPE_CHECKING:
    from tvm import s_tir

    from ..target import TargetSpec

FREE_REGISTERS = 4  # the transformed-row vector and the loop's addresses; broadcasts fold into the FMAs
MAX_CHANNEL_TILE = 8


def _row_taps(sch: "s_tir.Schedule") -> int:
    return int(sch.mod["main"].attrs[TAPS_ATTR])


def default_channel_tile(sch: "s_tir.Schedule", spec: "TargetSpec | None") -> int:
    machine = machine_knobs(spec)
    vectors_per_channel = (ROWS_PER_TILE + _row_taps(sch) - 1) * max(1, COLUMN_CHUNK // machine.lanes)
    out_channels = int(sch.get(sch.get_loops(sch.get_sblock(OUTPUT_BLOCK))[1]).extent)
    return largest_divisor_at_most(out_channels, (machine.vector_registers - FREE_REGISTERS) // vectors_per_channel)


def schedule_winograd_stem(sch: "s_tir.Schedule", spec: "TargetSpec") -> str:
    """The default schedule, from the target; returns a one-line description for --explain."""
    return _schedule(sch, default_channel_tile(sch, spec), runs_in_parallel(sch, spec, None))


def _schedule(sch: "s_tir.Schedule", channel_tile: Knob, parallel: bool) -> str:
    """Schedule in place with this channel tile (an int, or SAMPLE in a design space)."""
    out = sch.get_sblock(OUTPUT_BLOCK)
    batch, channels, tiles, rows, chunks, lanes = sch.get_loops(out)
    channel_tiles, channels = tile(sch, channels, channel_tile, MAX_CHANNEL_TILE)
    sch.reorder(batch, tiles, channel_tiles, chunks, rows, channels, lanes)
    row_tiles = sch.fuse(batch, tiles)
    if parallel:
        sch.parallel(row_tiles)
    sch.unroll(rows)
    sch.unroll(channels)
    sch.vectorize(lanes)

    product = sch.get_sblock(PRODUCT_BLOCK)
    sch.compute_at(product, chunks, preserve_unit_loops=True)
    _, p_channels, _, p_rows, _, p_lanes, row_phase, in_channels, taps = sch.get_loops(product)[-9:]
    sch.reorder(row_phase, in_channels, taps, p_channels, p_rows, p_lanes)
    sch.unroll(p_channels)
    sch.unroll(p_rows)
    sch.vectorize(p_lanes)
    sch.decompose_reduction(product, row_phase)

    for name in (TRANSFORM_BLOCK, PHASE_BLOCK):  # consumers before their producers, as compute_at requires
        block = sch.get_sblock(name)
        sch.compute_at(block, row_tiles, preserve_unit_loops=True)
        loops = sch.get_loops(block)
        if name == TRANSFORM_BLOCK:
            sch.unroll(loops[-2])  # the transformed row: its BT coefficients become constants
        sch.vectorize(sch.split(loops[-1], [None, COLUMN_CHUNK])[1])
    tile_text = "sampled" if channel_tile is SAMPLE else str(channel_tile)
    return (f"F({ROWS_PER_TILE},{_row_taps(sch)}) row tiles, {tile_text} channels x "
            f"{COLUMN_CHUNK} columns in registers" + (", parallel" if parallel else ""))


def winograd_stem_design_space(sch: "s_tir.Schedule") -> list["s_tir.Schedule"]:
    """Row tiles on all cores (the stem is the largest kernel of the network); the channel tile sampled."""
    _schedule(sch, SAMPLE, parallel=True)
    return [sch]


RULE = ScheduleRule(WINOGRAD_STEM, lambda func, _spec: fusion_pattern(func) == WINOGRAD_STEM, schedule_winograd_stem,
                    winograd_stem_design_space)

"""Schedule family for the depthwise kernels (`kernels/depthwise.py`).

Row tiles of all channels run in parallel. A tile zeroes and fills its input planes (a few KB: L1) in
vectors, then per chunk its ROWS x CHUNK accumulators stay in registers while the K x K taps, unrolled, stream
past: with the rows and taps unrolled, LLVM loads each input vector once for every output row that reads it (stride 1: 6 input
rows for 4 output rows of a 3x3). The epilogue (bias, ReLU / ReLU6) stores each row as it is finished."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernels.contract import DEPTHWISE, OUTPUT_BLOCK, PHASE_BLOCK, fusion_pattern
from ..kernels.depthwise import ACCUMULATE_BLOCK, PAD_BLOCK
from .fused_conv_chain import runs_in_parallel, serial_and_parallel_spaces
from .rule import ScheduleRule
from ._common import machine_knobs

if TYPE_CHECKING:
    from tvm import s_tir

    from ..target import TargetSpec


def schedule_depthwise(sch: "s_tir.Schedule", spec: "TargetSpec | None", sampled_parallel: bool | None = None) -> str:
    """Schedule a depthwise kernel in place; returns a one-line description for --explain. The tiles run in
    parallel when the kernel has the target's `parallel_min_macs`, or as a design space says."""
    parallel = runs_in_parallel(sch, spec, sampled_parallel)
    out = sch.get_sblock(OUTPUT_BLOCK)
    batch, channels, tiles, rows, chunks, lanes = sch.get_loops(out)
    sch.reorder(chunks, rows)
    row_tiles = sch.fuse(batch, channels, tiles)
    if parallel:
        sch.parallel(row_tiles)
    sch.unroll(rows)
    sch.vectorize(lanes)
    accumulate = sch.get_sblock(ACCUMULATE_BLOCK)
    sch.compute_at(accumulate, chunks, preserve_unit_loops=True)
    acc_rows, _, acc_lanes, taps_y, taps_x = sch.get_loops(accumulate)[-5:]
    sch.reorder(taps_y, taps_x, acc_rows, acc_lanes)
    for loop in (taps_y, taps_x, acc_rows):
        sch.unroll(loop)
    sch.vectorize(acc_lanes)
    sch.decompose_reduction(accumulate, taps_y)
    sch.vectorize(sch.split(sch.get_loops(sch.get_sblock(PAD_BLOCK))[-1], [None, machine_knobs(spec).lanes])[1])
    sch.vectorize(sch.get_loops(sch.get_sblock(PHASE_BLOCK))[-1])
    return "row tiles x 16-column chunks, the taps unrolled" + (", parallel" if parallel else "")


def depthwise_design_space(sch: "s_tir.Schedule") -> list["s_tir.Schedule"]:
    """Row tiles on one core or in parallel."""
    return serial_and_parallel_spaces(sch, schedule_depthwise)


RULE = ScheduleRule("depthwise_conv", lambda func, _spec: fusion_pattern(func) == DEPTHWISE, schedule_depthwise,
                    depthwise_design_space)

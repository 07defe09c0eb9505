"""Dense / matmul `C[i, j] += A[i, k] * B[k, j]` (the classifier): output columns vectorized, the
reduction streams past a row of vector accumulators, column blocks in parallel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .rule import ScheduleRule
from ._common import SAMPLE, Knob, inline_elementwise_chain, largest_divisor_at_most, machine_knobs, \
    pack_at_compile_time, pow2_lanes, root_blocks, tile

if TYPE_CHECKING:
    import tvm
    from tvm import tirx

    from ..target import TargetSpec


def find_dense(func: "tirx.PrimFunc"):
    """The matmul block (iterators S, S, R; B indexed [k, j]) of a dense PrimFunc, else None."""
    blocks = root_blocks(func)
    found = [b for b in blocks if [iv.iter_type for iv in b.iter_vars] == [0, 0, 2] and len(b.reads) == 2]
    if len(found) != 1 or len(blocks) > 4:
        return None
    block = found[0]
    return block if _rhs_index(block) is not None else None


def _rhs_index(block) -> int | None:
    """Which read of the matmul block is B[k, j]."""
    _, j, k = (iv.var for iv in block.iter_vars)
    return next((index for index, r in enumerate(block.reads)
                 if len(r.region) == 2 and r.region[0].min.same_as(k) and r.region[1].min.same_as(j)), None)


def schedule(sch: "tvm.s_tir.Schedule", lanes: int, vectors: Knob | None, rows: Knob | None = 1,
             parallel: bool = True) -> None:
    """(column blocks)[parallel] > row tiles > k > rows[unroll] > vectors[unroll] > lanes[vec]: rows x vectors
    accumulators, independent FMA chains. B is packed [j / lanes, k, lanes] at compile time: a column block then
    streams its own sequential lines of B, not a few lines of every row."""
    found = find_dense(sch.mod["main"])
    block = sch.get_sblock(found.name_hint)
    epilogue = inline_elementwise_chain(sch, block)
    pack_at_compile_time(sch, block, _rhs_index(found), lambda k, j: (j // lanes, k, j % lanes))
    i, j, k = sch.get_loops(block)
    j_outer, j_lanes = sch.split(j, [None, lanes])
    j_blocks, j_vectors = tile(sch, j_outer, vectors, 8)
    row_tiles, i_inner = tile(sch, i, rows, 8)
    sch.reorder(j_blocks, row_tiles, k, i_inner, j_vectors, j_lanes)
    if parallel:
        sch.parallel(j_blocks)
    if epilogue is not None:
        sch.reverse_compute_at(epilogue, row_tiles, preserve_unit_loops=True)
    sch.unroll(i_inner)
    sch.unroll(j_vectors)
    sch.vectorize(j_lanes)
    sch.decompose_reduction(block, k)


def apply(sch: "tvm.s_tir.Schedule", spec: "TargetSpec") -> str:
    block = find_dense(sch.mod["main"])
    batch, columns = (int(block.iter_vars[axis].dom.extent) for axis in (0, 1))
    machine = machine_knobs(spec)
    lanes = pow2_lanes(columns, machine.lanes)
    # A few vectors per task keep the reduction loop busy; the rest of the columns go to the cores.
    vectors = largest_divisor_at_most(columns // lanes, 8 if batch == 1 else 4)
    rows = largest_divisor_at_most(batch, machine.accumulator_budget // vectors)
    macs = 1
    for iv in block.iter_vars:
        macs *= int(iv.dom.extent)
    parallel = macs >= machine.parallel_min_macs
    schedule(sch, lanes, vectors, rows, parallel)
    return f"dense, {rows} rows x {vectors}x{lanes} columns per task" + ("" if parallel else ", one core")


def design_space(sch: "tvm.s_tir.Schedule") -> "tvm.s_tir.Schedule":
    columns = int(find_dense(sch.mod["main"]).iter_vars[1].dom.extent)
    schedule(sch, pow2_lanes(columns, machine_knobs().lanes), SAMPLE, SAMPLE)
    return sch


RULE = ScheduleRule("dense", lambda func, spec: find_dense(func) is not None, apply, design_space)

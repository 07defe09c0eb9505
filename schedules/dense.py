"""Dense / matmul `C[i, j] += A[i, k] * B[k, j]` (the classifier): output columns vectorized, the
reduction streams past a row of vector accumulators, column blocks in parallel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .rule import ScheduleRule
from ._common import SAMPLE, Knob, root_blocks, inline_elementwise_chain, machine_knobs, pow2_lanes, tile

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
    _, j, k = (iv.var for iv in block.iter_vars)
    rhs = [r for r in block.reads if len(r.region) == 2 and r.region[0].min.same_as(k) and r.region[1].min.same_as(j)]
    return block if rhs else None


def schedule(sch: "tvm.s_tir.Schedule", lanes: int, vectors: Knob | None, parallel: bool = True) -> None:
    block = sch.get_sblock(find_dense(sch.mod["main"]).name_hint)
    epilogue = inline_elementwise_chain(sch, block)
    i, j, k = sch.get_loops(block)
    j_outer, j_lanes = sch.split(j, [None, lanes])
    j_blocks, j_vectors = tile(sch, j_outer, vectors, 8)
    sch.reorder(j_blocks, i, k, j_vectors, j_lanes)
    if parallel:
        sch.parallel(j_blocks)
    if epilogue is not None:
        sch.reverse_compute_at(epilogue, i, preserve_unit_loops=True)
    sch.unroll(j_vectors)
    sch.vectorize(j_lanes)
    sch.decompose_reduction(block, k)


def apply(sch: "tvm.s_tir.Schedule", spec: "TargetSpec") -> str:
    block = find_dense(sch.mod["main"])
    columns = int(block.iter_vars[1].dom.extent)
    machine = machine_knobs(spec)
    lanes = pow2_lanes(columns, machine.lanes)
    # A few vectors per task keep the reduction loop busy; the rest of the columns go to the cores.
    vectors = next(v for v in (4, 2, 1) if (columns // lanes) % v == 0)
    macs = 1
    for iv in block.iter_vars:
        macs *= int(iv.dom.extent)
    parallel = macs >= machine.parallel_min_macs
    schedule(sch, lanes, vectors, parallel)
    return f"dense, {vectors}x{lanes} columns per task" + ("" if parallel else ", one core")


def design_space(sch: "tvm.s_tir.Schedule") -> "tvm.s_tir.Schedule":
    columns = int(find_dense(sch.mod["main"]).iter_vars[1].dom.extent)
    schedule(sch, pow2_lanes(columns, machine_knobs().lanes), SAMPLE)
    return sch


RULE = ScheduleRule("dense", lambda func, spec: find_dense(func) is not None, apply, design_space)

"""Fallback for pooling, reductions (mean) and elementwise PrimFuncs: the output block's leading spatial
loops run in parallel, its producers (padding, partial reductions) are computed inside that loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import ScheduleRule
from ._common import _blocks

if TYPE_CHECKING:
    import tvm
    from tvm import tirx

    from ..target import TargetSpec

# Below this many iterations (output elements x reduction window) a parallel launch costs more than it saves.
MIN_PARALLEL_WORK = 16384


def _work(block) -> int:
    count = 1
    for iv in block.iter_vars:
        count *= int(iv.dom.extent)
    return count


def applies(func: "tirx.PrimFunc", spec: "TargetSpec") -> bool:
    blocks = _blocks(func)
    return bool(blocks) and all(all(int(iv.dom.extent) >= 1 for iv in b.iter_vars) for b in blocks) \
        and max(_work(b) for b in blocks) >= MIN_PARALLEL_WORK


def _reductions(sch, blocks) -> int:
    return sum(any(iv.iter_type == 2 for iv in sch.get(b).iter_vars) for b in blocks)


def _parallel_each_block(sch, blocks) -> str:
    """Several reductions in a chain (e.g. fused conv chains): computing producers inside the consumer's
    parallel loop would recompute them per output channel, so run each block's own loops in parallel."""
    for block in blocks:
        stmt = sch.get(block)
        loops = sch.get_loops(block)
        spatial = [loop for loop, iv in zip(loops, stmt.iter_vars) if iv.iter_type == 0]
        if len(spatial) >= 2:
            sch.parallel(sch.fuse(*spatial[:-1]) if len(spatial) > 2 else spatial[0])
    return f"{len(blocks)} blocks, each parallel over its outer spatial loops (no recompute)"


def schedule(sch: "tvm.s_tir.Schedule", spatial_parallel: int | None = None) -> str:
    root_blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if _reductions(sch, root_blocks) > 1:
        return _parallel_each_block(sch, root_blocks)
    output = root_blocks[-1]
    stmt = sch.get(output)
    loops = sch.get_loops(output)
    spatial = [loop for loop, iv in zip(loops, stmt.iter_vars) if iv.iter_type == 0]
    # Parallelize all spatial loops but the innermost (which stays contiguous for the producers' copies).
    count = spatial_parallel if spatial_parallel is not None else max(1, len(spatial) - 1)
    parallel = sch.fuse(*spatial[:count]) if count > 1 else spatial[0]
    sch.parallel(parallel)
    for producer in reversed(root_blocks[:-1]):
        sch.compute_at(producer, parallel, preserve_unit_loops=True)
    return f"parallel over {count} spatial loop(s), {len(root_blocks) - 1} producer(s) computed inside"


def apply(sch: "tvm.s_tir.Schedule", spec: "TargetSpec") -> str:
    from tvm import s_tir

    # A dry run on a copy: this rule is the catch-all, so a PrimFunc it cannot handle stays unscheduled
    # rather than failing the build.
    trial = s_tir.Schedule(sch.mod["main"])
    try:
        schedule(trial)
    except Exception:  # noqa: BLE001 - any schedule error means "leave this one to the default lowering"
        return "left unscheduled (fallback could not tile it)"
    return schedule(sch)


def design_space(sch: "tvm.s_tir.Schedule") -> "tvm.s_tir.Schedule":
    schedule(sch)
    return sch


RULE = ScheduleRule("pooling-elementwise", applies, apply, design_space)

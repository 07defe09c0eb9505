"""Fallback for pooling, reductions (mean) and elementwise PrimFuncs: the output block's leading spatial
loops run in parallel, its producers (padding, partial reductions) are computed inside that loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .rule import ScheduleRule
from ._common import last_iteration_apart, root_blocks

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
    blocks = root_blocks(func)
    return bool(blocks) and all(all(int(iv.dom.extent) >= 1 for iv in b.iter_vars) for b in blocks) \
        and max(_work(b) for b in blocks) >= MIN_PARALLEL_WORK


def _parallel_each_block(sch, blocks) -> None:
    """Run each block's outer spatial loops in parallel (all but the innermost, which stays contiguous for
    LLVM's vectorizer); a pooling window instead runs its (batch x channel) planes in parallel, with its last
    output row apart (`_parallel_planes_border_rows_apart`). No compute_at: with several reductions in a chain (fused conv chains) it would
    recompute producers per output channel, and on max-pool it was 4x slower than this."""
    for block in blocks:
        stmt = sch.get(block)
        loops = sch.get_loops(block)
        spatial = [loop for loop, iv in zip(loops, stmt.iter_vars) if iv.iter_type == 0]
        if _is_pooling_window(sch, stmt, spatial):
            _parallel_planes_border_rows_apart(sch, spatial)
        elif len(spatial) >= 2:
            sch.parallel(sch.fuse(*spatial[:-1]) if len(spatial) > 2 else spatial[0])


def _is_pooling_window(sch, stmt, spatial) -> bool:
    """A window reduction over (batch, channel, rows, columns) with planes enough for every core (8) and
    rows enough to have a middle (3)."""
    if len(spatial) != 4 or not any(iv.iter_type == 2 for iv in stmt.iter_vars):
        return False
    planes = int(sch.get(spatial[0]).extent) * int(sch.get(spatial[1]).extent)
    return planes >= 8 and int(sch.get(spatial[2]).extent) >= 3


def _parallel_planes_border_rows_apart(sch, spatial: list) -> None:
    """(batch x channel) planes in parallel, and each plane's last output row as a loop of its own. That row's
    windows are the ones a ceil-mode pool reads past the input with; apart, the rows before it read no
    padding, and LLVM vectorizes them with strided loads instead of gathering under the padding condition.
    Splitting the first row off as well (for padding on top) makes LLVM gather again."""
    batch, channels, rows, _ = spatial
    sch.parallel(sch.fuse(batch, channels))
    last_iteration_apart(sch, rows)


def schedule(sch: "tvm.s_tir.Schedule") -> str:
    """Inline the spatial producers (padding, copies) into their consumers, then parallelize every block
    that remains (padding computed inside the parallel row loop instead was slower than no schedule)."""
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    reductions = sum(any(iv.iter_type == 2 for iv in sch.get(b).iter_vars) for b in blocks)
    inlined = 0
    # Conv chains (several reductions) keep their padding blocks: padding inlined into a conv was ~10x slower.
    for block in blocks[:-1] if reductions <= 1 else []:
        if all(iv.iter_type == 0 for iv in sch.get(block).iter_vars):
            try:
                sch.compute_inline(block)
                inlined += 1
            except Exception:  # noqa: BLE001 - e.g. a producer with several consumers: keep it
                pass
    remaining = sch.get_child_blocks(sch.get_sblock("root"))
    _parallel_each_block(sch, remaining)
    return f"{inlined} producer(s) inlined, {len(remaining)} block(s) parallel over outer spatial loops"


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

"""TensorIR schedule families for our lowered operators, one family per file.

Each family's `RULE` says when it applies (a predicate on the PrimFunc), gives its deterministic default
schedule (derived from the target) and a meta_schedule design space. `RULES` is the explicit, ordered list
(as TVM dlight's `ApplyDefaultSchedule(*rules)`): the first rule that applies wins. The fused-kernel rules
recognise their kernels by the attributes of `sqnxt_compiler.kernels.contract`; their predicates do not
overlap. The pooling/elementwise rule is the catch-all and comes last."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tvm
from tvm import tirx

from ..module_functions import without_uncalled
from . import column_conv, dataflow_choice, dense, fused_bottleneck, fused_low_rank, fused_pixel_chunks, pooling, \
    winograd_rows, winograd_tiles
from .rule import ScheduleRule

if TYPE_CHECKING:
    from ..pipeline import CompileContext
    from ..target import TargetSpec

RULES: tuple[ScheduleRule, ...] = (
    winograd_tiles.RULE,        # Winograd over 4x4 tiles: a polyphase stem with its max pool
    winograd_rows.RULE,         # Winograd along rows: the other polyphase stems, the 3x1 convs
    fused_pixel_chunks.RULE,    # 1x1 chains over pixel chunks
    fused_low_rank.RULE,        # 3x1/1x3 pairs, in row tiles
    fused_bottleneck.RULE,      # 1x1 chains that are not over chunks (stride 2, tiny images), in row tiles
    column_conv.RULE,           # depthwise and few-channel convs, output columns in vectors
    dataflow_choice.RULE,       # any other conv2d: output- or weight-stationary, chosen per layer
    dense.RULE,                 # matmul / dense
    pooling.RULE,               # pooling, reductions and elementwise: the catch-all
)

# What TVM 0.27 itself sets on a scheduled PrimFunc (MetaScheduleApplyDatabase for tuned kernels); later
# phases and this registry leave such functions alone.
SCHEDULED_ATTR = "tirx.is_scheduled"


def find_rule(func: tirx.PrimFunc, spec: "TargetSpec") -> ScheduleRule | None:
    return next((rule for rule in RULES if rule.applies(func, spec)), None)


def apply_default_schedules(mod: tvm.IRModule, ctx: "CompileContext") -> tvm.IRModule:
    """Schedule every PrimFunc that the tuning database did not already schedule."""
    from tvm import s_tir

    updates = {}
    for gvar, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc) or func.attrs and func.attrs.get(SCHEDULED_ATTR):
            continue
        rule = find_rule(func, ctx.target_spec)
        if rule is None:
            continue
        sch = s_tir.Schedule(func)
        description = rule.apply(sch, ctx.target_spec)
        updates[gvar] = sch.mod["main"].with_attr(SCHEDULED_ATTR, True)
        ctx.note("schedule", f"{gvar.name_hint}: {rule.name}" + (f" ({description})" if description else ""))
    for gvar, func in updates.items():
        mod[gvar] = func
    return pack_weights_at_compile_time(mod, ctx)


def pack_weights_at_compile_time(mod: tvm.IRModule, ctx: "CompileContext") -> tvm.IRModule:
    """Schedules pack constant weights in blocks marked `meta_schedule.layout_rewrite_preproc`: split those
    blocks into their own PrimFuncs and fold them on the constants, so packing costs nothing at run time."""
    from tvm import relax

    if "layout_rewrite_preproc" not in "".join(
            f.script() for f in mod.functions.values() if isinstance(f, tirx.PrimFunc)):
        return mod
    with ctx.target:
        mod = relax.transform.SplitLayoutRewritePreproc()(mod)
        mod = relax.transform.FoldConstant()(mod)
        mod = relax.transform.DeadCodeElimination()(mod)
        # folding leaves each packed kernel's result bound through an alias (lv15 = lv3), which hides its producer
        # from the passes after this one (a fire module's concat written in place)
        mod = relax.transform.CanonicalizeBindings()(mod)
    # kernels built with a global symbol (the pixel-chunk ones) outlive DCE, unpacked or packing: drop the uncalled
    return without_uncalled(mod, [gvar.name_hint for gvar, func in mod.functions.items()
                                  if isinstance(func, tirx.PrimFunc)])

"""TensorIR schedule families for our lowered operators, one family per file.

Each family registers a `ScheduleRule`: when it applies (a predicate on the PrimFunc), its deterministic
default schedule (derived from the target file), and optionally a meta_schedule design space. Rules are
tried in registration order, the first that applies wins (as in TVM's dlight `ApplyDefaultSchedule`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import tvm
from tvm import tirx

if TYPE_CHECKING:
    from ..pipeline import CompileContext
    from ..target import TargetSpec


@dataclass(frozen=True)
class ScheduleRule:
    """A schedule family. `apply` schedules in place and returns a one-line description for --explain."""

    name: str
    applies: Callable[[tirx.PrimFunc, "TargetSpec"], bool]
    apply: Callable[["tvm.s_tir.Schedule", "TargetSpec"], str]
    design_space: Callable | None = None


RULES: list[ScheduleRule] = []

# What TVM 0.27 itself sets on a scheduled PrimFunc (MetaScheduleApplyDatabase for tuned kernels); later
# phases and this registry leave such functions alone.
SCHEDULED_ATTR = "tirx.is_scheduled"


def register(rule: ScheduleRule) -> ScheduleRule:
    RULES.append(rule)
    return rule


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
        return relax.transform.DeadCodeElimination()(mod)


# Schedule families register themselves on import, most specific first.


def _register_builtin_rules() -> None:
    """Register the families, most specific first: fused kernels (schedules/fused_*.py, from the graph
    fusion work), then single convolutions (the WS/OS choice first, so it wins; the two families stay
    registered for tuning and for name lookup), dense, and the pooling/elementwise catch-all."""
    import importlib
    import pkgutil

    fused = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("fused_"))
    modules = [*fused, "dataflow_choice", "conv2d_output_stationary", "conv2d_weight_stationary", "dense",
               "pooling"]
    for name in modules:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except Exception as err:  # noqa: BLE001 - a family under construction must not break every build
            if name.startswith("fused_"):
                import warnings

                warnings.warn(f"schedule family {name} failed to import ({err}); its kernels stay unscheduled")
                continue
            raise
        rule = getattr(module, "RULE", None)
        if rule is not None and all(existing.name != rule.name for existing in RULES):
            register(rule)


def rule_by_name(name: str) -> ScheduleRule:
    return next(rule for rule in RULES if rule.name == name)


_register_builtin_rules()

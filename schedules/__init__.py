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
        if not isinstance(func, tirx.PrimFunc) or func.attrs and func.attrs.get("tir.is_scheduled"):
            continue
        rule = find_rule(func, ctx.target_spec)
        if rule is None:
            continue
        sch = s_tir.Schedule(func)
        description = rule.apply(sch, ctx.target_spec)
        updates[gvar] = sch.mod["main"].with_attr("tir.is_scheduled", True)
        ctx.note("schedule", f"{gvar.name_hint}: {rule.name}" + (f" ({description})" if description else ""))
    for gvar, func in updates.items():
        mod[gvar] = func
    return mod


# Schedule families register themselves on import, most specific first.

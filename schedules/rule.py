"""What a schedule family registers: when it applies, its default schedule and its design space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from tvm import tirx

if TYPE_CHECKING:
    import tvm

    from ..target import TargetSpec


@dataclass(frozen=True)
class ScheduleRule:
    """A schedule family. `applies` is the predicate on the PrimFunc; `apply` schedules in place and returns a
    one-line description for --explain; `design_space` gives meta_schedule its search space."""

    name: str
    applies: Callable[[tirx.PrimFunc, "TargetSpec"], bool]
    apply: Callable[["tvm.s_tir.Schedule", "TargetSpec"], str]
    design_space: Callable | None = None

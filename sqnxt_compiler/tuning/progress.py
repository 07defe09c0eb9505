"""Per-task tuning progress, fed by a meta_schedule measure callback after every measured batch."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from tvm_ffi import structural_hash
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

from ..records.database import FAILED_RUN_S
from .tasks import TuningTask


@dataclass
class TaskProgress:
    name: str
    occurrences: int
    macs: int
    trials: int = 0
    best_s: float | None = None
    space: str = ""

    @classmethod
    def from_task(cls, task: TuningTask, done: dict[int, int]) -> "TaskProgress":
        return cls(task.name, task.occurrences, task.macs, done.get(structural_hash(task.mod), 0))

    @property
    def best_gflops(self) -> float | None:
        return 2 * self.macs / self.best_s / 1e9 if self.best_s else None


def estimated_latency_ms(progress: list[TaskProgress]) -> float | None:
    """Sum over timed kernels of occurrences x best time; kernels without a valid measurement excluded."""
    timed = [p for p in progress if p.best_s is not None]
    return sum(p.occurrences * p.best_s for p in timed) * 1e3 if timed else None


@derived_object
class ProgressCallback(PyMeasureCallback):
    """Updates `progress` with each measured batch and reports an event dict to `on_progress`."""

    def __init__(self, progress: list[TaskProgress], budget: int,
                 on_progress: Callable[[dict], None] | None) -> None:
        super().__init__()
        self.progress = progress
        self.budget = budget
        self.on_progress = on_progress
        self.trials_done = 0
        self.failed = 0
        self.started = time.perf_counter()

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        entry = self.progress[task_id]
        for builder_result, runner_result in zip(builder_results, runner_results):
            self.trials_done += 1
            entry.trials += 1
            secs = [float(s) for s in (runner_result.run_secs or [])]
            if builder_result.error_msg or runner_result.error_msg or not secs or min(secs) >= FAILED_RUN_S:
                self.failed += 1
                continue
            mean = sum(secs) / len(secs)
            if entry.best_s is None or mean < entry.best_s:
                entry.best_s = mean
        if self.on_progress is not None:
            self.on_progress(self.event(entry))

    def event(self, entry: TaskProgress) -> dict:
        elapsed = time.perf_counter() - self.started
        rate = self.trials_done / elapsed if elapsed > 0 else 0.0
        return {
            "event": "progress",
            "task": entry.name,
            "task_trials": entry.trials,
            "task_best_ms": entry.best_s * 1e3 if entry.best_s else None,
            "trials_done": self.trials_done,
            "trials_budget": self.budget,
            "failed": self.failed,
            "estimated_latency_ms": estimated_latency_ms(self.progress),
            "tasks_timed": sum(p.best_s is not None for p in self.progress),
            "tasks_total": len(self.progress),
            "elapsed_s": elapsed,
            "eta_s": max(0.0, (self.budget - self.trials_done) / rate) if rate else None,
        }

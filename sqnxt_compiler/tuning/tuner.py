"""The tuning loop: meta_schedule's evolutionary search over our design spaces, resumable from TVM's database.

One `TuneContext` per kernel; the design space is the schedule family's own (`schedules/`) when it has
one, meta_schedule's generic post-order-apply space otherwise (or everywhere with `space="generic"`).
All tasks share one XGBoost cost model and one JSON database under the log folder; meta_schedule's
gradient task scheduler spends the budget where (occurrences x measured latency) is largest."""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import onnx

from ..errors import SqnxtError
from ..frontend import load_onnx, resolve_inputs
from ..outputs import atomic_write_text, check_free_space, check_output_dir
from ..remote import check_board
from ..target import TargetSpec
from .cost_model import TrackedXGBModel, warmup_samples
from ..records.database import FAILED_RECORD_S, FAILED_RUN_S, open_database, record_counts
from .measure import BoardGone, BoardWatch, RpcOptions, all_failed, board_check, make_builder, make_runner
from .progress import ProgressCallback, TaskProgress, estimated_latency_ms
from .tasks import TuningTask, extract_tuning_tasks

SpaceKind = Literal["ours", "generic"]
META_FILE = "meta.json"


@dataclass
class TuneReport:
    log_dir: Path
    target: str
    space: SpaceKind
    tasks: list[TaskProgress]
    trials_requested: int
    trials_before: int  # measured records already in the log (a resumed run)
    trials_run: int
    wall_s: float
    default_trials: int = 0  # of trials_run: each new kernel's default schedule, measured before the search
    failed_trials: int = 0  # sampled schedules that did not build or run (normal for some tilings)
    model_predictions: int = 0  # candidates ranked by the trained XGBoost model
    random_predictions: int = 0  # candidates scored at random during warm-up
    notes: list[str] = field(default_factory=list)

    @property
    def estimated_latency_ms(self) -> float | None:
        """Sum over tuned kernels of occurrences x best measured time (kernels without a record excluded)."""
        return estimated_latency_ms(self.tasks)

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(log_dir=str(self.log_dir), estimated_latency_ms=self.estimated_latency_ms)
        return data


def _under_target(design_space: Callable, spec: TargetSpec, sch: "tvm.s_tir.Schedule"):
    """Run a design space with the target in scope: meta_schedule generates spaces outside any target, and
    the spaces must see the CPU facts (vector width, registers, caches) the default schedules see."""
    with spec.scope():
        return design_space(sch)


def _design_space(task: TuningTask, spec: TargetSpec, space: SpaceKind):
    """Our schedule family's space for this kernel, or meta_schedule's generic one."""
    from tvm.s_tir import meta_schedule as ms

    from ..schedules import find_rule

    rule = find_rule(task.mod["main"], spec) if space == "ours" else None
    if rule is not None and rule.design_space is not None:
        # Our spaces apply their own loop order, tiling, vectorize/parallel/unroll annotations; the llvm
        # postprocessors and mutators make them verifiable and let evolution mutate the sampled tiles.
        return ms.space_generator.ScheduleFn(functools.partial(_under_target, rule.design_space, spec),
                                             sch_rules=[], postprocs="llvm", mutator_probs="llvm"), rule.name
    return ms.space_generator.PostOrderApply(sch_rules="llvm", postprocs="llvm", mutator_probs="llvm"), "generic"


def _search_strategy(trials: int):
    from tvm.s_tir import meta_schedule as ms

    # Small budgets get a small population: evolution over 512 candidates per round for a handful of
    # trials spends more time in feature extraction than in measurement.
    population = 512 if trials >= 1000 else 128
    return ms.search_strategy.EvolutionarySearch(population_size=population,
                                                 init_min_unmeasured=min(50, population // 2))


def trials_per_round(trials: int, num_tasks: int) -> int:
    """Candidates measured per task per round: small enough that every task gets a few rounds."""
    return max(4, min(64, trials // max(1, 2 * num_tasks)))


def write_meta(log_dir: Path, model_name: str, spec: TargetSpec, trials: int, space: str,
               input_shapes: dict[str, list[int]] | None = None, cold_caches: bool = False) -> None:
    """What produced this log (read by people and by `sqnxt-compile --tuning-log`'s warnings); `input_shapes`
    joins the list of the shapes the log holds records for (a log may hold the model at several batch sizes)."""
    meta_path = log_dir / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.update(model=model_name, target=spec.name,
                tvm_target=spec.tvm_target().export() if spec.kind == "cpu" else None,
                space=space, trials_requested=max(trials, int(meta.get("trials_requested", 0))),
                caches="cold" if cold_caches else "hot")
    if input_shapes is not None and input_shapes not in meta.setdefault("input_shapes", []):
        meta["input_shapes"].append(input_shapes)
    atomic_write_text(meta_path, json.dumps(meta, indent=2, default=str) + "\n", "the tuning log's meta.json")


def tune(model: onnx.ModelProto | str | os.PathLike, spec: TargetSpec, log_dir: str | os.PathLike,
         trials: int, *, rpc: RpcOptions | None = None, input_shapes: dict[str, tuple[int, ...]] | None = None,
         space: SpaceKind = "ours", seed: int = 0, model_name: str | None = None, top_tasks: int | None = None,
         on_progress: Callable[[dict], None] | None = None, cold_caches: bool = False) -> TuneReport:
    """Tune `model` for `spec` until the log holds `trials` measurements of its kernels (a re-run resumes).
    `top_tasks` limits tuning to that many kernels, the heaviest by occurrences x MACs; `cold_caches` times
    each candidate with its weights and output flushed from the caches (`measure.make_runner`)."""
    from tvm.s_tir import meta_schedule as ms

    if trials <= 0:
        raise SqnxtError(f"--trials must be positive (got {trials})")
    log_path = check_output_dir(log_dir, "tuning log")
    if rpc is not None:   # seconds, before anything is built: a typo in the address or the key, a board that is off
        check_board(rpc.tracker_host, rpc.tracker_port, rpc.key)
    proto = load_onnx(model)
    tasks = [task for task in extract_tuning_tasks(proto, spec, input_shapes) if task.macs > 0][:top_tasks]
    if not tasks:
        raise SqnxtError("the model has no convolution, dense or pooling kernels to tune")
    check_free_space(log_path, _log_bytes_needed(tasks, trials), "the tuning log")
    database = open_database(log_path)
    write_meta(log_path, model_name or (proto.graph.name or "model"), spec, trials, space,
               {i.name: list(i.shape) for i in resolve_inputs(proto, input_shapes)}, cold_caches)

    done = record_counts(database)
    progress = [TaskProgress.from_task(task, done) for task in tasks]
    trials_before = sum(p.trials for p in progress)
    for entry in progress:
        entry.best_s = _best_recorded(database, entry, tasks)
    remaining = trials - trials_before
    started = time.perf_counter()
    report = TuneReport(log_path, spec.name, space, progress, trials, trials_before, 0, 0.0)
    if remaining <= 0:
        report.notes.append(f"the log already holds {trials_before} trials (>= {trials}); nothing to do")
        return report

    target = spec.tvm_target()
    contexts, space_names = [], []
    for index, task in enumerate(tasks):
        generator, space_name = _design_space(task, spec, space)
        space_names.append(space_name)
        contexts.append(ms.TuneContext(mod=task.mod, target=target, space_generator=generator,
                                       search_strategy=_search_strategy(trials), task_name=task.name,
                                       rand_state=seed + index, num_threads=_cores(spec)))
    for entry, space_name in zip(progress, space_names):
        entry.space = space_name

    builder, runner = make_builder(spec, remote=rpc is not None), make_runner(spec, rpc, cold_caches)
    watch = BoardWatch(board_check(rpc) if rpc is not None else lambda: None)
    # The generic space is tuned from scratch (the design-space comparison must not start from our defaults).
    try:
        baseline, baseline_failed = (
            _measure_default_schedules(tasks, progress, spec, builder, runner, database, report.notes, watch.check)
            if space == "ours" else (0, 0))
    except BoardGone as err:
        raise _board_lost(str(err), report, started) from None
    remaining -= baseline
    report.trials_run = report.default_trials = baseline
    report.failed_trials = baseline_failed
    if remaining <= 0:
        report.wall_s = time.perf_counter() - started
        return report
    cost_model = TrackedXGBModel(num_warmup_samples=warmup_samples(trials), num_tuning_cores=_cores(spec))
    callback = ProgressCallback(progress, remaining, on_progress)
    try:
        _tune_tasks(ms, contexts, tasks, log_path, remaining, builder, runner, database, cost_model,
                    [watch, ms.measure_callback.AddToDatabase(), ms.measure_callback.RemoveBuildArtifact(),
                     ms.measure_callback.UpdateCostModel(), callback])
    except Exception:   # an error raised in a measure callback comes back from TVM as another type
        if watch.gone is None:
            raise
        report.trials_run += callback.trials_done
        report.failed_trials += callback.failed
        raise _board_lost(watch.gone, report, started) from None
    report.trials_run += callback.trials_done
    report.wall_s = time.perf_counter() - started
    report.model_predictions = cost_model.model_predictions
    report.random_predictions = cost_model.random_predictions
    report.failed_trials += callback.failed
    return report


def _tune_tasks(ms, contexts, tasks, log_path, remaining, builder, runner, database, cost_model, callbacks) -> None:
    ms.tune_tasks(
        tasks=contexts,
        task_weights=[float(task.occurrences) for task in tasks],
        work_dir=str(log_path),
        max_trials_global=remaining,
        num_trials_per_iter=trials_per_round(remaining, len(tasks)),
        builder=builder,
        runner=runner,
        database=database,
        cost_model=cost_model,
        measure_callbacks=callbacks,
    )


class BoardLost(SqnxtError):
    """Tuning stopped because its boards left the tracker; `report` is what was measured and logged until then."""

    def __init__(self, message: str, report: TuneReport) -> None:
        super().__init__(message)
        self.report = report


def _board_lost(reason: str, report: TuneReport, started: float) -> BoardLost:
    """The one line a run that lost its board ends with: why, what was measured, where it is, how to go on."""
    report.wall_s = time.perf_counter() - started
    estimate = report.estimated_latency_ms
    measured = (f"{report.trials_run} trials measured in {report.wall_s:.0f} s ({report.failed_trials} failed), "
                f"{report.trials_before + report.trials_run} in the log"
                + (f", estimated latency {estimate:.3f} ms" if estimate is not None else ""))
    return BoardLost(f"tuning stopped: {reason[0].lower()}{reason[1:]} [{measured}; the log {report.log_dir} is "
                     "valid: once a board is registered again, re-run the same command to continue]", report)


RECORD_BYTES = 3000   # a tuning record line (trace + run times): ~2.6 KB in the shipped 1.0-SqNxt-23 logs


def _log_bytes_needed(tasks: list[TuningTask], trials: int) -> int:
    """About how much the log grows by: one workload line per task (its module as JSON) and one line per trial."""
    import tvm

    return sum(len(tvm.ir.save_json(task.mod)) for task in tasks) + trials * RECORD_BYTES


def _measure_default_schedules(tasks: list[TuningTask], progress: list[TaskProgress], spec: TargetSpec,
                               builder, runner, database, notes: list[str],
                               board_check: Callable[[], None] = lambda: None) -> tuple[int, int]:
    """Measure each new task's deterministic default schedule and log it as an ordinary record.

    The search then competes against the default, so applying the log can never pick a kernel slower
    than what an untuned build would have run (up to measurement noise), even after a tiny budget.
    Returns the number of measurements made (they count towards the trial budget) and of failures. When every
    run failed, `board_check` may raise (BoardGone) before any of them is logged."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms
    from tvm.tirx import FloatImm

    from ..schedules import find_rule

    target = spec.tvm_target()
    pending = []
    for task, entry in zip(tasks, progress):
        rule = find_rule(task.mod["main"], spec)
        if entry.trials or rule is None:
            continue
        sch = s_tir.Schedule(task.mod)
        rule.apply(sch, spec)
        pending.append((task, entry, sch))
    if not pending:
        return 0, 0
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, _, sch in pending])
    inputs, measurable, failures = [], [], 0
    for (task, entry, sch), result in zip(pending, built):
        if result.error_msg is None:
            # The arguments of the kernel as built: layout-rewritten weights arrive pre-transformed.
            args = ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
            inputs.append(ms.runner.RunnerInput(result.artifact_path, "cpu", args))
            measurable.append((task, entry, sch, args))
        else:
            notes.append(f"{task.name}: the default schedule failed to build ({_last_line(result.error_msg)})")
    runs = [future.result() for future in runner.run(inputs)]
    if all_failed(runs):
        board_check()
    for (task, entry, sch, args), run in zip(measurable, runs):
        entry.trials += 1
        failed = run.error_msg is not None or not run.run_secs
        if failed:
            failures += 1
            notes.append(f"{task.name}: the default schedule failed to run ({_last_line(run.error_msg or '')})")
        # A failure is logged too (as meta_schedule logs its own) so the log counts every trial.
        run_secs = [FloatImm("float32", FAILED_RECORD_S)] if failed else run.run_secs
        workload = database.commit_workload(task.mod)
        database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, run_secs, target, args))
        if not failed:
            entry.best_s = sum(float(s) for s in run.run_secs) / len(run.run_secs)
    return len(measurable), failures


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


def _best_recorded(database, entry: TaskProgress, tasks: list[TuningTask]) -> float | None:
    """The best time the log already holds for this task (so a resumed run reports it from the start)."""
    task = next(t for t in tasks if t.name == entry.name)
    if not database.has_workload(task.mod):
        return None
    records = database.get_top_k(database.commit_workload(task.mod), 1)
    if not records or not records[0].run_secs:
        return None
    best = sum(float(s) for s in records[0].run_secs) / len(records[0].run_secs)
    return best if best < FAILED_RUN_S else None


def _cores(spec: TargetSpec) -> int:
    return int(spec.cpu.get("cores") or os.cpu_count() or 1)

"""Tuning an accelerator target: per-layer dataflow and tiles, measured in simulated cycles, guided by XGBoost.

Tasks are the model's distinct accelerator layers (conv/dense shapes; quantization does not change them),
weighted by occurrences. A task's space is every tiling the planner accepts (`tiling_space`, both
dataflows, plus the two default tilings); nothing illegal is ever measured. A measurement is `estimate`:
compile + cycle schedule, no data, deterministic - so one measurement per candidate is exact.

Search: each new task first measures its default WS and OS tilings (so the tuned network is never slower
than the default or than the better single-dataflow build). Then rounds: random candidates until the
warm-up size, split among tasks by occurrences x best cycles so far; after that one XGBoost model over all
tasks (features: layer shape, knobs and the planner's closed-form cycle breakdown) predicts log cycles and
each round measures the unmeasured candidates with the largest predicted network saving, occurrences x
(best so far - predicted), plus a few random ones (split by occurrences x best cycles) for exploration.
Records go to the log as they
are measured (accel_log.py), so a re-run resumes and a full budget is a no-op.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from ..accel.machine.config import AccelConfig
from ..accel.machine.layer import LayerSpec
from ..accel.machine.network import layers_of_onnx
from ..accel.machine.planner import analytic_breakdown, default_tiling
from ..accel.machine.simulator import estimate
from ..accel.machine.tiling import DATAFLOWS, Tiling, ceil_div, overflows, tiling_space
from ..errors import SqnxtError
from ..frontend import load_onnx, resolve_inputs, with_input_shape
from ..target import TargetSpec
from ..records.accel_log import AccelLog, AccelRecord, best_records, config_key, layer_key
from .cost_model import warmup_samples

EXPLORE = 0.2        # chance that a trial after warm-up measures a random candidate instead of the model's pick
BOOST_ROUNDS = 60    # small data (hundreds of rows): more trees only memorise it


@dataclass
class AccelTask:
    """One distinct layer shape and its legal tilings (the defaults first)."""

    key: str
    layer: LayerSpec                 # named after its first occurrence
    occurrences: int
    candidates: list[Tiling] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return self.layer.macs


@dataclass
class AccelTaskProgress:
    name: str
    key: str
    describe: str
    occurrences: int
    macs: int
    candidates: int
    trials: int = 0
    best_cycles: int | None = None
    best_tiling: dict | None = None
    ws_cycles: int | None = None     # the default WS / OS tiling's cycles (what an untuned build runs)
    os_cycles: int | None = None


@dataclass
class AccelTuneReport:
    log_dir: Path
    target: str
    tasks: list[AccelTaskProgress]
    trials_requested: int
    trials_before: int
    trials_run: int
    wall_s: float
    clock_mhz: float
    default_trials: int = 0          # of trials_run: default WS/OS tilings measured before the search
    model_trials: int = 0            # of trials_run: candidates the trained XGBoost model picked
    random_trials: int = 0           # of trials_run: warm-up and exploration picks
    model_predictions: int = 0       # candidates the trained model scored
    notes: list[str] = field(default_factory=list)

    def total(self, which: str) -> int:
        """Network cycles (layers run back to back) with every layer's "ws" / "os" default or its "tuned" best
        (layers without a record run their WS default, as `sqnxt-compile --tuning-log` does)."""
        pick = {"ws": lambda t: t.ws_cycles, "os": lambda t: t.os_cycles,
                "tuned": lambda t: t.best_cycles if t.best_cycles is not None else t.ws_cycles}[which]
        return sum(t.occurrences * pick(t) for t in self.tasks)

    def totals(self) -> dict[str, int]:
        ws, os_ = self.total("ws"), self.total("os")
        return {"ws_only": ws, "os_only": os_, "best_single_dataflow": min(ws, os_), "tuned": self.total("tuned")}

    @property
    def estimated_latency_ms(self) -> float:
        return self.total("tuned") / (self.clock_mhz * 1e3)

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(log_dir=str(self.log_dir), totals=self.totals(), estimated_latency_ms=self.estimated_latency_ms)
        return data


def extract_accel_tasks(model: onnx.ModelProto | str | os.PathLike, config: AccelConfig,
                        input_shapes: dict[str, tuple[int, ...]] | None = None) -> list[AccelTask]:
    """Distinct conv/dense layer shapes of the model (the layers `sqnxt-compile` puts on the accelerator),
    heaviest (occurrences x MACs) first, each with its candidate tilings."""
    proto = load_onnx(model)   # the float model: quantization keeps every conv/dense shape
    inputs = resolve_inputs(proto, input_shapes)
    if len(inputs) != 1:
        raise SqnxtError(f"accelerator targets take models with one input; '{proto.graph.name}' has {len(inputs)}")
    tasks: dict[str, AccelTask] = {}
    for layer in layers_of_onnx(with_input_shape(proto, inputs[0])):
        key = layer_key(layer)
        if key in tasks:
            tasks[key].occurrences += 1
        else:
            tasks[key] = AccelTask(key, layer, 1)
    for task in tasks.values():
        task.candidates = candidate_tilings(task.layer, config)
    return sorted(tasks.values(), key=lambda t: (-t.occurrences * t.macs, t.key))


def candidate_tilings(layer: LayerSpec, config: AccelConfig) -> list[Tiling]:
    """The default WS and OS tilings, then the rest of the planner's space; only tilings that fit."""
    defaults = [default_tiling(layer, config, dataflow) for dataflow in DATAFLOWS]   # checked by the planner
    return list(dict.fromkeys(defaults + [t for t in tiling_space(layer, config) if not overflows(layer, config, t)]))


def features(layer: LayerSpec, config: AccelConfig, tiling: Tiling) -> list[float]:
    """Numbers the cost model learns from: layer shape, knobs, tile counts and the closed-form cycle breakdown
    (the model mostly learns where the closed form is off, e.g. pipeline stalls)."""
    log = lambda x: math.log2(max(1, x))  # noqa: E731
    t = tiling
    tiles = [ceil_div(layer.out_h, t.tile_oh), ceil_div(layer.out_w, t.tile_ow),
             ceil_div(layer.cout_per_group, t.tile_cout), ceil_div(layer.cin_per_group, t.tile_cin)]
    analytic = analytic_breakdown(layer, config, tiling)
    return [log(v) for v in (layer.n, layer.cin_per_group, layer.cout_per_group, layer.out_h, layer.out_w,
                             layer.kh * layer.kw, layer.stride[0], layer.groups, t.tile_oh, t.tile_ow,
                             t.tile_cout, t.tile_cin, *tiles, math.prod(tiles), config.rows, config.cols)] + [
        float(t.dataflow == "ws"), float(layer.residual)] + [
        log(analytic[part]) for part in ("gemm", "compute", "load", "store", "total")]


class _CostModel:
    """XGBoost regression of log2(cycles) on `features`, over every task's measurements."""

    def __init__(self, seed: int):
        self.seed, self.booster = seed, None
        self.rows: list[list[float]] = []
        self.targets: list[float] = []
        self.predictions = 0

    def add(self, row: list[float], cycles: int) -> None:
        self.rows.append(row)
        self.targets.append(math.log2(cycles))

    def train(self) -> None:
        import xgboost as xgb

        data = xgb.DMatrix(np.asarray(self.rows), label=np.asarray(self.targets))
        params = {"max_depth": 6, "eta": 0.2, "subsample": 1.0, "objective": "reg:squarederror",
                  "nthread": 1, "seed": self.seed, "verbosity": 0}
        self.booster = xgb.train(params, data, num_boost_round=BOOST_ROUNDS)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        self.predictions += len(rows)
        return self.booster.predict(xgb.DMatrix(rows))


def allocate(weights: list[float], budget: int) -> list[int]:
    """`budget` trials split in proportion to `weights` (largest remainders get the rest)."""
    total = sum(weights)
    if total <= 0 or budget <= 0:
        return [0] * len(weights)
    shares = [budget * w / total for w in weights]
    counts = [int(s) for s in shares]
    for i in sorted(range(len(shares)), key=lambda i: (counts[i] - shares[i], i))[:budget - sum(counts)]:
        counts[i] += 1
    return counts


def round_size(remaining: int) -> int:
    """Trials per round (the model retrains between rounds): a tenth of the budget, within [8, 64]."""
    return max(8, min(64, remaining // 10))


class _Search:
    """State of one tuning run: tasks, what is measured, the cost model, the log and the report."""

    def __init__(self, tasks: list[AccelTask], config: AccelConfig, log: AccelLog, report: AccelTuneReport,
                 budget: int, warmup: int, seed: int, on_progress: Callable[[dict], None] | None):
        self.tasks, self.config, self.log, self.report = tasks, config, log, report
        self.budget, self.warmup, self.on_progress = budget, warmup, on_progress
        self.rng = np.random.default_rng(seed)
        self.model = _CostModel(seed)
        self.progress = {p.key: p for p in report.tasks}
        self.measured: dict[str, set[Tiling]] = {t.key: set() for t in tasks}
        self._features: dict[str, np.ndarray] = {}
        self.started = time.perf_counter()
        by_key = {t.key: t for t in tasks}
        for record in log.for_config(config):   # a resumed run: learn from and skip what the log holds
            task = by_key.get(record.layer)
            if task is not None and record.tiling not in self.measured[task.key]:
                self.measured[task.key].add(record.tiling)
                self.model.add(features(task.layer, config, record.tiling), record.cycles)

    @property
    def done(self) -> int:
        return self.report.trials_run

    def measure(self, task: AccelTask, tiling: Tiling, how: str) -> None:
        result = estimate(task.layer, self.config, tiling)
        record = AccelRecord(task.key, self.config.name, config_key(self.config), tiling, result.cycles,
                             result.total_energy_pj, task.layer.describe())
        self.log.append(record)
        self.measured[task.key].add(tiling)
        self.model.add(features(task.layer, self.config, tiling), result.cycles)
        entry = self.progress[task.key]
        entry.trials += 1
        _update_best(entry, record)
        self.report.trials_run += 1
        setattr(self.report, f"{how}_trials", getattr(self.report, f"{how}_trials") + 1)
        if self.on_progress is not None:
            self.on_progress(self.event(entry))

    def defaults(self) -> None:
        """Each task's default WS tiling, then (all tasks) the default OS one, heaviest tasks first."""
        for index in range(len(DATAFLOWS)):
            for task in self.tasks:
                if self.done < self.budget and task.candidates[index] not in self.measured[task.key]:
                    self.measure(task, task.candidates[index], "default")

    def unmeasured(self, task: AccelTask) -> list[int]:
        return [i for i, t in enumerate(task.candidates) if t not in self.measured[task.key]]

    def search(self) -> None:
        while self.done < self.budget:
            open_tasks = [t for t in self.tasks if self.unmeasured(t)]
            if not open_tasks:
                self.report.notes.append("every legal tiling of every layer is measured: the search is exhaustive")
                return
            size = min(round_size(self.budget), self.budget - self.done)
            trained = len(self.model.rows) >= self.warmup
            if trained:
                self.model.train()
            explore = int((self.rng.random(size) < EXPLORE).sum()) if trained else size
            picks = self.model_picks(open_tasks, size - explore) if trained else []
            chosen = {(task.key, index) for task, index in picks}
            weights = [t.occurrences * (self.progress[t.key].best_cycles or 1) for t in open_tasks]
            for task, count in zip(open_tasks, allocate(weights, explore)):
                left = [i for i in self.unmeasured(task) if (task.key, i) not in chosen]
                picks += [(task, int(i)) for i in self.rng.choice(left, min(count, len(left)), replace=False)]
            for task, index in picks:
                self.measure(task, task.candidates[index], "model" if (task.key, index) in chosen else "random")

    def model_picks(self, tasks: list[AccelTask], count: int) -> list[tuple[AccelTask, int]]:
        """The `count` unmeasured (task, candidate) pairs the model expects to save the most network cycles:
        occurrences x (the task's best so far - predicted cycles). A saving on a layer that occurs six times
        counts six times; a layer whose best is already near its optimum stops drawing trials."""
        if count <= 0:
            return []
        scored = []
        for order, task in enumerate(tasks):
            left = self.unmeasured(task)
            predicted = np.exp2(self.model.predict(self.task_features(task)[left]))
            best = self.progress[task.key].best_cycles
            saving = task.occurrences * ((best if best is not None else np.inf) - predicted)
            scored += [(-gain, order, index) for gain, index in zip(saving.tolist(), left)]
        scored.sort()
        return [(tasks[order], index) for _, order, index in scored[:count]]

    def task_features(self, task: AccelTask) -> np.ndarray:
        if task.key not in self._features:
            self._features[task.key] = np.asarray([features(task.layer, self.config, t) for t in task.candidates])
        return self._features[task.key]

    def event(self, entry: AccelTaskProgress) -> dict:
        """A progress event; the keys the CPU tuner's events have, with times as simulated milliseconds."""
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        ms = lambda cycles: None if cycles is None else cycles / (self.config.clock_mhz * 1e3)  # noqa: E731
        # like the CPU tuner's estimate: the layers measured so far (the totals come with the report)
        timed = sum(p.occurrences * p.best_cycles for p in self.report.tasks if p.best_cycles is not None)
        return {
            "event": "progress", "task": entry.name, "task_trials": entry.trials,
            "task_best_cycles": entry.best_cycles, "task_best_ms": ms(entry.best_cycles),
            "trials_done": self.done, "trials_budget": self.budget, "failed": 0,
            "total_cycles": timed, "estimated_latency_ms": ms(timed),
            "tasks_timed": sum(p.best_cycles is not None for p in self.report.tasks),
            "tasks_total": len(self.report.tasks), "elapsed_s": elapsed,
            "eta_s": max(0.0, (self.budget - self.done) / rate) if rate else None,
        }


def _update_best(entry: AccelTaskProgress, record: AccelRecord) -> None:
    if entry.best_cycles is None or record.cycles < entry.best_cycles:
        entry.best_cycles, entry.best_tiling = record.cycles, record.tiling.as_dict()


def _baseline(task: AccelTask, config: AccelConfig, logged: dict[Tiling, int], index: int) -> int:
    """Cycles of the task's default tiling `index` (0: WS, 1: OS): from the log, else simulated for the
    report only (a budget smaller than two trials per layer leaves some unmeasured)."""
    tiling = task.candidates[index]
    return logged[tiling] if tiling in logged else estimate(task.layer, config, tiling).cycles


def tune_accel(model: onnx.ModelProto | str | os.PathLike, spec: TargetSpec, log_dir: str | os.PathLike,
               trials: int, *, input_shapes: dict[str, tuple[int, ...]] | None = None, seed: int = 0,
               model_name: str | None = None, top_tasks: int | None = None,
               on_progress: Callable[[dict], None] | None = None) -> AccelTuneReport:
    """Tune the tilings of `model`'s layers on accelerator `spec` until the log holds `trials` measurements
    of them (a re-run resumes; a full log is a no-op). `top_tasks` limits tuning to the heaviest layers."""
    from .tuner import write_meta

    if trials <= 0:
        raise SqnxtError(f"--trials must be positive (got {trials})")
    config = AccelConfig.load(spec.path)
    proto = load_onnx(model)
    tasks = extract_accel_tasks(proto, config, input_shapes)[:top_tasks]
    if not tasks:
        raise SqnxtError("the model has no convolution or dense layers for the accelerator")
    log = AccelLog(log_dir)
    write_meta(log.dir, model_name or (proto.graph.name or "model"), spec, trials, "accel")
    mine = log.for_config(config)
    keys = {t.key for t in tasks}
    logged = _logged(mine, keys)
    progress = [AccelTaskProgress(t.layer.name, t.key, t.layer.describe(), t.occurrences, t.macs, len(t.candidates),
                                  trials=len(logged[t.key])) for t in tasks]
    best = best_records([r for r in mine if r.layer in keys])
    for entry in progress:
        if entry.key in best:
            _update_best(entry, best[entry.key])
    trials_before = sum(p.trials for p in progress)
    report = AccelTuneReport(log.dir, spec.name, progress, trials, trials_before, 0, 0.0, config.clock_mhz)
    if len(mine) < len(log.records):
        report.notes.append(f"{len(log.records) - len(mine)} records in {log.dir} are for another accelerator; "
                            "they are kept but not used")
    started = time.perf_counter()
    if trials_before >= trials:
        report.notes.append(f"the log already holds {trials_before} trials (>= {trials}); nothing to do")
    else:
        search = _Search(tasks, config, log, report, trials - trials_before, warmup_samples(trials), seed, on_progress)
        search.defaults()
        search.search()
        report.model_predictions = search.model.predictions
        logged = _logged(log.for_config(config), keys)
    for task, entry in zip(tasks, progress):
        entry.ws_cycles = _baseline(task, config, logged[task.key], 0)
        entry.os_cycles = _baseline(task, config, logged[task.key], 1)
    report.wall_s = time.perf_counter() - started
    return report


def _logged(records: list[AccelRecord], keys: set[str]) -> dict[str, dict[Tiling, int]]:
    """Cycles of every logged tiling, per layer key of `keys`."""
    logged: dict[str, dict[Tiling, int]] = {key: {} for key in keys}
    for record in records:
        if record.layer in keys:
            logged[record.layer][record.tiling] = record.cycles
    return logged


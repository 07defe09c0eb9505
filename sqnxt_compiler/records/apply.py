"""Apply a tuning log at compile time: only records measured for this target's CPU class, never misapplied.

meta_schedule's database lookup matches kernels by structure alone and ignores the target a record was
measured on, so an ARM record would happily schedule an x86 build. We copy the records of this target's
triple and CPU class (`cpu.VectorISA`: the vector width and register file the kernels were shaped for) into
an in-memory database and apply only those; everything else is reported. Kernels of another input shape or
model simply find no record (structural match).

A log folder may hold one log per class (`tuning_logs/<model>/<class>/`): the build takes its own class's."""

from __future__ import annotations

import functools
import warnings
from collections import Counter
from pathlib import Path

import tvm
from tvm_ffi import get_global_func, structural_hash

from ..cpu import vector_isa
from ..target import TargetSpec
from .database import FAILED_RUN_S, WORKLOADS, TuningLogWarning, open_database

# The baseline CPUs of the x86 classes (the x86-avx2 / x86-avx512 targets): their records are meant for
# every CPU of the class, so applying them to another CPU of that class is no cause for a warning.
CLASS_BASELINE_CPUS = {"", "x86-64-v3", "x86-64-v4"}


def target_identity(target: tvm.target.Target) -> tuple[str, str, str, tuple[str, ...]]:
    """(kind, triple, CPU, feature flags) of a target."""
    attrs = target.export()
    return (str(attrs.get("kind")), str(attrs.get("mtriple") or ""), str(attrs.get("mcpu") or ""),
            tuple(sorted(str(a) for a in (attrs.get("mattr") or []))))


@functools.lru_cache(maxsize=None)
def _class_of(identity: tuple[str, str, str, tuple[str, ...]]) -> str:
    kind, triple, mcpu, mattr = identity
    attrs = {"kind": kind, **({"mtriple": triple} if triple else {}), **({"mcpu": mcpu} if mcpu else {}),
             **({"mattr": list(mattr)} if mattr else {})}
    return vector_isa(tvm.target.Target(attrs)).cpu_class


def describe_target(identity: tuple) -> str:
    kind, triple, mcpu, mattr = identity
    return " ".join(part for part in (kind, triple or "host", mcpu, ",".join(mattr)) if part)


def log_for_class(log_dir: str | Path, spec: TargetSpec) -> tuple[Path | None, list[str]]:
    """The log to read for `spec`: `log_dir` itself when it is a log, else its subfolder named after the
    build's CPU class; None (with the reason) when it has logs for other classes only."""
    path = Path(log_dir)
    if (path / WORKLOADS).is_file():
        return path, []
    mine = path / spec.cpu_class
    if (mine / WORKLOADS).is_file():
        return mine, []
    others = sorted(p.name for p in path.iterdir() if (p / WORKLOADS).is_file()) if path.is_dir() else []
    if not others:
        return path, []  # not a log at all: open_database says so
    return None, [f"{path} has tuning logs for {', '.join(others)} but none for this build's CPU class "
                  f"'{spec.cpu_class}'; building with default schedules (tune one: sqnxt-tune ... --target "
                  f"{spec.name} --log {mine})"]


def records_for_target(log_dir, spec: TargetSpec):
    """An in-memory database with the successful records of this target's triple and CPU class; plus one
    message per skipped group. Records of the same class measured on another CPU model are applied with a
    warning (a schedule is a loop transformation, valid on the whole class, but its tiles were chosen for
    the other CPU's caches), unless they were tuned for the class itself (`CLASS_BASELINE_CPUS`)."""
    from tvm.s_tir import meta_schedule as ms

    source = open_database(log_dir, create=False)
    target = spec.tvm_target()
    here = target_identity(target)
    selected = ms.database.MemoryDatabase()
    other_classes: Counter = Counter()
    other_cpus: Counter = Counter()
    kept = 0
    for record in source.get_all_tuning_records():
        identity = target_identity(record.target)
        if identity[:2] != here[:2] or _class_of(identity) != spec.cpu_class:
            other_classes[(_class_of(identity), describe_target(identity))] += 1
            continue
        if identity[2] != here[2] and identity[2] not in CLASS_BASELINE_CPUS:
            other_cpus[identity[2]] += 1
        if not record.run_secs or min(float(s) for s in record.run_secs) >= FAILED_RUN_S:
            continue
        workload = selected.commit_workload(record.workload.mod)
        selected.commit_tuning_record(ms.database.TuningRecord(
            record.trace, workload, record.run_secs, record.target, record.args_info))
        kept += 1
    messages = [f"{count} records in {log_dir} were measured for CPU class '{cpu_class}' ({described}), not for "
                f"this build's '{spec.cpu_class}' ({describe_target(here)}); they are ignored"
                for (cpu_class, described), count in other_classes.items()]
    messages += [f"{count} records in {log_dir} were measured on CPU '{cpu}', this build targets "
                 f"'{here[2]}' (same class '{spec.cpu_class}'); applied, but re-tune for best speed on this CPU"
                 for cpu, count in other_cpus.items()]
    return selected, kept, messages


def apply_tuning_log(mod: tvm.IRModule, log_dir, spec: TargetSpec) -> tuple[tvm.IRModule, list[str]]:
    """Schedule the kernels the log has records for; return the module and lines for --explain."""
    from tvm import relax, tirx

    target = spec.tvm_target()
    log_dir, skipped = log_for_class(log_dir, spec)
    if log_dir is None:
        for message in skipped:
            warnings.warn(message, TuningLogWarning, stacklevel=2)
        return mod, skipped
    database, kept, messages = records_for_target(log_dir, spec)
    for message in messages:
        warnings.warn(message, TuningLogWarning, stacklevel=2)
    if kept == 0:
        return mod, messages + [f"no usable records for this target in {log_dir}"]
    normalize = get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    kernels = [func for func in mod.functions.values() if isinstance(func, tirx.PrimFunc)]
    normalized = [normalize(f) for f in kernels]
    matched = {structural_hash(n) for n in normalized if database.has_workload(n)}
    in_log = {structural_hash(record.workload.mod): record.workload.mod
              for record in database.get_all_tuning_records()}
    batch = _build_batch(mod)
    with target, database:
        mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    notes = messages + [f"{len(matched)} distinct kernels scheduled from tuning records in {log_dir}"]
    # a log may hold the model at several batch sizes: those kernels are no sign of a stale log
    other_batches = Counter(size for key, workload in in_log.items() if key not in matched
                            and (size := _kernel_batch(workload)) not in (None, batch))
    stale = len(in_log.keys() - matched) - sum(other_batches.values())
    if other_batches:
        sizes = ", ".join(f"batch {b}: {n}" for b, n in sorted(other_batches.items()))
        notes.append(f"{sum(other_batches.values())} tuned kernels in {log_dir} are for other batch sizes "
                     f"({sizes}); this build is batch {batch}")
    if stale:
        message = (f"{stale} tuned kernels in {log_dir} do not occur in this model (tuned for another model or "
                   "input shape); they are ignored")
        warnings.warn(message, TuningLogWarning, stacklevel=2)
        notes.append(message)
    return mod, notes


def _kernel_batch(workload: tvm.IRModule) -> int | None:
    """The leading dimension of a kernel's first argument (its data: NCHW or [batch, features])."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    args = ArgInfo.from_prim_func(workload["main"])
    shape = list(args[0].shape) if args else []
    return int(shape[0]) if shape else None


def _build_batch(mod: tvm.IRModule) -> int | None:
    """The batch size of a graph module: the leading dimension of its first input."""
    params = mod["main"].params
    shape = getattr(params[0].ty, "shape", None) if params else None
    return int(shape[0]) if shape is not None and len(shape) and isinstance(shape[0], tvm.tirx.IntImm) else None

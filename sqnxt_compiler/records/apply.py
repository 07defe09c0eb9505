"""Apply a tuning log at compile time: only records measured for this very target, never misapplied.

meta_schedule's database lookup matches kernels by structure alone and ignores the target a record was
measured on, so an ARM record would happily schedule an x86 build. We copy the records of this target
(same LLVM kind, triple, CPU and features) into an in-memory database and apply only those; everything
else is reported. Kernels of another input shape or model simply find no record (structural match)."""

from __future__ import annotations

import warnings
from collections import Counter

import tvm
from tvm_ffi import get_global_func, structural_hash

from ..target import TargetSpec
from .database import FAILED_RUN_S, TuningLogWarning, open_database


def target_identity(target: tvm.target.Target, with_cpu: bool = True) -> tuple:
    """What must agree for a measured schedule to be valid: kind, triple, CPU and its feature flags."""
    attrs = target.export()
    return (attrs.get("kind"), str(attrs.get("mtriple") or ""), str(attrs.get("mcpu") or "") if with_cpu else "",
            tuple(sorted(str(a) for a in (attrs.get("mattr") or []))))


def describe_target(identity: tuple) -> str:
    kind, triple, mcpu, mattr = identity
    return " ".join(part for part in (kind, triple or "host", mcpu, ",".join(mattr)) if part)


def records_for_target(log_dir, spec: TargetSpec):
    """An in-memory database with this target's successful records; plus one message per skipped group.

    A target file that pins its CPU (arm: cortex-a72, graviton2: neoverse-n1) only takes records measured
    for that CPU. The `host` file says mcpu = "auto": its records stay valid on another x86 CPU model (a
    schedule is a loop transformation, not an instruction choice) and are applied with a warning, since
    their tile sizes were chosen for the other CPU's caches and vector units."""
    from tvm.s_tir import meta_schedule as ms

    source = open_database(log_dir, create=False)
    target = spec.tvm_target()
    pinned_cpu = spec.raw.get("llvm", {}).get("mcpu") != "auto"
    wanted = target_identity(target, with_cpu=pinned_cpu)
    selected = ms.database.MemoryDatabase()
    other_targets: Counter = Counter()
    other_cpus: Counter = Counter()
    kept = 0
    for record in source.get_all_tuning_records():
        identity = target_identity(record.target, with_cpu=pinned_cpu)
        if identity != wanted:
            other_targets[target_identity(record.target)] += 1
            continue
        if target_identity(record.target) != target_identity(target):
            other_cpus[str(record.target.export().get("mcpu"))] += 1
        if not record.run_secs or min(float(s) for s in record.run_secs) >= FAILED_RUN_S:
            continue
        workload = selected.commit_workload(record.workload.mod)
        selected.commit_tuning_record(ms.database.TuningRecord(
            record.trace, workload, record.run_secs, record.target, record.args_info))
        kept += 1
    here = describe_target(target_identity(target))
    messages = [f"{count} records in {log_dir} were measured for '{describe_target(identity)}', not for "
                f"'{here}'; they are ignored" for identity, count in other_targets.items()]
    messages += [f"{count} records in {log_dir} were measured on CPU '{cpu}', this build targets "
                 f"'{target.export().get('mcpu')}'; applied, but re-tune for best speed on this CPU"
                 for cpu, count in other_cpus.items()]
    return selected, kept, messages


def apply_tuning_log(mod: tvm.IRModule, log_dir, spec: TargetSpec) -> tuple[tvm.IRModule, list[str]]:
    """Schedule the kernels the log has records for; return the module and lines for --explain."""
    from tvm import relax, tirx

    target = spec.tvm_target()
    database, kept, messages = records_for_target(log_dir, spec)
    for message in messages:
        warnings.warn(message, TuningLogWarning, stacklevel=2)
    if kept == 0:
        return mod, messages + [f"no usable records for this target in {log_dir}"]
    normalize = get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    kernels = [func for func in mod.functions.values() if isinstance(func, tirx.PrimFunc)]
    matched = {structural_hash(normalize(f)) for f in kernels if database.has_workload(normalize(f))}
    in_log = {structural_hash(record.workload.mod) for record in database.get_all_tuning_records()}
    with target, database:
        mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    notes = messages + [f"{len(matched)} distinct kernels scheduled from tuning records in {log_dir}"]
    if len(in_log - matched):
        message = (f"{len(in_log - matched)} tuned kernels in {log_dir} do not occur in this model (tuned for "
                   "another model or input shape); they are ignored")
        warnings.warn(message, TuningLogWarning, stacklevel=2)
        notes.append(message)
    return mod, notes

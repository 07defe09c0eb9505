"""Tuning tasks: the distinct kernels of the compiled model, weighted by occurrences and MACs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx
import tvm
from tvm import tirx

from ..frontend import import_to_relax, load_onnx, resolve_inputs
from ..kernels.contract import CHANNEL_CONCAT_ATTR, MACS_ATTR
from ..pipeline import UNSCHEDULED, CompileContext, run_pipeline
from ..target import TargetSpec


@dataclass
class TuningTask:
    name: str
    mod: tvm.IRModule  # one PrimFunc named "main", as meta_schedule wants it
    occurrences: int
    macs: int  # multiply-accumulates of one call (0 for kernels without a reduction)

    @property
    def total_macs(self) -> int:
        return self.occurrences * self.macs


def reduction_macs(mod: tvm.IRModule) -> int:
    """Useful MACs of a kernel: what a fused kernel declares (its blocks compute a padded, vector-friendly
    width), else the iteration-space size of its reduction blocks (conv, matmul, pooling)."""
    from tvm import s_tir

    declared = (mod["main"].attrs or {}).get(MACS_ATTR)
    if declared is not None:
        return int(declared)

    sch = s_tir.Schedule(mod)
    total, pending = 0, list(sch.get_child_blocks(sch.get_sblock("root")))
    while pending:
        block_rv = pending.pop()
        pending.extend(sch.get_child_blocks(block_rv))
        iter_vars = sch.get(block_rv).iter_vars
        if any(iv.iter_type == tirx.IterVar.CommReduce for iv in iter_vars):
            total += math.prod(int(iv.dom.extent) for iv in iter_vars)
    return total


def _unscheduled_module(model: onnx.ModelProto, spec: TargetSpec,
                        input_shapes: dict[str, tuple[int, ...]] | None) -> tvm.IRModule:
    """Our pipeline up to (not including) scheduling: the kernels exactly as compile() will see them."""
    inputs = resolve_inputs(model, input_shapes)
    return run_pipeline(import_to_relax(model, inputs), CompileContext(spec), UNSCHEDULED)


def extract_tuning_tasks(model: onnx.ModelProto | str, spec: TargetSpec,
                         input_shapes: dict[str, tuple[int, ...]] | None = None) -> list[TuningTask]:
    """Deduplicated kernels, heaviest (occurrences x MACs) first; not the channel concats, which the kernels
    before them write in place (`passes/concat_in_place.py`)."""
    from tvm.s_tir import meta_schedule as ms

    proto = load_onnx(model)
    mod = _unscheduled_module(proto, spec, input_shapes)
    extracted = ms.relax_integration.extract_tasks(mod, spec.tvm_target())
    tasks = [TuningTask(t.task_name, t.dispatched[0], int(t.weight), reduction_macs(t.dispatched[0]))
             for t in extracted if CHANNEL_CONCAT_ATTR not in (t.dispatched[0]["main"].attrs or {})]
    tasks.sort(key=lambda t: (-t.total_macs, t.name))
    return tasks

"""Kernels' scratch buffers on the stack instead of TVM's workspace pool.

TVM lowers every buffer a kernel allocates that is larger than 1 KB into a `TVMBackendAllocWorkspace` /
`TVMBackendFreeWorkspace` pair where the buffer lives. Most of ours live in a parallel loop's body (a column
conv's input planes, a row tile's Winograd transform), so the pair runs once per row tile: 336 times a core in
MobileNetV2's 112->56 depthwise conv. The `disable_lower_builtin` annotation keeps such a buffer an LLVM stack
allocation, made once in the function's frame (docs/performance.md, "Scratch buffers on the stack").

A kernel's stack buffers take at most the target's `stack_buffer_bytes` (`[cpu]`, default
DEFAULT_STACK_BUFFER_BYTES) in sum, the first ones first; 0 keeps them all in the workspace. TVM's pool threads
and the caller's thread run the kernels, so the budget must fit their stacks (glibc: 8 MB; musl: 128 KB)."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import tvm
import tvm_ffi
from tvm import tirx
from tvm.tirx import compilation_pipeline

if TYPE_CHECKING:
    from .target import TargetSpec

DEFAULT_STACK_BUFFER_BYTES = 64 * 1024
BUDGET_KEY = "stack_buffer_bytes"  # in a target's [cpu]
KEEP_ON_STACK = "disable_lower_builtin"  # TVM's annotation (tirx/transform.h kDisableLowerTVMBuiltin)
PIPELINE_PREFIX = "sqnxt_stack_buffers_"


def stack_buffer_bytes(spec: "TargetSpec") -> int:
    return int(spec.cpu.get(BUDGET_KEY, DEFAULT_STACK_BUFFER_BYTES))


def with_stack_buffer_bytes(spec: "TargetSpec", budget: int) -> "TargetSpec":
    """`spec` with a kernel's stack buffers limited to `budget` bytes (0: all in TVM's workspace)."""
    return dataclasses.replace(spec, cpu={**spec.cpu, BUDGET_KEY: budget})


def _constant_bytes(buffer: tirx.Buffer) -> int | None:
    if not all(isinstance(extent, tirx.IntImm) for extent in buffer.shape):
        return None
    return math.prod(int(extent) for extent in buffer.shape) * tvm.DataType(buffer.dtype).bits // 8


def stack_buffers(budget: int) -> tvm.transform.Pass:
    """Annotate each kernel's constant-size buffers (of the scopes TVM lowers to the workspace) to stay on the
    stack, in order, while their sum fits `budget` bytes."""

    @tirx.transform.prim_func_pass(opt_level=0, name="StackBuffers")
    def annotate_function(func: tirx.PrimFunc, _mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tirx.PrimFunc:
        left = [budget]

        def keep_on_stack(allocation: tirx.AllocBuffer) -> tirx.AllocBuffer:
            size = _constant_bytes(allocation.buffer)
            if allocation.buffer.scope() not in ("global", "local") or size is None or size > left[0]:
                return allocation
            left[0] -= size
            annotations = {**(allocation.annotations or {}), KEEP_ON_STACK: tirx.IntImm("bool", 1)}
            return tirx.AllocBuffer(allocation.buffer, annotations)

        return func.with_body(tvm_ffi.structural_map(func.body, [(tirx.AllocBuffer, keep_on_stack)]))

    return annotate_function


def tir_pipeline(spec: "TargetSpec") -> str:
    """The name of TVM's default TIR pipeline followed by `stack_buffers` with the target's budget (registered
    with TVM on first use), for `tvm.compile(..., tir_pipeline=...)`."""
    budget = stack_buffer_bytes(spec)
    name = f"{PIPELINE_PREFIX}{budget}"
    if name not in compilation_pipeline.PIPELINE_MAP:
        def factory(**kwargs) -> tuple:
            lowering, finalize_host, finalize_device = compilation_pipeline.get_tir_pipeline("default", **kwargs)
            return tvm.transform.Sequential([lowering, stack_buffers(budget)]), finalize_host, finalize_device

        compilation_pipeline.register_tir_pipeline(name, factory)
    return name

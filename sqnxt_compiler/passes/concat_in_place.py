"""Have the kernels whose outputs a channel concat joins (`passes/channel_concat.py`) write their channels of the
concat's output directly, and drop the concat's copy: a fire module's expands then write the tensor the next
squeeze reads.

Runs after scheduling and after `align_channel_planes`, on the kernels as they will run: each producer keeps its
body, schedule and tuning records. Its output parameter becomes the whole concatenated tensor, over which it
declares the buffers it always wrote, moved by its first channel and with the concat's batch stride. The first
producer's call allocates the tensor; each next one writes into it in place (`call_tir_inplace`)."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import tvm
import tvm_ffi
from tvm import relax, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from ..kernels.contract import CHANNEL_CONCAT_ATTR
from ..module_functions import without_uncalled
from ._conv_graph import ConvGraph
from ._kernels import declared_in_root, kernel_callee, rewrite_functions


def _strides(buffer: tirx.Buffer) -> list[int]:
    if buffer.strides:
        return [int(s) for s in buffer.strides]
    strides = [1]
    for extent in reversed([int(d) for d in buffer.shape[1:]]):
        strides.insert(0, strides[0] * extent)
    return strides


def _moved(buffer: tirx.Buffer, first_channel: int, channels: int) -> tirx.Buffer | None:
    """`buffer` ([batch, its channels, ...]) as the same channels of a tensor of `channels` channels from
    `first_channel` on; None for a buffer not laid out batch-major then channel-major."""
    strides = _strides(buffer)
    if len(strides) < 2 or strides[0] != int(buffer.shape[1]) * strides[1] \
            or not isinstance(buffer.elem_offset, tirx.IntImm):
        return None
    index_type = str(buffer.shape[0].ty)
    moved_strides = [channels * strides[1], *strides[1:]]
    return tirx.decl_buffer(buffer.shape, buffer.dtype, name=buffer.name,
                            strides=[tirx.const(s, index_type) for s in moved_strides],
                            elem_offset=tirx.const(int(buffer.elem_offset) + first_channel * strides[1], index_type))


def writing_into(func: tirx.PrimFunc, first_channel: int, channels: int) -> tirx.PrimFunc | None:
    """`func` with its output (last parameter, [batch, c, ...]) replaced by a tensor of `channels` channels, into
    which it writes channels first_channel .. first_channel + c; None if it reads its output's data through a
    buffer not laid out [batch, c, ...]."""
    output = func.params[-1]
    declared: list[tirx.DeclBuffer] = []
    tvm_ffi.structural_walk(func.body, [(tirx.DeclBuffer, declared.append)])
    views = [d.buffer for d in declared if _reads_data_of(d, output)]
    moved = {buffer: _moved(buffer, first_channel, channels) for buffer in [output, *views]}
    if any(buffer is None for buffer in moved.values()):
        return None
    whole = tirx.decl_buffer([output.shape[0], tirx.const(channels, str(output.shape[0].ty)), *output.shape[2:]],
                             output.dtype, name=f"{output.name}_concat")

    def remap(var: tvm.ir.expr.Var) -> tvm.ir.expr.Var:
        return next((new for old, new in moved.items() if var.same_as(old)), var)

    def redeclare(declaration: tirx.DeclBuffer) -> tirx.DeclBuffer:
        if any(declaration.buffer.same_as(new) for new in moved.values()):
            return tirx.DeclBuffer(declaration.buffer, data=whole.data)
        return declaration

    body = tvm_ffi.structural_map(func.body, [(tvm.ir.expr.Var, remap), (tirx.DeclBuffer, redeclare)])
    body = declared_in_root(body, [tirx.DeclBuffer(moved[output], data=whole.data)])
    return tirx.PrimFunc([*func.params[:-1], whole], body, func.ret_type, func.attrs)


def _reads_data_of(declaration: tirx.DeclBuffer, param: tirx.Buffer) -> bool:
    used: list = []
    tvm_ffi.structural_walk(declaration.data, [(tvm.ir.expr.Var, used.append)])
    return any(param.same_as(var) for var in used)


def _concat_plans(mod: tvm.IRModule, func: relax.Function) -> dict[relax.Var, list[tuple[relax.Call, int]]]:
    """Per channel concat whose every input is a private DataflowVar written by a kernel: the kernels' calls
    with the first channel each writes. Variables hash by identity."""
    graph = ConvGraph(func)
    plans = {}
    for var, value in graph.bindings.items():
        callee = kernel_callee(value)
        if callee is None or not isinstance(mod[callee], tirx.PrimFunc) or mod[callee].attrs is None \
                or CHANNEL_CONCAT_ATTR not in mod[callee].attrs:
            continue
        parts, producers, first_channel = list(value.args[1].fields), [], 0
        for part in parts:
            producer = graph.bindings.get(part)
            if not graph.is_private(part) or kernel_callee(producer) is None:
                break
            producers.append((producer, first_channel))
            first_channel += int(part.ty.shape.values[1])
        if len(producers) == len(parts) and len(set(parts)) == len(parts):
            plans[var] = producers
    return plans


@mutator
class _InPlaceWriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, plans: dict) -> None:
        super().__init__(mod)
        self.mod = mod
        self.variants: dict = {}  # (kernel name, first channel, channels) -> GlobalVar, or None if impossible
        self.ready: dict = {}  # concat -> [(producer call, its variant)], for concats whose every producer can move
        for concat, producers in plans.items():
            channels = int(concat.ty.shape.values[1])
            variants = [self._variant(call.args[0], first, channels) for call, first in producers]
            if all(variant is not None for variant in variants):
                self.ready[concat] = [(call, variant) for (call, _), variant in zip(producers, variants)]
        self.moved = {call for producers in self.ready.values() for call, _ in producers}
        self.replaced: set[str] = set()  # kernels called in their old form no more (some may still be)
        self.channels: list[int] = []  # of each concat written in place

    def _variant(self, kernel: tvm.ir.GlobalVar, first_channel: int, channels: int) -> tvm.ir.GlobalVar | None:
        key = (kernel.name_hint, first_channel, channels)
        if key not in self.variants:
            func = writing_into(self.mod[kernel], first_channel, channels)
            self.variants[key] = None if func is None else self.builder_.add_func(func, f"{kernel.name_hint}_concat")
        return self.variants[key]

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        if binding.value in self.moved:
            return  # emitted where its concat was
        producers = self.ready.get(binding.var)
        if producers is None:
            return super().visit_var_binding_(binding)
        out_ty = binding.value.ty_args[0]
        written = None
        for call, variant in producers:
            args = [self.visit_expr(arg) for arg in call.args[1].fields]
            if written is None:
                value = relax.call_tir(variant, relax.Tuple(args), out_ty)
            else:
                value = relax.call_tir_inplace(variant, relax.Tuple([*args, written]), len(args), out_ty)
            if call.same_as(producers[-1][0]):
                self.builder_.emit_normalized(relax.VarBinding(binding.var, self.builder_.normalize(value)))
            else:
                written = self.builder_.emit(value)
            self.replaced.add(call.args[0].name_hint)
        self.replaced.add(binding.value.args[0].name_hint)
        self.channels.append(int(out_ty.shape.values[1]))


def summarize(channels: list[int]) -> list[str]:
    """`--explain` lines from the channels of each concat written in place."""
    if not channels:
        return ["no channel concat whose inputs kernels write; module unchanged"]
    return [f"{len(channels)} concats written in place by the kernels of their inputs, no copy: " + ", ".join(
        f"{c} channels: {n}" for c, n in Counter(channels).items())]


@tvm.transform.module_pass(opt_level=0, name="ConcatInPlace")
class ConcatInPlace:
    """Each channel concat's inputs written into its output by their kernels (module docstring); `report` gets
    the channels of each concat written in place."""

    def __init__(self, report: Callable[[int], None] | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def writer_for(mod: tvm.IRModule, func: relax.Function) -> _InPlaceWriter | None:
            plans = _concat_plans(mod, func)
            return _InPlaceWriter(mod, plans) if plans else None

        mod, writers = rewrite_functions(mod, writer_for)
        for channels in (c for writer in writers for c in writer.channels) if self.report is not None else ():
            self.report(channels)
        return without_uncalled(mod, {name for writer in writers for name in writer.replaced})

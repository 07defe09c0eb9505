"""Pad every channel plane of the activations between kernels to whole 64-byte cache lines.

The kernels split an image between the cores by pixels, so each core writes and reads its part of every channel
plane. In NCHW a plane of H*W floats that is not a multiple of 16 (55x55: 12100 bytes) shares its first and last
cache lines with its neighbours, so the lines at the ends of the cores' parts hold data of both cores and move
between them in every kernel that touches the tensor: on 2 cores a 55x55 1x1 conv with its residual add ran 2.5x
slower updating its tensor in place than with fresh buffers, and the same kernel on 48x64 planes (whole lines)
1.4x (docs/performance.md). With each plane padded to a multiple of 16 floats, and the pixel chunks split at
multiples of 16 pixels, the cores' parts of a tensor share no line. Planes of at least GUARDED_PLANE floats also
keep GUARD_LINES unused lines after them: a core's L2 stream prefetcher, running ahead past the end of its part
of a plane (up to 20 lines on Intel cores), then fetches padding instead of the start of the next plane, which
the other core writes.

A tensor that one kernel writes and only kernels read becomes [N, C, padded plane]. Each kernel keeps its body,
schedule and tuning records: its parameter is the padded tensor, over which it declares the NCHW view it always
read, with the padded plane as its channel stride. The network's input and outputs, tensors anything but a
kernel reads, and tensors a kernel reinterprets through a buffer of its own keep NCHW."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import tvm
import tvm_ffi
from tvm import relax, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from ..module_functions import without_uncalled
from ._kernels import declared_in_root, kernel_callee, rewrite_functions

LINE_FLOATS = 16  # float32 in a 64-byte cache line
GUARD_LINES = 20  # past a plane, the stream prefetchers' reach (16 to 24 measured alike, 8 a third as good)
GUARDED_PLANE = 512  # floats: smaller planes split between cores are too short for the prefetcher to run ahead


def padded_plane(shape) -> int | None:
    """Floats per channel plane once padded to whole lines (and guarded), for an NCHW shape whose planes are not
    whole lines; else None."""
    if len(shape) != 4 or not all(isinstance(d, (int, tirx.IntImm)) for d in shape):
        return None
    plane = int(shape[2]) * int(shape[3])
    if plane < LINE_FLOATS or plane % LINE_FLOATS == 0:
        return None
    guard = GUARD_LINES * LINE_FLOATS if plane >= GUARDED_PLANE else 0
    return -(-plane // LINE_FLOATS) * LINE_FLOATS + guard


def _tensor_shape(ty) -> list:
    """A tensor type's static shape, or [] for anything else."""
    if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr):
        return []
    return list(ty.shape.values)


def _padded_type(ty: relax.TensorType) -> relax.TensorType:
    batch, channels = (int(d) for d in ty.shape.values[:2])
    return relax.TensorType([batch, channels, padded_plane(ty.shape.values)], ty.dtype)


def with_padded_params(func: tirx.PrimFunc, positions: list[int]) -> tirx.PrimFunc:
    """`func` taking its parameters at `positions` as padded [N, C, plane] tensors, viewed as the NCHW buffers
    its body reads and writes (same data, channel stride = the padded plane)."""
    params, declarations, views = list(func.params), [], []
    for position in positions:
        old = params[position]
        batch, channels, _, width = (int(d) for d in old.shape)
        plane = padded_plane(old.shape)
        padded = tirx.decl_buffer((batch, channels, plane), old.dtype, name=f"{old.name}_planes")
        view = tirx.decl_buffer(old.shape, old.dtype, name=old.name, data=padded.data,
                                strides=[channels * plane, plane, width, 1])
        params[position] = padded
        declarations.append(tirx.DeclBuffer(view, data=padded.data))
        views.append((old, view))

    def remap(var: tvm.ir.expr.Var) -> tvm.ir.expr.Var:
        return next((view for old, view in views if var.same_as(old)), var)

    body = declared_in_root(tvm_ffi.structural_map(func.body, [(tvm.ir.expr.Var, remap)]), declarations)
    return tirx.PrimFunc(params, body, func.ret_type, func.attrs)


def _kernel_call(mod: tvm.IRModule, expr: relax.Expr) -> bool:
    callee = kernel_callee(expr)
    return callee is not None and isinstance(mod[callee], tirx.PrimFunc)


def _reinterpreted_params(func: tirx.PrimFunc) -> set[int]:
    """Positions of the parameters the kernel also reads through a buffer of its own over their data (a view of
    another dtype or shape, declared in its body): such a buffer assumes NCHW."""
    data_expressions: list = []
    tvm_ffi.structural_walk(func.body, [(tirx.DeclBuffer, lambda declaration: data_expressions.append(
        declaration.data))])
    used: list = []
    for expression in data_expressions:
        tvm_ffi.structural_walk(expression, [(tvm.ir.expr.Var, used.append)])
    return {i for i, param in enumerate(func.params) if any(param.same_as(var) for var in used)}


def _padded_tensors(mod: tvm.IRModule, func: relax.Function) -> dict[relax.Var, relax.Call]:
    """The tensors to pad, each variable (a kernel's output or an alias of one) with the kernel call that writes
    it: float32 tensors with ragged planes that a kernel writes and only kernels read, through parameters
    declared in the tensor's shape and never reinterpreted. Variables and calls hash by identity."""
    root: dict = {}  # alias variable -> the kernel output it names
    written: dict = {}  # kernel output with ragged planes -> its call
    reinterpreted: dict = {}  # kernel name -> `_reinterpreted_params`, walked once per kernel
    read_elsewhere: list = []
    for binding in (binding for block in func.body.blocks for binding in block.bindings):
        var, value = binding.var, binding.value
        if isinstance(value, relax.Var):
            root[var] = root.get(value, value)
        elif _kernel_call(mod, value):
            kernel = mod[value.args[0]]
            name = value.args[0].name_hint
            if name not in reinterpreted:
                reinterpreted[name] = _reinterpreted_params(kernel)
            tensors = [*value.args[1].fields, var]
            nchw_only = reinterpreted[name] | {i for i, (param, tensor) in enumerate(zip(kernel.params, tensors))
                                               if [int(d) for d in param.shape] != _tensor_shape(tensor.ty)}
            read_elsewhere += [arg for i, arg in enumerate(tensors[:-1])
                               if i in nchw_only and isinstance(arg, relax.Var)]
            if padded_plane(_tensor_shape(var.ty)) and var.ty.dtype == "float32" and len(tensors) - 1 not in nchw_only:
                written[var] = value
        else:
            read_elsewhere += relax.analysis.free_vars(value)
    read_elsewhere += relax.analysis.free_vars(func.body.body)
    spoiled = {root.get(var, var) for var in read_elsewhere}
    kept = {var: call for var, call in written.items() if var not in spoiled}
    return {**kept, **{alias: kept[target] for alias, target in root.items() if target in kept}}


@mutator
class _PlanePadder(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, padded: dict[relax.Var, relax.Call]) -> None:
        super().__init__(mod)
        self.mod, self.padded, self.outputs = mod, padded, dict.fromkeys(padded.values())  # in binding order
        self.variants: dict = {}  # (kernel name, padded positions) -> GlobalVar

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        if not _kernel_call(self.mod, call):
            return super().visit_call_(call)
        args = list(call.args[1].fields)
        output_padded = call in self.outputs
        positions = [i for i, arg in enumerate(args) if arg in self.padded] + ([len(args)] if output_padded else [])
        if not positions:
            return super().visit_call_(call)
        kernel = call.args[0]
        key = (kernel.name_hint, tuple(positions))
        if key not in self.variants:
            self.variants[key] = self.builder_.add_func(with_padded_params(self.mod[kernel], positions),
                                                        f"{kernel.name_hint}_planes")
        out_ty = call.ty_args[0]
        return relax.call_tir(self.variants[key], relax.Tuple([self.visit_expr(arg) for arg in args]),
                              _padded_type(out_ty) if output_padded else out_ty)


def summarize(planes: list[tuple[int, int]]) -> list[str]:
    """`--explain` lines from the (height, width) of each padded tensor's planes."""
    if not planes:
        return ["no tensor between kernels has planes of a fraction of a cache line; module unchanged"]
    counts = Counter(planes)
    return [f"{len(planes)} tensors between kernels padded to whole-line channel planes: " + ", ".join(
        f"{h}x{w} ({h * w} -> {padded_plane((1, 1, h, w))} floats): {n}" for (h, w), n in counts.items())]


@tvm.transform.module_pass(opt_level=0, name="AlignChannelPlanes")
class AlignChannelPlanes:
    """The activations between kernels with channel planes of whole cache lines (module docstring); `report`
    gets the (height, width) of each padded tensor's planes."""

    def __init__(self, report: Callable[[tuple[int, int]], None] | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def padder_for(mod: tvm.IRModule, func: relax.Function) -> _PlanePadder | None:
            padded = _padded_tensors(mod, func)
            return _PlanePadder(mod, padded) if padded else None

        mod, padders = rewrite_functions(mod, padder_for)
        for output in (o for padder in padders for o in padder.outputs) if self.report is not None else ():
            self.report(tuple(int(d) for d in output.ty_args[0].shape.values[2:]))
        # the kernels given padded variants
        return without_uncalled(mod, {name for padder in padders for name, _ in padder.variants})

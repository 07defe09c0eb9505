"""Turn each concat along channels whose inputs nothing else reads (a fire module's two expands) into a call of
`kernels.channel_concat`: the same copy, but marked, so that `concat_in_place` can later have the kernels that
produce its inputs write into its output instead."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ..kernels.channel_concat import channel_concat_kernel
from ._conv_graph import ConvGraph
from ._kernels import rewrite_functions

_CONCAT = tvm.ir.Op.get("relax.concat")


def _static_nchw(ty) -> list[int] | None:
    if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr) or ty.ndim != 4:
        return None
    shape = ty.shape.values
    return [int(d) for d in shape] if all(isinstance(d, tvm.tirx.IntImm) for d in shape) else None


def summarize(resolutions: list[tuple[int, int]]) -> list[str]:
    """`--explain` lines from the (height, width) of each marked concat."""
    if not resolutions:
        return ["no concat along channels of tensors only it reads; module unchanged"]
    return [f"{len(resolutions)} concats along channels marked for in-place writes: " + ", ".join(
        f"{h}x{w}: {n}" for (h, w), n in Counter(resolutions).items())]


@mutator
class _ConcatMarker(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, graph: ConvGraph, report: Callable | None) -> None:
        super().__init__(mod)
        self.graph, self.report = graph, report
        self.kernels: dict = {}  # (shapes, dtype) -> GlobalVar

    def _parts(self, call: relax.Call) -> list[relax.Var] | None:
        """The concat's inputs when it joins along channels static NCHW tensors that only it reads, else None."""
        if call.op != _CONCAT or not isinstance(call.args[0], relax.Tuple) or _static_nchw(call.ty) is None:
            return None
        if int(call.attrs.axis) not in (1, -3):
            return None
        parts = list(call.args[0].fields)
        if len(parts) < 2 or len(set(parts)) != len(parts):
            return None
        private = all(isinstance(part, relax.Var) and self.graph.is_private(part) for part in parts)
        same_type = all(_static_nchw(part.ty) is not None and part.ty.dtype == call.ty.dtype for part in parts)
        return parts if private and same_type else None

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        parts = self._parts(call)
        if parts is None:
            return super().visit_call_(call)
        shapes = tuple(tuple(_static_nchw(part.ty)) for part in parts)
        key = (shapes, call.ty.dtype)
        if key not in self.kernels:
            self.kernels[key] = self.builder_.add_func(channel_concat_kernel(shapes, call.ty.dtype), "channel_concat")
        if self.report is not None:
            self.report(tuple(shapes[0][2:]))
        return relax.call_tir(self.kernels[key], relax.Tuple([self.visit_expr(part) for part in parts]), call.ty)


@tvm.transform.module_pass(opt_level=0, name="ChannelConcat")
class ChannelConcat:
    """concat(axis=1) of tensors that only it reads becomes a `kernels.channel_concat` call (module docstring);
    `report` gets the (height, width) of each."""

    def __init__(self, report: Callable[[tuple[int, int]], None] | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod, _ = rewrite_functions(mod.clone(), lambda mod, func: _ConcatMarker(mod, ConvGraph(func), self.report))
        return mod

"""Give each strided 1x1 conv a dense copy of the pixels it reads, so it runs as a stride-1 1x1 (over pixel chunks,
or as the first stage of a pixel-chunk reduce pair).

A 1x1 conv of stride s reads every s-th row and column: the row kernels that take strided convs compute it in
rows padded to whole vectors, from strided loads. One strided slice of the input, shared by every strided 1x1 that
reads the same tensor (a bottleneck's projection shortcut and its first reduce conv), costs one pass over the
pixels kept; the convs then take the pixel-chunk kernels of stride-1 1x1s (docs/performance.md)."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ._kernels import rewrite_functions

_CONV2D = tvm.ir.Op.get("relax.nn.conv2d")


def _strided_pointwise(call: relax.Call) -> int | None:
    """The stride of a static NCHW 1x1 conv with equal strides > 1, no padding and no dilation, else None."""
    attrs = call.attrs
    shapes = [arg.ty.shape for arg in call.args if isinstance(arg.ty, relax.TensorType)]
    if len(shapes) != 2 or not all(isinstance(shape, relax.ShapeExpr) for shape in shapes):
        return None
    data, weight = (shape.values for shape in shapes)
    static = all(isinstance(d, tvm.tirx.IntImm) for d in [*data, *weight])
    strides = [int(s) for s in attrs.strides]
    if (not static or attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW"
            or attrs.out_layout != "NCHW" or [int(d) for d in weight[2:]] != [1, 1]
            or any(int(p) for p in attrs.padding) or any(int(d) != 1 for d in attrs.dilation)
            or strides[0] != strides[1] or strides[0] < 2):
        return None
    return strides[0]


@mutator
class _Subsampler(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, report: Callable[[tuple[int, int, int]], None] | None) -> None:
        super().__init__(mod)
        self.report = report
        self.slices: dict[tuple[relax.Expr, int], tuple[relax.Var, int]] = {}  # (data, stride) -> (slice, number)
        self.made = 0

    def visit_dataflow_block_(self, block: relax.DataflowBlock) -> relax.DataflowBlock:
        self.slices = {}  # a slice is a dataflow var of its own block
        return super().visit_dataflow_block_(block)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (isinstance(call, relax.Call) and call.op == _CONV2D) or (stride := _strided_pointwise(call)) is None:
            return call
        data, weight = call.args
        key = (data, stride)
        if key not in self.slices:
            height, width = (int(d) for d in data.ty.shape.values[2:])
            self.slices[key] = (self.builder_.emit(relax.op.strided_slice(
                data, axes=[2, 3], begin=[0, 0], end=[height, width], strides=[stride, stride]), "subsampled"),
                self.made)
            self.made += 1
        subsampled, number = self.slices[key]
        if self.report is not None:
            shape = call.ty.shape.values
            self.report((int(shape[2]), int(shape[3]), number))
        attrs = call.attrs
        return relax.op.nn.conv2d(subsampled, weight, strides=1, padding=0, dilation=1, groups=attrs.groups,
                                  data_layout="NCHW", kernel_layout="OIHW", out_layout="NCHW",
                                  out_dtype=attrs.out_dtype)


def summarize(records: list[tuple[int, int, int]]) -> list[str]:
    """`--explain` lines from (output height, width, slice) per rewritten conv."""
    if not records:
        return ["no strided 1x1 conv; module unchanged"]
    slices = {index for *_, index in records}
    return [f"{len(records)} strided 1x1 convs read {len(slices)} subsampled copies, per stage: " + ", ".join(
        f"{h}x{w}: {n}" for (h, w), n in Counter((h, w) for h, w, _ in records).items())]


@tvm.transform.module_pass(opt_level=0, name="SubsamplePointwise")
class SubsamplePointwise:
    """conv2d(x, w: 1x1, stride s > 1, no padding) becomes conv2d(strided_slice(x, step s along rows and columns),
    w, stride 1); the strided 1x1 convs on one tensor share its slice."""

    def __init__(self, report: Callable[[tuple[int, int, int]], None] | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod, _ = rewrite_functions(mod.clone(), lambda mod, _func: _Subsampler(mod, self.report))
        return mod

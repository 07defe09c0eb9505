"""Compute stride-2 stems (a 5x5 or 7x7 conv on the few input channels of an image) as polyphase Winograd."""

from __future__ import annotations

import tvm
from tvm import relax

from ..kernels.contract import WINOGRAD_STEM
from ..kernels.winograd import COLUMN_CHUNK, ROWS_PER_TILE, row_taps, transform_weights, winograd_rows_kernel
from ._conv_graph import ConvUnit, rewrite_units
from ._fusion_report import Reporter

KERNELS = (5, 7)  # F(4, 3) and F(4, 4): 6 and 7 transformed rows, the accuracy TVM's own Winograd accepts
MAX_IN_CHANNELS = 4  # an image's channels: the transforms are per input channel, the savings per output


def is_winograd_stem(unit: ConvUnit) -> bool:
    out_h, out_w = (int(unit.output.ty.shape[axis]) for axis in (2, 3))
    kernel = unit.kernel
    return (unit.strides == (2, 2) and kernel[0] == kernel[1] and kernel[0] in KERNELS and unit.groups == 1
            and int(unit.weight.shape[1]) <= MAX_IN_CHANNELS and out_h >= ROWS_PER_TILE and out_w >= COLUMN_CHUNK)


def _describe(unit: ConvUnit) -> str:
    return f"{unit.kernel[0]}x{unit.kernel[1]}/s2, F({ROWS_PER_TILE},{row_taps(unit.kernel[0])})"


def _emit(rewriter, unit: ConvUnit) -> relax.Expr:
    data = rewriter.visit_expr(unit.data)
    func = winograd_rows_kernel([int(d) for d in data.ty.shape], int(unit.weight.shape[0]), unit.kernel, 2,
                                unit.padding, unit.bias is not None, unit.relu)
    gvar = rewriter.builder_.add_func(func, f"fused_{WINOGRAD_STEM}")
    args = [data, relax.const(transform_weights(unit.weight))]
    if unit.bias is not None:
        args.append(relax.const(unit.bias))
    return relax.call_tir(gvar, args, unit.output.ty)


@tvm.transform.module_pass(opt_level=0, name="WinogradStem")
class WinogradStem:
    """conv2d(KxK, stride 2, K in 5, 7, at most 4 input channels)[+bias][+ReLU] becomes one call_tir of
    `kernels.winograd.winograd_rows_kernel`, its weights transformed at compile time."""

    def __init__(self, report: Reporter | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_units(mod, is_winograd_stem, _emit, WINOGRAD_STEM, _describe, self.report)

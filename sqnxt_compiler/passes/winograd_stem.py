"""Compute stride-2 stems (a 5x5 or 7x7 conv on the few input channels of an image) as polyphase Winograd."""

from __future__ import annotations

import tvm

from ..kernels.contract import WINOGRAD_STEM
from ..kernels.winograd import COLUMN_CHUNK, ROWS_PER_TILE, row_taps
from ._conv_graph import ConvUnit, emit_winograd_rows, rewrite_units
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


@tvm.transform.module_pass(opt_level=0, name="WinogradStem")
class WinogradStem:
    """conv2d(KxK, stride 2, K in 5, 7, at most 4 input channels)[+bias][+ReLU] becomes one call_tir of
    `kernels.winograd.winograd_rows_kernel`, its weights transformed at compile time."""

    def __init__(self, report: Reporter | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def emit(rewriter, unit: ConvUnit):
            return emit_winograd_rows(rewriter, unit, 2, WINOGRAD_STEM)

        return rewrite_units(mod, is_winograd_stem, emit, WINOGRAD_STEM, _describe, self.report)

"""Compute the 3x1 convs of the low-rank pairs, and 3x3 stride-1 convs, as Winograd F(4, 3) along rows, where
that is faster."""

from __future__ import annotations

import tvm

from ..kernels.contract import WINOGRAD_ROWS
from ..kernels.winograd import COLUMN_CHUNK, ROWS_PER_TILE
from ._conv_graph import ConvGraph, ConvUnit, UnitRewrite, emit_winograd_rows, rewrite_units
from ._fusion_report import Reporter

# Where it wins end to end (docs/performance.md, 2026-12-05). Alone it wins from 16 outputs, but it takes the
# conv out of its low-rank pair, and the unfused 1x3 partner with 16 channels (55x55 of 1.0-SqNxt-23) is
# memory-bound at batch 8 (+7% end to end on x86-avx2). Not at 7x7: a 4-row tile and a 16-column chunk are
# mostly overlap and padding there (ResNet-18's 7x7 3x3 convs stay direct too).
MIN_OUT_CHANNELS = 32
MIN_ROWS = 2 * ROWS_PER_TILE
MIN_COLUMNS = COLUMN_CHUNK // 2 + 1


def is_winograd_row_conv(unit: ConvUnit) -> bool:
    """A 3x1 conv without column padding (its row taps are the transformed ones), or a 3x3 conv (the same,
    with its three column taps summed directly, as the stems do), at stride 1, large enough to win."""
    out_channels, out_h, out_w = (int(unit.output.ty.shape[axis]) for axis in (1, 2, 3))
    column_taps = unit.kernel == (3, 3) or (unit.kernel == (3, 1) and unit.padding[1] == unit.padding[3] == 0)
    return (column_taps and unit.strides == (1, 1) and unit.groups == 1 and out_channels >= MIN_OUT_CHANNELS
            and out_h >= MIN_ROWS and out_w >= MIN_COLUMNS)


@tvm.transform.module_pass(opt_level=0, name="WinogradRowConv")
class WinogradRowConv:
    """conv2d(3x1 or 3x3, stride 1)[+bias][+ReLU] with at least MIN_OUT_CHANNELS outputs on an image of at
    least MIN_ROWS x MIN_COLUMNS becomes one call_tir of `kernels.winograd.winograd_rows_kernel` (6 multiplies
    per 4 output rows and column tap instead of 12), its weights transformed at compile time. Runs before
    FuseLowRankConv: the pair's other conv (1x3, along the vector dimension) stays direct. 3x3 convs
    (ResNet's basic blocks, SqueezeNet's 3x3 expands) keep their column taps as direct multiply-adds: Winograd
    along the vector dimension would need lane shuffles."""

    def __init__(self, report: Reporter | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def rewrite(_graph: ConvGraph, unit: ConvUnit) -> UnitRewrite | None:
            if not is_winograd_row_conv(unit):
                return None
            return UnitRewrite(unit.output, lambda rw: emit_winograd_rows(rw, unit, 1, WINOGRAD_ROWS),
                              f"{unit.describe()}, F(4,3)")

        return rewrite_units(mod, rewrite, WINOGRAD_ROWS, self.report)

"""Compute depthwise convs (MobileNet's 3x3, stride 1 or 2) with the output columns in vectors."""

from __future__ import annotations

import tvm

from ..kernels.contract import DEPTHWISE
from ._conv_graph import ConvGraph, ConvUnit, UnitRewrite, column_conv_rewrite, rewrite_units
from ._fusion_report import Reporter


def is_depthwise(unit: ConvUnit) -> bool:
    """One filter per channel (groups = input channels = output channels), at stride 1 or 2 both ways."""
    channels = int(unit.data.ty.shape[1])
    return (unit.groups == channels == int(unit.weight.shape[0]) > 1
            and unit.strides[0] == unit.strides[1] in (1, 2))


@tvm.transform.module_pass(opt_level=0, name="DepthwiseConv")
class DepthwiseConv:
    """conv2d(groups = channels)[+bias][+ReLU / ReLU6] becomes one call_tir of `kernels.column_conv`: the generic
    conv schedules vectorize over output channels, which a depthwise conv in NCHW can only feed by gathers."""

    def __init__(self, report: Reporter | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def rewrite(_graph: ConvGraph, unit: ConvUnit) -> UnitRewrite | None:
            return column_conv_rewrite(unit, DEPTHWISE) if is_depthwise(unit) else None

        return rewrite_units(mod, rewrite, DEPTHWISE, self.report)

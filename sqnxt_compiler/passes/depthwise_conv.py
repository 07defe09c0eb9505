"""Compute depthwise convs (MobileNet's 3x3, stride 1 or 2) with the output columns in vectors."""

from __future__ import annotations

import tvm

from ..kernels.contract import DEPTHWISE
from ..kernels.depthwise import depthwise_kernel
from ._conv_graph import ChainRewriter, ConvGraph, ConvUnit, UnitRewrite, call_with_weights, rewrite_units
from ._fusion_report import Reporter


def is_depthwise(unit: ConvUnit) -> bool:
    """One filter per channel (groups = input channels = output channels), at stride 1 or 2 both ways."""
    channels = int(unit.data.ty.shape[1])
    return (unit.groups == channels == int(unit.weight.shape[0]) > 1
            and unit.strides[0] == unit.strides[1] in (1, 2))


def _emit(rewriter: ChainRewriter, unit: ConvUnit) -> tvm.relax.Expr:
    data = rewriter.visit_expr(unit.data)
    func = depthwise_kernel([int(d) for d in data.ty.shape], unit.kernel, unit.strides[0], unit.padding,
                            unit.bias is not None, unit.relu, unit.relu_max)
    return call_with_weights(rewriter, func, DEPTHWISE, data, unit.weight, unit, unit.output)


@tvm.transform.module_pass(opt_level=0, name="DepthwiseConv")
class DepthwiseConv:
    """conv2d(groups = channels)[+bias][+ReLU / ReLU6] becomes one call_tir of `kernels.depthwise`: the generic
    conv schedules vectorize over output channels, which a depthwise conv in NCHW can only feed by gathers."""

    def __init__(self, report: Reporter | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def rewrite(_graph: ConvGraph, unit: ConvUnit) -> UnitRewrite | None:
            if not is_depthwise(unit):
                return None
            kh, kw = unit.kernel
            return UnitRewrite(unit.output, lambda rw: _emit(rw, unit), f"{kh}x{kw}/s{unit.strides[0]}")

        return rewrite_units(mod, rewrite, DEPTHWISE, self.report)

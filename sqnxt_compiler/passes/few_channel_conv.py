"""Compute convs on an image's few channels (the 3x3 stride-2 stems of MobileNetV2 and SqueezeNet 1.1) with the
output columns in vectors, with the max pool that follows them when there is one (SqueezeNet 1.1's)."""

from __future__ import annotations

import tvm

from ..kernels.column_conv import takes_pool
from ..kernels.contract import FEW_CHANNEL_CONV
from ._conv_graph import ConvGraph, ConvUnit, UnitRewrite, column_conv_rewrite, following_max_pool, rewrite_units
from ._fusion_report import Reporter

MAX_IN_CHANNELS = 4  # an image's channels: each input vector then feeds a register tile of output channels


def is_few_channel_conv(unit: ConvUnit) -> bool:
    """A dense conv (one group) on at most MAX_IN_CHANNELS channels with a spatial kernel, at stride 1 or 2 both
    ways."""
    return (unit.groups == 1 and int(unit.weight.shape[1]) <= MAX_IN_CHANNELS and max(unit.kernel) > 1
            and unit.strides[0] == unit.strides[1] in (1, 2))


@tvm.transform.module_pass(opt_level=0, name="FewChannelConv")
class FewChannelConv:
    """conv2d(at most 4 input channels)[+bias][+ReLU / ReLU6] becomes one call_tir of `kernels.column_conv`: the
    generic schedules put output channels in vectors, and with a reduction of only C x K x K taps per output
    the transposed stores into NCHW are what they wait for (48 GMAC/s on a 3x3 stem). A max pool that alone
    reads the result (`following_max_pool`) is computed in the same kernel, row tile by row tile: the conv's
    result (3 MB an image) then never goes through memory. The register tiles' rows depend on the target's
    `vector_registers` (`kernels.column_conv.several_channel_tile`)."""

    def __init__(self, report: Reporter | None = None, vector_registers: int | None = None) -> None:
        self.report, self.vector_registers = report, vector_registers

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def rewrite(graph: ConvGraph, unit: ConvUnit) -> UnitRewrite | None:
            if not is_few_channel_conv(unit):
                return None
            pool = following_max_pool(graph, unit)
            return column_conv_rewrite(unit, FEW_CHANNEL_CONV, pool if pool is None or takes_pool(pool[1]) else None,
                                       self.vector_registers)

        return rewrite_units(mod, rewrite, FEW_CHANNEL_CONV, self.report)

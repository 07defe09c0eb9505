"""Compute each remaining 1x1 stride-1 conv (a projection shortcut, a SqueezeNet squeeze or expand) over
chunks of the flattened image, like the fused 1x1 chains."""

from __future__ import annotations

import math

import tvm

from ..kernels.common import weights_dominate
from ..kernels.contract import POINTWISE
from ..kernels.pixel_chunks import PIXEL_CHUNK, is_pointwise_chain
from ._conv_graph import ConvGraph, ConvUnit, UnitRewrite, rewrite_units
from ._fusion_report import Reporter

# Below this many chunks the generic conv schedule is faster (at 7x7, 4 chunks, the last mostly overlap), unless
# the weights dominate: then the cores split the output channels, all the chunks under each; with 16 registers,
# counted over the batch (docs/performance.md)
MIN_CHUNKS = 8
# Register files from which the generic conv beats those split chunks on weight-bound convs too: its tiles (output
# channels in the lanes, a row of pixels broadcast) then hold enough accumulators. With 16 (AVX2) they do not
# (MobileNetV2's 7x7 1x1s, both x86 classes measured on two CPUs: docs/performance.md)
GENERIC_CONV_REGISTERS = 32


def _over_chunks(unit: ConvUnit, l2_bytes: int | None, vector_registers: int | None) -> bool:
    shape = [int(d) for d in unit.data.ty.shape]
    few_registers = vector_registers is not None and vector_registers < GENERIC_CONV_REGISTERS
    weight_bound = (l2_bytes is not None and few_registers
                    and weights_dominate(4 * unit.weight.size, 4 * math.prod(shape), l2_bytes))
    # With 16 registers the images of a batch count together: the generic conv's register tiles take a few
    # columns of a 7-pixel row at any batch, the chunks of 8 images fill both cores (docs/performance.md)
    images = shape[0] if few_registers else 1
    enough_chunks = images * shape[2] * shape[3] >= MIN_CHUNKS * PIXEL_CHUNK or weight_bound
    return enough_chunks and is_pointwise_chain(shape, [unit.stage()])


@tvm.transform.module_pass(opt_level=0, name="PointwiseConvOverChunks")
class PointwiseConvOverChunks:
    """conv2d(1x1, stride 1, no padding)[+bias][+ReLU] becomes a one-stage `kernels.pixel_chunks` kernel: the
    generic conv schedules compute it in rows padded to whole vectors (55 -> 64 columns), the chunk kernel
    has no padding. Run after the bottleneck fusions, so it only takes the convs they left. With the target's
    `l2_bytes` and `vector_registers` (fewer than GENERIC_CONV_REGISTERS), a conv whose weights dominate goes over
    chunks on any image, and the chunks of a batch's images count together."""

    def __init__(self, report: Reporter | None = None, l2_bytes: int | None = None,
                 vector_registers: int | None = None) -> None:
        self.report, self.l2_bytes, self.vector_registers = report, l2_bytes, vector_registers

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def rewrite(_graph: ConvGraph, unit: ConvUnit) -> UnitRewrite | None:
            if not _over_chunks(unit, self.l2_bytes, self.vector_registers):
                return None
            return UnitRewrite(unit.output, lambda rw: rw.emit_chain([unit], POINTWISE), "1x1")

        return rewrite_units(mod, rewrite, POINTWISE, self.report)

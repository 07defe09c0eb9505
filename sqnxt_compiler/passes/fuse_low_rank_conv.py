"""Fuse each SqueezeNext low-rank pair (3x1 conv then 1x3 conv, or the reverse) into one kernel."""

from __future__ import annotations

import tvm

from ..kernels.contract import LOW_RANK
from ._conv_graph import ConvGraph, ConvUnit, rewrite_module
from ._fusion_report import FusionRecord, Reporter

LOW_RANK_KERNELS = {(3, 1), (1, 3)}


def _is_low_rank_pair(first: ConvUnit, second: ConvUnit) -> bool:
    return {first.kernel, second.kernel} == LOW_RANK_KERNELS and first.kernel != second.kernel


def fills_its_vectors(width: int, vector_lanes: int | None) -> bool:
    """Whether rows of `width` outputs use more than half the lanes of the vectors that compute them (the fused
    kernel computes whole rows in vectors: 7x7 on AVX-512 fills 7 of 16 lanes, where the conv schedules put
    output channels in the lanes instead; docs/performance.md)."""
    if vector_lanes is None:
        return True
    return 2 * width > -(-width // vector_lanes) * vector_lanes


def _plan(graph: ConvGraph, report: Reporter | None, vector_lanes: int | None) -> dict:
    plans, taken = {}, set()
    for second in graph.outermost_units():
        first = graph.producer_unit(second)
        if first is None or first.output in taken or not _is_low_rank_pair(first, second):
            continue
        if not fills_its_vectors(int(second.output.ty.shape[3]), vector_lanes):
            continue
        taken.update((first.output, second.output))
        plans[second.output] = lambda rw, units=(first, second): rw.emit_chain(units, LOW_RANK)
        if report is not None:
            shape = second.output.ty.shape
            report(FusionRecord(LOW_RANK, f"{first.describe()}->{second.describe()}", (int(shape[2]), int(shape[3]))))
    return plans


@tvm.transform.module_pass(opt_level=0, name="FuseLowRankConv")
class FuseLowRankConv:
    """conv(3x1)[+bias][+ReLU] -> conv(1x3)[+bias][+ReLU] (either order, any groups) becomes one call_tir.

    The kernel (`kernels.conv_chain.conv_chain_kernel`) holds the first conv's output only for the row tile
    the second conv is computing (`schedules/fused_low_rank.py` places it with compute_at; TIR compacts
    it to rows x width x C/2, ~13 x 64 x 16 floats at 55x55), so the C/2 intermediate never reaches
    memory as a tensor. The first conv's output must have no other reader. With the target's `vector_lanes`, a
    pair whose rows fill at most half of their vectors (`fills_its_vectors`) stays two convs."""

    def __init__(self, report: Reporter | None = None, vector_lanes: int | None = None) -> None:
        self.report, self.vector_lanes = report, vector_lanes

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_module(mod, lambda graph: _plan(graph, self.report, self.vector_lanes))

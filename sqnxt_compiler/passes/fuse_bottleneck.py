"""Fuse SqueezeNext's bottleneck: the two 1x1 reduce convs into one kernel, the 1x1 expand with add+ReLU."""

from __future__ import annotations

import math

import tvm
from tvm import relax

from ..kernels.contract import EXPAND_EPILOGUE, REDUCE_CHAIN
from ..kernels.common import weights_dominate
from ..kernels.pixel_chunks import PIXEL_CHUNK, is_pointwise_chain
from .pointwise_conv_over_chunks import GENERIC_CONV_REGISTERS, MIN_CHUNKS
from ._conv_graph import ConvGraph, ConvUnit, rewrite_module
from ._fusion_report import FusionRecord, Reporter


def _is_pointwise(unit: ConvUnit) -> bool:
    return unit.kernel == (1, 1) and not any(unit.padding)


def _resolution(var: relax.Var) -> tuple[int, int]:
    return int(var.ty.shape[2]), int(var.ty.shape[3])


def _weights_bound_on_few_chunks(units: list[ConvUnit], l2_bytes: int | None) -> bool:
    """A chain that would run over fewer than MIN_CHUNKS pixel chunks, with weights that dominate
    (`kernels.common.weights_dominate`; MobileNetV2's 7x7 960->320->1280: 2.9 MB): each core would stream all the
    weights for its 2-4 chunks; the convs alone run with the cores on output channels (a one-stage pixel-chunk
    kernel whose weights dominate: `schedules/fused_pixel_chunks.py`)."""
    shape = [int(d) for d in units[0].data.ty.shape]
    return (l2_bytes is not None and is_pointwise_chain(shape, [unit.stage() for unit in units])
            and shape[2] * shape[3] < MIN_CHUNKS * PIXEL_CHUNK
            and weights_dominate(4 * sum(unit.weight.size for unit in units), 4 * math.prod(shape), l2_bytes))


def _left_to_the_generic_conv(expand: ConvUnit, l2_bytes: int | None, vector_registers: int | None) -> bool:
    """An expand whose weights dominate on few chunks, on a register file the generic conv's tiles beat the split
    chunks on (`pointwise_conv_over_chunks.GENERIC_CONV_REGISTERS`): unfused, it runs there with the shortcut's add
    as its epilogue (MobileNetV2's 7x7 960->160 projections, docs/performance.md)."""
    return (vector_registers is not None and vector_registers >= GENERIC_CONV_REGISTERS
            and _weights_bound_on_few_chunks([expand], l2_bytes))


def _plan_reduce_chains(graph: ConvGraph, plans: dict, report: Reporter | None, l2_bytes: int | None) -> None:
    taken: set = set()
    for second in graph.outermost_units():
        first = graph.producer_unit(second)
        if first is None or first.output in taken or not (_is_pointwise(first) and _is_pointwise(second)):
            continue
        if _weights_bound_on_few_chunks([first, second], l2_bytes):
            continue
        taken.update((first.output, second.output))
        plans[second.output] = lambda rw, units=(first, second): rw.emit_chain(units, REDUCE_CHAIN)
        if report is not None:
            detail = f"1x1/s{first.strides[0]}->1x1" if first.strides != (1, 1) else "1x1->1x1"
            report(FusionRecord(REDUCE_CHAIN, detail, _resolution(second.output)))


def residual_epilogue(graph: ConvGraph, var: relax.Var) -> tuple[ConvUnit, relax.Expr, bool] | None:
    """`var = relu(add(expand, shortcut))` with `expand` a private 1x1 conv unit (with its own ReLU in the
    third-party form, without in the official one), or `var = add(expand, shortcut)` that no ReLU reads
    (MobileNetV2's linear bottleneck); with whether the ReLU is there."""
    relu = graph.call(var, "relax.nn.relu")
    if relu is not None and not graph.is_private(relu.args[0]):
        return None
    users = graph.users.get(var, ())
    if relu is None and len(users) == 1 and graph.call(users[0], "relax.nn.relu") is not None:
        return None  # the ReLU's own binding takes the add along
    add = graph.call(var if relu is None else relu.args[0], "relax.add")
    if add is None:
        return None
    for branch, shortcut in (add.args, reversed(add.args)):
        unit = graph.unit_at(branch) if graph.is_private(branch) else None
        if (unit is not None and _is_pointwise(unit) and not shortcut.same_as(branch)
                and [int(d) for d in shortcut.ty.shape] == [int(d) for d in branch.ty.shape]):
            return unit, shortcut, relu is not None
    return None


def _plan_epilogues(graph: ConvGraph, plans: dict, report: Reporter | None, l2_bytes: int | None,
                    vector_registers: int | None) -> None:
    for var in graph.order:
        found = residual_epilogue(graph, var)
        if found is None or var in plans or _left_to_the_generic_conv(found[0], l2_bytes, vector_registers):
            continue
        expand, shortcut, final_relu = found
        plans[var] = lambda rw, unit=expand, s=shortcut, relu=final_relu: rw.emit_chain(
            [unit], EXPAND_EPILOGUE, s, final_relu=relu)
        if report is not None:
            kind = "projection" if graph.unit_at(shortcut) is not None else "identity"
            report(FusionRecord(EXPAND_EPILOGUE, f"1x1+{kind}" + ("+relu" if final_relu else ""), _resolution(var)))


@tvm.transform.module_pass(opt_level=0, name="FuseBottleneck")
class FuseBottleneck:
    """Two fusions around SqueezeNext's low-rank pair:

    - reduce chain: conv1x1(stride s)[+bias][+ReLU] -> conv1x1[+bias][+ReLU] becomes one kernel that holds the
      C/2-channel intermediate only for the current 16-pixel chunk (stride 1: such chains, and the expand below,
      are built by `kernels.pixel_chunks`; `subsample_pointwise` makes the strided ones stride 1) or row tile
      (images smaller than a chunk, strided convs in a pipeline without that phase);
    - expand epilogue: [relu]([relu](conv1x1(y)[+bias]) + shortcut) becomes one kernel; the shortcut (identity or
      the projection's output) is read in the epilogue, so the C-channel expand result is never written.
      (TVM's FuseOps would merge this epilogue as well; doing it here gives the kernel the fused-chain
      schedule, and the official and third-party forms are recognised alike.)

    With the target's `l2_bytes`, a reduce pair on an image of few pixel chunks whose weights dominate is not fused
    (`_weights_bound_on_few_chunks`): its convs go over chunks one by one, the cores on output channels. With
    `vector_registers` too, such an expand is not fused where the generic conv takes it (`_left_to_the_generic_conv`).

    The cut sits where the block's tensors are narrowest (C/4 after the reduce pair, C/2 after the low-rank
    pair): larger kernels recompute the 3x1's halo rows through every earlier stage and compute their 1x1s
    in padded rows, and measured no faster (`benchmarks/fusion.py --granularity`, docs/performance.md).
    """

    def __init__(self, report: Reporter | None = None, l2_bytes: int | None = None,
                 vector_registers: int | None = None) -> None:
        self.report, self.l2_bytes, self.vector_registers = report, l2_bytes, vector_registers

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def plan(graph: ConvGraph) -> dict:
            plans: dict = {}
            _plan_epilogues(graph, plans, self.report, self.l2_bytes, self.vector_registers)
            _plan_reduce_chains(graph, plans, self.report, self.l2_bytes)
            return plans

        return rewrite_module(mod, plan)

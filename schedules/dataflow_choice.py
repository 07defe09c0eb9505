"""Per-layer choice between the output-stationary and weight-stationary conv schedules, from a simple
estimate of memory traffic; the choice and both estimates go into the `--explain` notes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernels.contract import fusion_pattern
from . import conv2d_output_stationary as output_stationary
from . import conv2d_weight_stationary as weight_stationary
from ._common import ConvShape, MachineKnobs, find_conv, machine_knobs
from .rule import ScheduleRule

if TYPE_CHECKING:
    import tvm
    from tvm import tirx

    from ..target import TargetSpec

# Relative cost of a cache line that comes from L2 instead of L1 (per vector load).
L2_PENALTY = 4.0


def estimate(shape: ConvShape, machine: MachineKnobs) -> dict[str, float]:
    """Estimated vector-load cost (L1 loads + L2_PENALTY x L2 lines) of each order with its default knobs.

    Both orders run the same register tile, so the inner loads are equal; they differ in what misses L1.
    OS re-reads the weight slice of a channel tile for every register tile once the slice outgrows L1, and
    otherwise all the weights once per output row when they outgrow L1 together. WS keeps a weight tile in
    L1 only while its row block streams past, so it re-reads all the weights once per row block, and it
    reads and writes the partial sums once per input-channel block."""
    os_knobs = output_stationary.default_knobs(shape, machine)
    ws_knobs = weight_stationary.default_knobs(shape, machine)
    lanes, fv, xi = os_knobs.lanes, os_knobs.f_vectors, os_knobs.x_inner
    window = shape.reduce_channels * shape.kernel_h * shape.kernel_w
    rows = shape.batch * shape.out_height
    tiles = rows * (shape.out_width // xi) * (shape.out_channels // (fv * lanes))
    inner = tiles * window * (fv + xi)
    line_floats = 16
    half_l1 = machine.l1d_bytes // 2
    weight_lines = window * shape.out_channels / line_floats
    weights_outgrow_l1 = weight_lines * 64 > half_l1
    weight_slice_lines = window * fv * lanes / line_floats
    if weight_slice_lines * 64 > half_l1:
        os_weight_lines = tiles * weight_slice_lines
    else:
        os_weight_lines = rows * weight_lines if weights_outgrow_l1 else 0.0
    os_cost = inner + L2_PENALTY * os_weight_lines
    rc_blocks = shape.reduce_channels // ws_knobs.rc_inner
    row_blocks = rows // ws_knobs.rows_per_task
    outputs = shape.batch * shape.out_channels * shape.out_height * shape.out_width
    psum_tile_bytes = ws_knobs.rows_per_task * shape.out_width * fv * lanes * 4
    psum_cost = (L2_PENALTY if psum_tile_bytes > half_l1 else 1.0) * 2 * outputs / lanes
    ws_weight_lines = row_blocks * weight_lines if weights_outgrow_l1 else 0.0
    ws_cost = inner + L2_PENALTY * ws_weight_lines + (rc_blocks - 1) * psum_cost
    return {"OS": float(os_cost), "WS": float(ws_cost)}


def choose(shape: ConvShape, machine: MachineKnobs) -> str:
    if weight_stationary.weights_bound(shape, machine):
        return "WS"  # with the cores on channel tiles: each streams its share of the weights once
    costs = estimate(shape, machine)
    return "WS" if costs["WS"] < costs["OS"] else "OS"  # ties go to OS: no partial-sum traffic at all


def apply(sch: "tvm.s_tir.Schedule", spec: "TargetSpec") -> str:
    shape = find_conv(sch.mod["main"])
    machine = machine_knobs(spec)
    costs = estimate(shape, machine)
    order = choose(shape, machine)
    family = output_stationary if order == "OS" else weight_stationary
    description = family.apply(sch, spec)
    return (f"{order} chosen (est. cost OS {costs['OS']:.3g} vs WS {costs['WS']:.3g}); "
            f"{shape.kernel_h}x{shape.kernel_w}/{shape.stride_h} {shape.reduce_channels}->{shape.out_channels}"
            f" @{shape.out_height}x{shape.out_width}: {description}")


def design_space(sch: "tvm.s_tir.Schedule") -> list["tvm.s_tir.Schedule"]:
    """Both families' spaces: one per loop order (OS channel-outer, OS column-outer, WS with the cores on row
    blocks, WS with the cores on channel tiles)."""
    return [*output_stationary.design_space(sch.copy()), weight_stationary.design_space(sch.copy()),
            weight_stationary.design_space(sch.copy(), channel_parallel=True)]


def applies(func: "tirx.PrimFunc", _spec: "TargetSpec") -> bool:
    """A single conv2d (with elementwise epilogues) that is not one of the fused kernels."""
    return fusion_pattern(func) is None and find_conv(func) is not None


RULE = ScheduleRule("conv2d-dataflow-choice", applies, apply, design_space)

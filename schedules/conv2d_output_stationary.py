"""Output-stationary conv2d (a family that `dataflow_choice` picks per layer): a tile of output columns x output-channel vectors stays in registers while the
whole reduction (input channels x kernel window) streams past it; the epilogue runs on that tile."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._common import SAMPLE, ConvKnobs, ConvShape, MachineKnobs, find_conv, finish_register_tile, \
    machine_knobs, prepare_conv, register_tile, split_channels, tile

if TYPE_CHECKING:
    import tvm

    from ..target import TargetSpec


def default_knobs(shape: ConvShape, machine: MachineKnobs) -> ConvKnobs:
    lanes, f_vectors, x_inner = register_tile(machine, shape.out_channels, shape.out_width,
                                              shape.reduce_channels * shape.kernel_h * shape.kernel_w)
    # Keep one channel tile's weights in L1 across the columns of a row when they fit; otherwise keep the
    # input row and sweep the channel tiles over it.
    weight_tile_bytes = shape.reduce_channels * shape.kernel_h * shape.kernel_w * f_vectors * lanes * 4
    return ConvKnobs(lanes, f_vectors, x_inner, channels_outer=weight_tile_bytes <= machine.l1d_bytes // 2,
                     parallel=shape.macs >= machine.parallel_min_macs)


def schedule(sch: "tvm.s_tir.Schedule", knobs: ConvKnobs) -> None:
    """(n, y)[parallel] > channel tile <> column tile > rc, ry, rx > columns[unroll], vectors[unroll], lanes[vec]."""
    p = prepare_conv(sch, knobs.lanes)
    n, f, y, x, rc, ry, rx = sch.get_loops(p.conv)
    tiles, vectors, lanes = split_channels(sch, f, knobs)
    columns, x_inner = tile(sch, x, knobs.x_inner, 16)
    outer = [tiles, columns] if knobs.channels_outer else [columns, tiles]
    sch.reorder(n, y, *outer, rc, ry, rx, x_inner, vectors, lanes)
    rows = sch.fuse(n, y)
    if knobs.parallel:
        sch.parallel(rows)
    if p.elementwise:
        # Bias, residual and ReLU on the tile in its [x, f] layout (one bias vector per channel vector, not
        # one broadcast per channel); the transposed NCHW write that follows is a pure copy.
        elementwise = p.epilogue
        p.epilogue = sch.cache_write(elementwise, 0, "global")
        sch.transform_layout(elementwise, ("write", 0), lambda n, f, y, x: (n, y, x, f))
        sch.transform_block_layout(elementwise, lambda n, f, y, x: (n, y, x, f))
        sch.reverse_compute_at(elementwise, outer[-1], preserve_unit_loops=True)
        *_, tile_columns, tile_channels = sch.get_loops(elementwise)
        channel_vectors, channel_lanes = sch.split(tile_channels, [None, knobs.lanes])
        sch.unroll(tile_columns)
        sch.unroll(channel_vectors)
        sch.vectorize(channel_lanes)
    sch.reverse_compute_at(p.epilogue, outer[-1], preserve_unit_loops=True)
    if p.pad is not None:
        sch.compute_at(p.pad, rows, preserve_unit_loops=True)
    finish_register_tile(sch, p, x_inner, vectors, lanes, rc, rows, knobs, vector_columns=False)


def describe(knobs: ConvKnobs) -> str:
    order = "f>x" if knobs.channels_outer else "x>f"
    cores = "parallel rows" if knobs.parallel else "one core"
    return f"OS, register tile {knobs.x_inner} cols x {knobs.f_vectors}x{knobs.lanes} ch, {order}, {cores}"


def apply(sch: "tvm.s_tir.Schedule", spec: "TargetSpec") -> str:
    knobs = default_knobs(find_conv(sch.mod["main"]), machine_knobs(spec))
    schedule(sch, knobs)
    return describe(knobs)


def design_space(sch: "tvm.s_tir.Schedule") -> list["tvm.s_tir.Schedule"]:
    """One space per loop order (channel tile outer / column tile outer) - a sampled loop order would need
    ReplayFunc - with the register tile and unroll sampled, so evolutionary search can mutate them."""
    shape = find_conv(sch.mod["main"])
    lanes = register_tile(machine_knobs(), shape.out_channels, shape.out_width)[0]
    spaces = []
    for channels_outer in (True, False):
        space = sch.copy()
        schedule(space, ConvKnobs(lanes, SAMPLE, SAMPLE, channels_outer=channels_outer, unroll_max_step=SAMPLE))
        spaces.append(space)
    return spaces


"""Weight-stationary conv2d (a family that `dataflow_choice` picks per layer): a weight tile (input-channel slice x kernel window x channel vectors) stays in
L1/registers while a block of output rows streams past it; partial sums accumulate in the output tile."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernels.common import weights_dominate

from ._common import SAMPLE, ConvKnobs, ConvShape, MachineKnobs, find_conv, finish_register_tile, \
    largest_divisor_at_most, machine_knobs, prepare_conv, register_tile, split_channels, tile

if TYPE_CHECKING:
    import tvm

    from ..target import TargetSpec


def weights_bound(shape: ConvShape, machine: MachineKnobs) -> bool:
    """Whether the weights dominate (`kernels.common.weights_dominate`): small images with many channels (ResNet's
    7x7 stage: 9.4 MB of weights for a 100 KB input). Split by rows, every core streams all of them from the
    last-level cache or memory; split by channel tiles (`channel_parallel`), each core streams its share once."""
    weight_bytes = 4 * shape.out_channels * shape.reduce_channels * shape.kernel_h * shape.kernel_w
    input_bytes = 4 * shape.batch * shape.reduce_channels * shape.out_height * shape.out_width
    return weights_dominate(weight_bytes, input_bytes, machine.l2_bytes)


def _tile_for_every_core(machine: MachineKnobs, out_channels: int, lanes: int, f_vectors: int) -> int:
    """The largest channel tile up to `f_vectors` vectors that makes whole rounds of the cores, if any."""
    vectors = out_channels // lanes
    return next((fv for fv in range(f_vectors, 0, -1) if vectors % fv == 0 and (vectors // fv) % machine.cores == 0),
                f_vectors)


def default_knobs(shape: ConvShape, machine: MachineKnobs) -> ConvKnobs:
    lanes, f_vectors, x_inner = register_tile(machine, shape.out_channels, shape.out_width,
                                              shape.reduce_channels * shape.kernel_h * shape.kernel_w)
    parallel = shape.macs >= machine.parallel_min_macs
    channel_parallel = parallel and weights_bound(shape, machine)
    if channel_parallel:
        f_vectors = _tile_for_every_core(machine, shape.out_channels, lanes, f_vectors)
    # The weight tile (rc_inner x KH x KW x channel tile) should take at most half of L1, leaving room for
    # the streaming input rows.
    per_channel = shape.kernel_h * shape.kernel_w * f_vectors * lanes * 4
    rc_inner = largest_divisor_at_most(shape.reduce_channels, max(1, machine.l1d_bytes // 2 // per_channel))
    # Enough row blocks for every core (x4 for balance), each block as large as possible; with the cores on
    # channel tiles, one block: each weight tile is read once for the whole image.
    rows = shape.out_height if channel_parallel else largest_divisor_at_most(
        shape.out_height, max(1, shape.out_height // (4 * machine.cores)))
    return ConvKnobs(lanes, f_vectors, x_inner, rc_inner=rc_inner, rows_per_task=rows, parallel=parallel,
                     channel_parallel=channel_parallel)


def schedule(sch: "tvm.s_tir.Schedule", knobs: ConvKnobs) -> None:
    """(n, row block)[parallel] > channel tile > rc outer > rows, column tile > rc inner, ry, rx >
    columns[unroll], vectors[unroll], lanes[vec]. The epilogue runs per channel tile of a row block.
    Channel-parallel: (n, channel tile)[parallel] > row block > rc outer > .., the padding computed once before."""
    p = prepare_conv(sch, knobs.lanes)
    n, f, y, x, rc, ry, rx = sch.get_loops(p.conv)
    tiles, vectors, lanes = split_channels(sch, f, knobs)
    row_blocks, rows = tile(sch, y, knobs.rows_per_task, 16)
    columns, x_inner = tile(sch, x, knobs.x_inner, 16)
    rc_outer, rc_inner = tile(sch, rc, knobs.rc_inner, 64)
    if knobs.channel_parallel:
        sch.reorder(n, tiles, row_blocks, rc_outer, rows, columns, rc_inner, ry, rx, x_inner, vectors, lanes)
        blocks, epilogue_at = sch.fuse(n, tiles), row_blocks
    else:
        sch.reorder(n, row_blocks, tiles, rc_outer, rows, columns, rc_inner, ry, rx, x_inner, vectors, lanes)
        blocks, epilogue_at = sch.fuse(n, row_blocks), tiles
    if knobs.parallel:
        sch.parallel(blocks)
    sch.reverse_compute_at(p.epilogue, epilogue_at, preserve_unit_loops=True)
    if p.pad is not None and not knobs.channel_parallel:
        sch.compute_at(p.pad, blocks, preserve_unit_loops=True)
    finish_register_tile(sch, p, x_inner, vectors, lanes, rc_outer, blocks, knobs, vector_columns=True)


def describe(knobs: ConvKnobs) -> str:
    cores = ", parallel channel tiles" if knobs.channel_parallel else "" if knobs.parallel else ", one core"
    return (f"WS, weight tile {knobs.rc_inner} in-ch x {knobs.f_vectors}x{knobs.lanes} out-ch, "
            f"{knobs.rows_per_task} rows/task, register tile {knobs.x_inner} cols" + cores)


def apply(sch: "tvm.s_tir.Schedule", spec: "TargetSpec") -> str:
    knobs = default_knobs(find_conv(sch.mod["main"]), machine_knobs(spec))
    schedule(sch, knobs)
    return describe(knobs)


def design_space(sch: "tvm.s_tir.Schedule", channel_parallel: bool = False) -> "tvm.s_tir.Schedule":
    """Register tile, weight tile depth, rows per parallel task and unroll, all sampled; the cores on row blocks,
    or on channel tiles (`channel_parallel`)."""
    shape = find_conv(sch.mod["main"])
    lanes = register_tile(machine_knobs(), shape.out_channels, shape.out_width)[0]
    schedule(sch, ConvKnobs(lanes, SAMPLE, SAMPLE, rc_inner=SAMPLE, rows_per_task=SAMPLE, unroll_max_step=SAMPLE,
                            channel_parallel=channel_parallel))
    return sch


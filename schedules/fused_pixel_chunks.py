"""Schedule family for the pixel-chunk kernels (`kernels/pixel_chunks.py`): a 1x1 reduce pair, or a
1x1 expand with its residual epilogue, computed over chunks of the flattened image.

The chunks run in parallel. In a chunk, every stage but the last is computed for all its channels into a
chunk-sized buffer (channels x PIXEL_CHUNK floats, which stays in L1); the last stage then runs tile by tile
of output channels, each tile's accumulators (channels x one chunk) in registers, and the output epilogue
(bias, ReLU, residual add) consumes the tile right away. The rc loop sits outside the tile's channels, so
each input vector is loaded once per tile and broadcast weights do the rest.

Where a chunk is one vector (AVX-512) and the image has an even number of chunks (`passes/pair_pixel_chunks.py`),
a tile takes two chunks: each weight broadcast then feeds two multiply-adds.

Default tile: as many output channels (dividing them) as the tile's accumulators hold tile columns (a chunk, or a
pair: 4 on NEON, 6 on AVX2 (12 of its 16 registers), 8 on AVX-512); with one vector per column (AVX-512 without pairs)
half that unless the reduction is long, and 4 channels on a reduction of at most 16 (per-shape timings:
docs/performance.md).
The default schedule of a one-stage kernel reads its weights laid out per register tile at compile time
(`_pack_weights_per_tile`; x86 only); a design space reads them in place (an index map cannot take a sampled tile).

A one-stage kernel whose weights dominate (SqueezeNet's classifier, 512 -> 1000 at 13x13; MobileNetV2's 7x7 1x1s)
splits its output channels between the cores instead, so that each core reads only its part of the weights, with
the reduction in blocks whose input stays in L1 for all the core's channel tiles, an NCHW input copied chunk-major
first, and (the default schedule) the weights laid out per register tile at compile time (`_split_channels`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..cpu import NEON
from ..kernels.contract import CONV_BLOCK, OUTPUT_BLOCK, PACK_BLOCK, pixel_chunked
from ..kernels.common import weights_dominate
from ..kernels.pixel_chunks import CHUNK_PAIR, PIXEL_CHUNK, pairs_pay
from .rule import ScheduleRule
from ._common import MachineKnobs, has_block, largest_divisor_at_most, machine_knobs, pack_at_compile_time
from .fused_conv_chain import runs_in_parallel, serial_and_parallel_spaces, stage_blocks

if TYPE_CHECKING:
    from tvm import s_tir

    from ..target import TargetSpec

SHORT_REDUCTION = 16  # input channels up to which a tile's init and epilogue outweigh its multiply-adds
LONG_REDUCTION = 256  # input channels from which one vector per chunk takes a tile of the whole budget
# Of the register file, what a `_split_channels` tile's accumulators take: its inputs are at most 4 vectors and
# its weights broadcast straight from memory, so more than the usual half (docs/performance.md)
SPLIT_ACCUMULATORS = 0.625
SIXTEEN_REGISTER_ACCUMULATORS = 12  # `_tile_accumulators` on a 16-register file


def _vectors_per_chunk(machine: MachineKnobs) -> int:
    return max(1, PIXEL_CHUNK // machine.lanes)


def _split_accumulators(machine: MachineKnobs) -> int:
    """The accumulators of a `_split_channels` register tile (SPLIT_ACCUMULATORS of the register file)."""
    return int(machine.vector_registers * SPLIT_ACCUMULATORS)


def _tile_accumulators(machine: MachineKnobs) -> int:
    """A register tile's accumulators: half the register file, but 12 of 16 (AVX2): beside one chunk's 2 input
    vectors and a broadcast, 6 channels a tile load fewer vectors per multiply-add than 4 (docs/performance.md)."""
    return SIXTEEN_REGISTER_ACCUMULATORS if machine.vector_registers == 16 else machine.accumulator_budget


def _default_channel_tile(out_channels: int, in_channels: int, spec: "TargetSpec | None", chunks: int) -> int:
    """Output channels per register tile of `chunks` chunks: the tile's accumulators in such columns. With one
    vector per column (AVX-512) a tile of the whole budget pays only on long reductions; short ones take 4
    channels."""
    machine = machine_knobs(spec)
    vectors = _vectors_per_chunk(machine) * chunks
    accumulators = _tile_accumulators(machine)
    if vectors == 1 and in_channels < LONG_REDUCTION:
        accumulators //= 2
    channels = accumulators // vectors
    if in_channels <= SHORT_REDUCTION:
        channels = min(channels, 4)
    return largest_divisor_at_most(out_channels, channels)


def _reduction_channels(sch: "s_tir.Schedule", conv) -> int:
    """Input channels a conv stage reduces over (its block's last iterator)."""
    return int(sch.get(conv).iter_vars[-1].dom.extent)


def _channel_tile(sch: "s_tir.Schedule", channels, conv, sampled: bool, spec: "TargetSpec | None", chunks: int):
    extent = int(sch.get(channels).extent)
    if sampled:
        return sch.sample_perfect_tile(channels, n=2, max_innermost_factor=min(16, extent))[1]
    return _default_channel_tile(extent, _reduction_channels(sch, conv), spec, chunks)


def _pairs_chunks(sch: "s_tir.Schedule", batch, chunk, parallel: bool, spec: "TargetSpec | None") -> bool:
    """Whether a register tile takes two chunks: one vector per chunk, an even number of chunks per image, and
    pairs that shorten the busiest core's work (`pairs_pay`)."""
    machine = machine_knobs(spec)
    chunks = int(sch.get(chunk).extent)
    return (machine.lanes == PIXEL_CHUNK and chunks % CHUNK_PAIR == 0
            and pairs_pay(int(sch.get(batch).extent), chunks, chunks, machine.cores if parallel else 1))


def _inputs_hoisted_and_spilled(sch: "s_tir.Schedule", conv, spec: "TargetSpec | None") -> bool:
    """LLVM's AArch64 backend unrolls a chunk's reduction over its input channels in full, and LICM then hoists
    the chunk's inputs (input channels x PIXEL_CHUNK / lanes vectors) out of the channel-tile loop: spilled when
    they take more than half the register file, the half the tile's accumulators and weights leave. x86's
    backend keeps that reduction a loop (and x86-avx512's inputs fit: hoisted, they save reloads)."""
    machine = machine_knobs(spec)
    return (machine.cpu_class == NEON.cpu_class
            and _reduction_channels(sch, conv) * PIXEL_CHUNK // machine.lanes > machine.vector_registers // 2)


def _weights_dominate(sch: "s_tir.Schedule", spec: "TargetSpec | None") -> bool:
    """A one-stage kernel whose weights dominate (`kernels.common.weights_dominate`)."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    data, weight = ArgInfo.from_prim_func(sch.mod["main"])[:2]
    weight_bytes, input_bytes = (4 * math.prod(int(d) for d in arg.shape) for arg in (weight, data))
    return weights_dominate(weight_bytes, input_bytes, machine_knobs(spec).l2_bytes)


def _accumulate(sch: "s_tir.Schedule", block, paired: bool) -> None:
    """(channels, chunks, lanes, rc) of a register tile -> rc, channels[unroll], chunks[unroll if paired],
    lanes[vector]: the accumulators stay in registers for the whole reduction; the init is split off before it."""
    _, channels, chunks, lanes, rc = sch.get_loops(block)[-5:]
    if paired:
        sch.reorder(rc, channels, chunks, lanes)
        sch.unroll(chunks)
    else:
        sch.reorder(rc, channels, lanes)
    sch.unroll(channels)
    sch.vectorize(lanes)
    sch.decompose_reduction(block, rc)


def _splits_channels(sch: "s_tir.Schedule", spec: "TargetSpec | None") -> bool:
    """Whether the cores split a kernel's output channels (`_split_channels`): one stage whose weights dominate,
    its channels divisible by the cores."""
    channels = sch.get_loops(sch.get_sblock(OUTPUT_BLOCK))[1]
    return (len(stage_blocks(sch)) == 1 and _weights_dominate(sch, spec)
            and int(sch.get(channels).extent) % machine_knobs(spec).cores == 0)


def _split_tile(out_channels: int, chunks: int, spec: "TargetSpec | None") -> tuple[int, int]:
    """(channels, chunks) of a `_split_channels` register tile: of the tiles of at most 4 vectors per channel that
    fit SPLIT_ACCUMULATORS of the register file, the one with the most multiply-adds per vector loaded (an input
    vector per chunk vector, a broadcast per channel). AVX-512: 5 x 4 chunks; AVX2: 5 x 1."""
    machine = machine_knobs(spec)
    vectors_per_chunk, accumulators = _vectors_per_chunk(machine), _split_accumulators(machine)

    def tile(tile_chunks: int) -> tuple[int, int]:
        return largest_divisor_at_most(out_channels, accumulators // (tile_chunks * vectors_per_chunk)), tile_chunks

    def fmas_per_load(shape: tuple[int, int]) -> float:
        columns = shape[1] * vectors_per_chunk
        return shape[0] * columns / (shape[0] + columns)

    candidates = [tile(d) for d in range(1, chunks + 1) if chunks % d == 0 and d * vectors_per_chunk <= 4]
    return max(candidates, key=lambda shape: (fmas_per_load(shape), shape[0] * shape[1]))


def _pack_weights_per_tile(sch: "s_tir.Schedule", conv, tile_channels: int) -> None:
    """Lay the weights out [out / tile, in, tile] at compile time, so a register tile reads them as one run and the
    tiles follow each other: read in place, a tile of 5 channels on a 160-channel reduction streams 5 rows of 640
    bytes, too short for the prefetchers to ramp up on."""
    weight_index = next(i for i, region in enumerate(sch.get(conv).reads) if region.source.name == "w0")
    pack_at_compile_time(sch, conv, weight_index,
                         lambda o, c, h, w: (o // tile_channels, h, w, c, o % tile_channels))


def _split_channels(sch: "s_tir.Schedule", spec: "TargetSpec | None", sampled: bool = False) -> str:
    """The cores split the output channels of a one-stage kernel, so each core reads its weights once.
    - An image of several register tiles of chunks: under each channel tile, all the chunks, a register tile of
      them at a time, over the whole reduction (the tile's weights stay in L1 for all of them).
    - An image of one register tile of chunks (7x7): the reduction in blocks whose input stays in L1 for all the
      core's channel tiles (half of L1: the tiles' weights stream beside it).
    An NCHW input is first copied chunk-major ([batch, chunk, channels, PIXEL_CHUNK]), so that a tile reads each
    chunk as one contiguous run instead of a line per input channel (hundreds of strided streams, fetched from L2
    again for every channel tile). The default schedule lays the weights out per tile at compile time
    (`_pack_weights_per_tile`). A design space samples the tile's channels, up to the accumulators `_split_tile`
    allows, and reads the weights in place (an index map cannot take a sampled tile)."""
    machine = machine_knobs(spec)
    conv = sch.get_sblock(f"{CONV_BLOCK}0")
    batch, channels, chunk, lanes, rc = sch.get_loops(conv)
    out_channels, chunks, in_channels = (int(sch.get(loop).extent) for loop in (channels, chunk, rc))
    tile_channels, tile_chunks = _split_tile(out_channels // machine.cores, chunks, spec)
    one_group = chunks <= tile_chunks
    reduction_block = largest_divisor_at_most(in_channels, machine.l1d_bytes // 2 // (
        tile_chunks * PIXEL_CHUNK * 4)) if one_group else in_channels
    core, per_core = sch.split(channels, [machine.cores, None])
    if sampled:
        columns = tile_chunks * _vectors_per_chunk(machine)
        tile_channels = sch.sample_perfect_tile(per_core, n=2, max_innermost_factor=max(
            1, _split_accumulators(machine) // columns))[1]
    if not sampled:  # each tile's weights one contiguous run, the tiles in order: one stream per core
        _pack_weights_per_tile(sch, conv, tile_channels)
    tiles, tile_channel = sch.split(per_core, [None, tile_channels])
    chunk_groups, tile_chunk = sch.split(chunk, [None, tile_chunks])
    blocks, block_channel = sch.split(rc, [None, reduction_block])
    if one_group:
        sch.reorder(core, batch, chunk_groups, blocks, tiles, block_channel, tile_channel, tile_chunk, lanes)
    else:
        sch.reorder(core, batch, tiles, chunk_groups, blocks, block_channel, tile_channel, tile_chunk, lanes)
    sch.parallel(core)
    sch.unroll(tile_channel)
    sch.unroll(tile_chunk)
    sch.vectorize(lanes)
    sch.vectorize(sch.get_loops(sch.decompose_reduction(conv, blocks))[-1])
    # the epilogue per group of chunks (under its channel tile when there are several), once the reduction is in
    out = sch.get_sblock(OUTPUT_BLOCK)
    sch.reverse_compute_at(out, chunk_groups, preserve_unit_loops=True)
    sch.vectorize(sch.get_loops(out)[-1])
    packed = has_block(sch, PACK_BLOCK)
    if packed:  # the whole input copied chunk-major once, both cores on its chunks
        pack = sch.get_sblock(PACK_BLOCK)
        sch.transform_layout(pack, ("write", 0), lambda b, c, k, lane: (b, k, c, lane))
        batch, channels, chunk, lanes = sch.get_loops(pack)
        sch.reorder(batch, chunk, channels, lanes)
        sch.parallel(sch.fuse(batch, chunk))
        sch.vectorize(lanes)
    return (f"1 stage in chunks of {PIXEL_CHUNK} pixels, the cores on output channels: register tiles of "
            f"{'sampled' if sampled else tile_channels} channels x {tile_chunks} chunks, reduction blocks of "
            f"{reduction_block}" + (", input copied chunk-major first" if packed else "")
            + ("" if sampled else ", weights laid out per tile"))


def schedule_pixel_chunks(sch: "s_tir.Schedule", spec: "TargetSpec | None",
                          sampled_parallel: bool | None = None) -> str:
    """Schedule a pointwise-chain kernel in place; returns a one-line description for --explain. With
    `sampled_parallel` set (a design space), every stage's channel tile is sampled and the chunks run in
    parallel or not as given; otherwise they run in parallel when the kernel has the target's
    `parallel_min_macs`."""
    sampled = sampled_parallel is not None
    parallel = runs_in_parallel(sch, spec, sampled_parallel)
    stages = len(stage_blocks(sch))
    out = sch.get_sblock(OUTPUT_BLOCK)
    batch, channels, chunk, lanes = sch.get_loops(out)
    last = sch.get_sblock(f"{CONV_BLOCK}{stages - 1}")
    if not sampled and parallel and _splits_channels(sch, spec):
        return _split_channels(sch, spec)
    paired = _pairs_chunks(sch, batch, chunk, parallel, spec)
    tile_chunks = CHUNK_PAIR if paired else 1
    if paired:  # a tile's two chunks inside its channels: (chunk pairs, channel tiles, channels, pair, lanes)
        chunk, pair = sch.split(chunk, [None, sch.sample_categorical([1, CHUNK_PAIR], [0.5, 0.5])
                                        if sampled else CHUNK_PAIR])
    sch.reorder(batch, chunk, channels, lanes)
    chunks = sch.fuse(batch, chunk)
    tile_channels = _channel_tile(sch, channels, last, sampled, spec, tile_chunks)
    # NEON keeps reading in place: there LLVM unrolls the short reductions in full, which packing undoes, and no
    # board here can time the difference
    weights_packed = stages == 1 and not sampled and machine_knobs(spec).cpu_class != NEON.cpu_class
    if weights_packed:
        _pack_weights_per_tile(sch, last, tile_channels)
    tiles, inner = sch.split(channels, [None, tile_channels])
    if paired:  # the tile's output epilogue unrolled over its channels too (a loop was slower: docs/performance.md)
        sch.unroll(inner)
        sch.unroll(pair)
    tile_per_iteration = stages == 1 and _inputs_hoisted_and_spilled(sch, last, spec)
    if tile_per_iteration:
        # one loop over (chunk, channel tile): the chunk's inputs are then reloaded per tile (from L1) instead
        # of being hoisted out of the tile loop by LLVM and spilled
        chunks = tiles = sch.fuse(chunks, tiles)
    if parallel:
        sch.parallel(chunks)
    sch.vectorize(lanes)
    # unit loops preserved: a tile of one channel keeps its channel loop, so the loop nest has one shape
    sch.compute_at(last, tiles, preserve_unit_loops=True)
    _accumulate(sch, last, paired)
    for index in range(stages - 2, -1, -1):  # consumers before their producers, as compute_at requires
        epilogue = sch.get_sblock(f"{CONV_BLOCK}{index}_epilogue")
        sch.compute_at(epilogue, chunks, preserve_unit_loops=True)
        conv = sch.get_sblock(f"{CONV_BLOCK}{index}")
        sch.compute_at(conv, chunks, preserve_unit_loops=True)
        channels = sch.get_loops(conv)[-4]
        stage_tiles, _ = sch.split(channels, [None, _channel_tile(sch, channels, conv, sampled, spec, tile_chunks)])
        _accumulate(sch, conv, paired)
        # Bias and ReLU per channel tile, straight from its accumulators: with the epilogue after all the
        # tiles, LLVM keeps every tile's accumulators live until then and spills them.
        sch.reverse_compute_at(epilogue, stage_tiles, preserve_unit_loops=True)
        *_, epilogue_channels, epilogue_chunks, epilogue_lanes = sch.get_loops(epilogue)
        sch.unroll(epilogue_channels)
        if paired:
            sch.unroll(epilogue_chunks)
        sch.vectorize(epilogue_lanes)
    packed = False
    if has_block(sch, PACK_BLOCK):
        pack = sch.get_sblock(PACK_BLOCK)
        if tile_per_iteration:  # an iteration per channel tile would copy the chunk once per tile: read in place
            sch.compute_inline(pack)
        else:  # the chunk's input, copied contiguous once for all its channel tiles
            sch.compute_at(pack, chunks, preserve_unit_loops=True)
            sch.vectorize(sch.get_loops(pack)[-1])
            packed = True
    what = f"{stages} stages" if stages > 1 else "1 stage"
    return (f"{what} in chunks of {PIXEL_CHUNK} pixels" + (", two a tile" if paired else "")
            + (", input packed per chunk" if packed else "") + (", weights laid out per tile" if weights_packed else "")
            + (", parallel" if parallel else ""))


def pixel_chunks_design_space(sch: "s_tir.Schedule") -> list["s_tir.Schedule"]:
    """Chunks on one core or in parallel; every stage's channel tile sampled. A one-stage kernel whose weights
    dominate also gets the cores on output channels (`_split_channels`)."""
    spaces = serial_and_parallel_spaces(sch, schedule_pixel_chunks)
    if _splits_channels(sch, None):
        split = sch.copy()
        _split_channels(split, None, sampled=True)
        spaces.append(split)
    return spaces


RULE = ScheduleRule("fused_pixel_chunks", lambda func, _spec: pixel_chunked(func), schedule_pixel_chunks,
                    pixel_chunks_design_space)

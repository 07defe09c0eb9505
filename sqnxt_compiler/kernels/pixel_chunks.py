"""A chain of 1x1 stride-1 convs computed over chunks of the flattened image.

A 1x1 conv does not care where a pixel sits in its row, and in NCHW the H*W pixels of a channel are
contiguous, so such a chain is a small matrix product per stage, out[o, p] = sum_c w[o, c] * in[c, p],
over the pixels p of the image taken as one flat row. The kernel walks those pixels in chunks of
PIXEL_CHUNK (whole vectors); every stage of the chain is computed for a chunk before the next chunk starts.

- No row padding: the row kernels of `conv_chain` compute 55-wide rows as 64 columns and 28-wide rows as 32.
  Here only the last chunk of the image is partial.
- The last chunk is moved back to end at the last pixel, so it overlaps the chunk before it and writes
  some outputs a second time, with the same values (the same instructions on the same inputs, so bit for
  bit, even when the two chunks run on different cores). No chunk then has a ragged tail for TIR to
  predicate: a predicated chunk loop is scalarized.
- The flat pixel index is mapped back to (row, column) for every read and write of an image tensor; once
  TIR flattens the buffers, `(p // W) * W + p % W` simplifies back to `p`, so the loads and stores of a
  chunk stay contiguous vectors (no gathers).
- Any of the kernel's image tensors (data, residual, output) can be chunk-major instead of NCHW:
  [batch, chunk, channels, PIXEL_CHUNK], the chunks exactly as the kernel walks them (the last one ending at the
  last pixel, so its overlap holds some pixels twice, with the same values). A chunk of every channel is then
  one contiguous run: NCHW makes it one run per channel, H*W*4 bytes apart, which on images larger than L2 is more
  concurrent streams than the prefetchers follow (`passes/chunk_major_tensors.py` picks the tensors).
- With `chunk_group` g > 1 the image is walked in a multiple of g chunks, the last chunk repeated (its index
  clamps like the last one's): a schedule can then hold g whole chunks in a register tile without a ragged group
  (`passes/pair_pixel_chunks.py`).
- On long reductions (>= PACK_MIN_CHANNELS input channels) and small images (<= PACK_MAX_PIXELS) PACK_BLOCK
  first copies an NCHW input's chunk into one contiguous buffer: read in place, each channel's 64 bytes lie
  H*W*4 bytes apart and every channel tile reads them again (10-30% faster on such kernels; slower on short
  reductions over large images: docs/performance.md). A chunk-major input is contiguous already.

The kernel is written with TVMScript's IR builder rather than TE because the output block writes through
that index map (TE writes every output element exactly once, at its own index)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Callable, Collection, Sequence

from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from .common import ZERO, epilogue_value, grid_block
from .contract import (CHAIN_SPEC_ATTR, CONV_BLOCK, FUSION_ATTR, MACS_ATTR, OPAQUE_PATTERN, OUTPUT_BLOCK,
                       PACK_BLOCK, PIXEL_CHUNK_ATTR)
from .conv_chain import ChainStage

PIXEL_CHUNK = 16  # pixels per chunk: one AVX-512 vector of fp32, two AVX2 vectors, four NEON vectors
CHUNK_PAIR = 2  # chunks a register tile takes where a chunk is one vector
PAIRED_CHUNK_TIME = 0.9  # a chunk's time in a tile of two, against alone (AVX-512; docs/performance.md)
PACK_MIN_CHANNELS = 128
PACK_MAX_PIXELS = 196  # 14x14


def is_pointwise_chain(data_shape: Sequence[int], stages: Sequence[ChainStage]) -> bool:
    """True when every stage is a 1x1 stride-1 conv without padding and the image has a whole chunk."""
    return int(data_shape[2]) * int(data_shape[3]) >= PIXEL_CHUNK and all(
        stage.kernel == (1, 1) and stage.strides == (1, 1) and not any(stage.padding) for stage in stages)


def packs_input(channels: int, pixels: int) -> bool:
    """Whether the kernel copies each chunk's input contiguous (PACK_BLOCK) before its first stage."""
    return channels >= PACK_MIN_CHANNELS or pixels <= PACK_MAX_PIXELS


def image_chunks(pixels: int, chunk_group: int = 1) -> int:
    """Chunks a kernel walks over an image of `pixels`: enough to cover it, rounded up to a multiple of the group."""
    chunks = -(-pixels // PIXEL_CHUNK)
    return -(-chunks // chunk_group) * chunk_group


def pairs_pay(batch: int, paired_chunks: int, single_chunks: int, cores: int) -> bool:
    """Whether tiles of two chunks, over `paired_chunks` per image (a multiple of CHUNK_PAIR), shorten the busiest
    core's work against single chunks over `single_chunks`. 14x14 on 2 cores, batch 1: 7 pairs put 4 on one core,
    8 chunks' work, where 13 single chunks put 7."""
    pairs = -(-batch * paired_chunks // CHUNK_PAIR // cores) * CHUNK_PAIR
    return pairs * PAIRED_CHUNK_TIME < -(-batch * single_chunks // cores)


def chunk_major_shape(shape: Sequence[int], chunk_group: int = 1) -> tuple[int, int, int, int]:
    """The chunk-major shape [batch, chunk, channels, PIXEL_CHUNK] of an NCHW image tensor's shape."""
    batch, channels, height, width = (int(d) for d in shape)
    return batch, image_chunks(height * width, chunk_group), channels, PIXEL_CHUNK


def chain_from_spec(func: tirx.PrimFunc) -> dict:
    """The keyword arguments `pointwise_chain_kernel` built `func` from (CHAIN_SPEC_ATTR), to rebuild it."""
    spec = json.loads(str(func.attrs[CHAIN_SPEC_ATTR]))
    spec["stages"] = [ChainStage(**{**stage, "kernel": tuple(stage["kernel"]), "strides": tuple(stage["strides"]),
                                    "padding": tuple(stage["padding"])}) for stage in spec["stages"]]
    return spec


def _block(name: str, extents: Sequence[int], kinds: str, emit: Callable[..., None]) -> None:
    """A block over (batch, channel, chunk, lane[, rc]) with these extents; `emit(*block_vars)` writes its body."""
    grid_block(name, extents, kinds, ["b", "o", "k", "lane", "rc"][:len(extents)], emit)


def pointwise_chain_kernel(data_shape: Sequence[int], stages: Sequence[ChainStage], residual: bool,
                           final_relu: bool, pattern: str, chunk_major: Collection[str] = (),
                           chunk_group: int = 1) -> tirx.PrimFunc:
    """The same computation, arguments and block names as `conv_chain.conv_chain_kernel` (data, then per
    stage weight [and bias], then the residual; `sqnxt_conv<i>`, `sqnxt_conv<i>_epilogue`, `sqnxt_out`), with
    every intermediate laid out [batch, channels, chunk, PIXEL_CHUNK], and the packed input too (`packs_input`).
    The image tensors named in `chunk_major` ("data", "residual", "output") are chunk-major, the others NCHW.
    The chunks are a multiple of `chunk_group` (`image_chunks`). The kernel carries its arguments
    (CHAIN_SPEC_ATTR) so that a pass can rebuild it with other layouts or chunks."""
    spec = {"data_shape": [int(d) for d in data_shape], "stages": [asdict(stage) for stage in stages],
            "residual": residual, "final_relu": final_relu, "pattern": pattern, "chunk_group": chunk_group}
    batch, channels, height, width = (int(d) for d in data_shape)
    pixels = height * width
    chunks = image_chunks(pixels, chunk_group)

    def image_index(chunk, lane) -> tuple:
        """(row, column) of a chunk's lane; the last chunk (and any after it) ends at the last pixel."""
        flat = tirx.min(chunk * PIXEL_CHUNK, pixels - PIXEL_CHUNK) + lane
        return tirx.floordiv(flat, width), tirx.floormod(flat, width)

    def image_tensor(name: str, shape: tuple) -> tuple:
        """The argument `name` over an NCHW image `shape`, and its index of (batch, channel, chunk, lane)."""
        if name in chunk_major:
            return (T.arg(name, T.buffer(chunk_major_shape(shape, chunk_group), "float32")),
                    lambda b, c, k, lane: (b, k, c, lane))
        return T.arg(name, T.buffer(shape, "float32")), lambda b, c, k, lane: (b, c, *image_index(k, lane))

    with IRBuilder() as builder:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            data, data_index = image_tensor("data", (batch, channels, height, width))
            params, in_channels = [], channels
            for index, stage in enumerate(stages):
                weight = T.arg(f"w{index}", T.buffer(
                    (stage.out_channels, in_channels // stage.groups, 1, 1), "float32"))
                bias = T.arg(f"b{index}", T.buffer((stage.out_channels,), "float32")) if stage.has_bias else None
                params.append((stage, in_channels, weight, bias))
                in_channels = stage.out_channels
            out_shape = (batch, in_channels, height, width)
            shortcut, shortcut_index = image_tensor("residual", out_shape) if residual else (None, None)
            output, output_index = image_tensor("output", out_shape)
            macs = batch * pixels * sum(s.out_channels * c // s.groups for s, c, _, _ in params)
            T.func_attr({FUSION_ATTR: pattern, MACS_ATTR: macs, "op_pattern": OPAQUE_PATTERN,
                         PIXEL_CHUNK_ATTR: PIXEL_CHUNK, CHAIN_SPEC_ATTR: json.dumps(spec), "tirx.noalias": True})
            with T.sblock("root"):
                source = lambda b, c, k, lane: data[data_index(b, c, k, lane)]  # noqa: E731
                if "data" not in chunk_major and packs_input(channels, pixels):
                    shape = (batch, channels, chunks, PIXEL_CHUNK)
                    packed = IRBuilder.name("packed", T.sblock_alloc_buffer(shape, "float32"))
                    _block(PACK_BLOCK, shape, "SSSS", lambda vb, vc, vk, vl: T.buffer_store(
                        packed, source(vb, vc, vk, vl), [vb, vc, vk, vl]))
                    source = lambda b, c, k, lane: packed[b, c, k, lane]  # noqa: E731
                for index, (stage, cin, weight, bias) in enumerate(params):
                    shape = (batch, stage.out_channels, chunks, PIXEL_CHUNK)
                    conv = _accumulate(f"{CONV_BLOCK}{index}", shape, stage, cin, weight, source)
                    if index + 1 == len(stages):
                        break
                    activated = _activated(f"{CONV_BLOCK}{index}_epilogue", conv, bias, stage)
                    source = lambda b, c, k, lane, a=activated: a[b, c, k, lane]  # noqa: E731 - next stage's input

                def store_output(vb, vo, vk, vl):
                    value = epilogue_value(conv[vb, vo, vk, vl], bias, vo, stage.relu,
                                           None if shortcut is None else shortcut[shortcut_index(vb, vo, vk, vl)],
                                           final_relu, stage.relu_max)
                    T.buffer_store(output, value, list(output_index(vb, vo, vk, vl)))

                _block(OUTPUT_BLOCK, shape, "SSSS", store_output)
    return builder.get()


def _accumulate(name: str, shape: tuple, stage: ChainStage, in_channels: int, weight, source: Callable):
    """The reduction block `name`: [batch, out channels, chunk, lane] accumulators of `source` x `weight`."""
    cin_per_group, out_per_group = in_channels // stage.groups, stage.out_channels // stage.groups
    acc = IRBuilder.name(f"{name}_acc", T.sblock_alloc_buffer(shape, "float32"))

    def emit(vb, vo, vk, vl, vrc):
        c = vrc if stage.groups == 1 else vo // out_per_group * cin_per_group + vrc
        with T.init():
            T.buffer_store(acc, ZERO, [vb, vo, vk, vl])
        T.buffer_store(acc, acc[vb, vo, vk, vl] + source(vb, c, vk, vl) * weight[vo, vrc, 0, 0], [vb, vo, vk, vl])

    _block(name, (*shape, cin_per_group), "SSSSR", emit)
    return acc


def _activated(name: str, conv, bias, stage: ChainStage):
    """The elementwise block `name` between two stages: [stage's ReLU](conv + bias), chunk-shaped like `conv`."""
    shape = tuple(int(d) for d in conv.shape)
    activated = IRBuilder.name(f"{name}_out", T.sblock_alloc_buffer(shape, "float32"))

    def emit(vb, vo, vk, vl):
        T.buffer_store(activated, epilogue_value(conv[vb, vo, vk, vl], bias, vo, stage.relu, relu_max=stage.relu_max),
                       [vb, vo, vk, vl])

    _block(name, shape, "SSSS", emit)
    return activated

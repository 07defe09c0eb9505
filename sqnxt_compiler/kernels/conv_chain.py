"""The row kernel of a fused conv chain: conv stage after stage, each at whole-vector row widths."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import tvm
from tvm import te, tirx

from .common import epilogue_value
from .contract import CONV_BLOCK, FUSION_ATTR, MACS_ATTR, OPAQUE_PATTERN, OUTPUT_BLOCK


@dataclass(frozen=True)
class ChainStage:
    """One conv of a fused chain, without its arrays (the arrays become kernel arguments)."""

    out_channels: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    groups: int
    has_bias: bool
    relu: bool
    relu_max: float | None = None  # the ReLU's upper clip (6 for ReLU6), None for a plain ReLU


def padded_width(width: int) -> int:
    """The width a stage is computed at inside the kernel: whole vectors of 16 floats (8 for narrow rows),
    so the schedule vectorizes rows without a ragged tail; the extra columns are never read as data."""
    multiple = 16 if width > 8 else 8
    return -(-width // multiple) * multiple


def _row_margins(data_height: int, stages: Sequence[ChainStage]) -> list[tuple[int, int]]:
    """Per stage, the rows computed above and below its real output so that the next stage reads it
    without clipping at the image border (those rows are zero: they are the next stage's padding).
    Unclipped reads keep each row tile's intermediate region a constant size, which is what lets TIR
    shrink the intermediate buffers to one tile (clipped, they stay full-size).

    With a halo (a later stage is 3 rows tall), row tiles must divide the rows the last stage computes,
    so an odd height gets one extra row at the bottom of the last stage (never written out): 55 rows
    allow tiles of 1, 5 or 11 rows, i.e. 5 tiles on 2 cores (3:2); 56 allow 4 tiles of 14."""
    heights = [data_height]
    for stage in stages:
        kh, sh = stage.kernel[0], stage.strides[0]
        heights.append((heights[-1] + stage.padding[0] + stage.padding[2] - kh) // sh + 1)
    halo = sum(stage.kernel[0] - 1 for stage in stages[1:])
    margins = [(0, 0)] * (len(stages) - 1) + [(0, heights[-1] % 2 if halo else 0)]
    for i in range(len(stages) - 1, 0, -1):
        (top, bottom), stage = margins[i], stages[i]
        kh, sh = stage.kernel[0], stage.strides[0]
        margins[i - 1] = (top * sh + stage.padding[0],
                          max(0, (heights[i + 1] + bottom - 1) * sh + kh - stage.padding[0] - heights[i]))
    return margins


def _conv_te(data: te.Tensor, width: int, height: int, weight: te.Tensor, stage: ChainStage,
             margins: tuple[int, int], input_offset: int | None, name: str) -> tuple[te.Tensor, int, int]:
    """The conv of `data` over its real rows plus `margins`, at `padded_width` columns; returns it with
    its real output height and width. `data`'s first `width` columns and `height` rows are real: all its rows
    (`input_offset` None: the kernel's input, padded here) or already hold this stage's vertical padding
    as margin rows (`input_offset` rows above the real ones). A `<name>_pad` stage supplies zeros for the
    horizontal padding and the extra columns (and the vertical padding of the kernel's input)."""
    n, cin, _, _ = (int(d) for d in data.shape)
    top, left, bottom, right = stage.padding
    kh, kw = stage.kernel
    sh, sw = stage.strides
    out_h = (height + top + bottom - kh) // sh + 1
    out_w = (width + left + right - kw) // sw + 1
    computed_w = padded_width(out_w)
    above, below = margins
    computed_h = out_h + above + below
    offset = above * sh + top  # padded-input row of computed output row 0 is (0 - above) * sh - top
    source = data

    def pad_value(b, c, y, x):
        inside_columns = tvm.tirx.all(x >= left, x < width + left)
        if input_offset is None:
            inside = tvm.tirx.all(y >= offset, y < height + offset, inside_columns)
            return te.if_then_else(inside, source[b, c, y - offset, x - left], tvm.tirx.const(0.0, "float32"))
        return te.if_then_else(inside_columns, source[b, c, y + input_offset - offset, x - left],
                               tvm.tirx.const(0.0, "float32"))

    padded = te.compute((n, cin, (computed_h - 1) * sh + kh, (computed_w - 1) * sw + kw), pad_value,
                        name=f"{name}_pad")
    cin_per_group = cin // stage.groups
    out_per_group = stage.out_channels // stage.groups
    rc = te.reduce_axis((0, cin_per_group), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def channel(o):
        return rc if stage.groups == 1 else o // out_per_group * cin_per_group + rc

    conv = te.compute(
        (n, stage.out_channels, computed_h, computed_w),
        lambda b, o, y, x: te.sum(padded[b, channel(o), y * sh + ry, x * sw + rx] * weight[o, rc, ry, rx],
                                  axis=[rc, ry, rx]),
        name=name)
    return conv, out_h, out_w


def _epilogue(conv: te.Tensor, bias: te.Tensor | None, stage: ChainStage, name: str, width: int,
              residual: te.Tensor | None = None, final_relu: bool = False,
              rows: tuple[int, int] | None = None, height: int | None = None) -> te.Tensor:
    """[final_relu]([stage's ReLU](conv + bias) [+ residual]) over the first `width` columns (and the first
    `height` rows, default all); with `rows` (first real row, real row count) the margin rows outside them
    are zero."""

    def value(b, o, y, x):
        v = epilogue_value(conv[b, o, y, x], bias, o, stage.relu,
                           None if residual is None else residual[b, o, y, x], final_relu, stage.relu_max)
        if rows is not None and int(conv.shape[2]) != rows[1]:
            v = te.if_then_else(tvm.tirx.all(y >= rows[0], y < rows[0] + rows[1]), v,
                                tvm.tirx.const(0.0, "float32"))
        return v

    return te.compute((*conv.shape[:2], conv.shape[2] if height is None else height, width), value, name=name)


def conv_chain_kernel(data_shape: Sequence[int], stages: Sequence[ChainStage], residual: bool,
                      final_relu: bool, pattern: str) -> tirx.PrimFunc:
    """One PrimFunc computing conv stage after stage; arguments: data, then per stage weight [and bias],
    then the residual when `residual` (added after the last stage's own ReLU, before `final_relu`).
    Blocks: `sqnxt_conv<i>` (reduction, at `padded_width` columns and with `_row_margins`),
    `sqnxt_conv<i>_pad`, `sqnxt_conv<i>_epilogue` between stages, `sqnxt_out` last. Nothing between the
    stages leaves the kernel; the schedule decides how much of each intermediate is live at once."""
    x = te.placeholder(tuple(data_shape), "float32", name="data")
    args, current, width, input_offset = [x], x, int(data_shape[3]), None
    height = int(data_shape[2])
    margins = _row_margins(height, stages)
    macs = 0
    for index, stage in enumerate(stages):
        cin_per_group = int(current.shape[1]) // stage.groups
        weight = te.placeholder((stage.out_channels, cin_per_group, *stage.kernel), "float32", name=f"w{index}")
        bias = te.placeholder((stage.out_channels,), "float32", name=f"b{index}") if stage.has_bias else None
        args += [weight] + ([bias] if bias is not None else [])
        conv, height, width = _conv_te(current, width, height, weight, stage, margins[index], input_offset,
                                       f"{CONV_BLOCK}{index}")
        macs += int(data_shape[0]) * stage.out_channels * height * width * cin_per_group * math.prod(stage.kernel)
        if index + 1 < len(stages):
            above = margins[index][0]
            current = _epilogue(conv, bias, stage, f"{CONV_BLOCK}{index}_epilogue", int(conv.shape[3]),
                                rows=(above, height))
            input_offset = above
            continue
        out_shape = (*conv.shape[:2], height, width)
        shortcut = te.placeholder(out_shape, "float32", name="residual") if residual else None
        args += [shortcut] if shortcut is not None else []
        current = _epilogue(conv, bias, stage, OUTPUT_BLOCK, width, shortcut, final_relu, height=height)
    func = te.create_prim_func([*args, current])
    return func.with_attrs({FUSION_ATTR: pattern, MACS_ATTR: macs, "op_pattern": OPAQUE_PATTERN})

"""Compute stride-2 stems (a 5x5 or 7x7 conv on the few input channels of an image) as polyphase Winograd, with
the max pool that follows them when there is one: over 4x4 tiles (`kernels/winograd_tiles.py`) when a vector
register holds a chunk of 16 column tiles (AVX-512), else along rows (`kernels/winograd.py`)."""

from __future__ import annotations

import tvm

from ..kernels.contract import WINOGRAD_STEM
from ..kernels.winograd import COLUMN_CHUNK, ROWS_PER_TILE, MaxPoolWindow, row_taps
from ..kernels.winograd_tiles import TILE_CHUNK
from ._conv_graph import (ConvGraph, ConvUnit, UnitRewrite, emit_winograd_rows, emit_winograd_tiles,
                          following_max_pool, rewrite_units)
from ._fusion_report import Reporter

KERNELS = (5, 7)  # F(4, 3) and F(4, 4): 6 and 7 transformed rows, the accuracy TVM's own Winograd accepts
MAX_IN_CHANNELS = 4  # an image's channels: the transforms are per input channel, the savings per output


def is_winograd_stem(unit: ConvUnit) -> bool:
    out_h, out_w = (int(unit.output.ty.shape[axis]) for axis in (2, 3))
    kernel = unit.kernel
    return (unit.strides == (2, 2) and kernel[0] == kernel[1] and kernel[0] in KERNELS and unit.groups == 1
            and int(unit.weight.shape[1]) <= MAX_IN_CHANNELS and out_h >= ROWS_PER_TILE and out_w >= COLUMN_CHUNK)


def _describe(unit: ConvUnit, pool: MaxPoolWindow | None, tiles: bool) -> str:
    r = row_taps(unit.kernel[0])
    winograd = f"F({ROWS_PER_TILE}x{ROWS_PER_TILE},{r}x{r}) tiles" if tiles else f"F({ROWS_PER_TILE},{r}) rows"
    text = f"{unit.kernel[0]}x{unit.kernel[1]}/s2, {winograd}"
    return text if pool is None else f"{text} + max pool {pool.kernel}x{pool.kernel}/{pool.stride}"


@tvm.transform.module_pass(opt_level=0, name="WinogradStem")
class WinogradStem:
    """conv2d(KxK, stride 2, K in 5, 7, at most 4 input channels)[+bias][+ReLU][+max pool] becomes one call_tir,
    its weights transformed at compile time. With the pool, each row tile of the stem's result is pooled while
    in cache (the whole result, ~3 MB an image, never exists). `vector_lanes` (the target's float32 lanes) picks the
    kernel for a stem with its pool: Winograd over 4x4 tiles when a vector holds TILE_CHUNK column tiles, else
    along rows (with 8-lane vectors and 16 registers the tiles lost; docs/performance.md)."""

    def __init__(self, report: Reporter | None = None, vector_lanes: int = 0) -> None:
        self.report = report
        self.tiles_fit = vector_lanes >= TILE_CHUNK

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def rewrite(graph: ConvGraph, unit: ConvUnit) -> UnitRewrite | None:
            if not is_winograd_stem(unit):
                return None
            pool = following_max_pool(graph, unit)
            if pool is None:
                return UnitRewrite(unit.output, lambda rw: emit_winograd_rows(rw, unit, 2, WINOGRAD_STEM),
                                   _describe(unit, None, tiles=False))
            if self.tiles_fit:
                return UnitRewrite(pool[0], lambda rw: emit_winograd_tiles(rw, unit, pool),
                                   _describe(unit, pool[1], tiles=True))
            return UnitRewrite(pool[0], lambda rw: emit_winograd_rows(rw, unit, 2, WINOGRAD_STEM, pool),
                               _describe(unit, pool[1], tiles=False))

        return rewrite_units(mod, rewrite, WINOGRAD_STEM, self.report)

"""Choosing a tiling without simulating it: a closed-form cost per candidate, and the default tiling.

The closed form counts the same GEMM folds and DMA transfers the compiler would emit (tile shapes take
at most two sizes per dimension: full and remainder) and takes the busiest module as the latency, i.e.
it assumes perfect overlap. It ranks candidates in microseconds; `estimate` then gives exact cycles.
"""

from __future__ import annotations

import itertools

from .config import AccelConfig
from .dataflow import alu_cycles, gemm_cost
from .layer import LayerSpec
from .memory import dma_cycles
from .tiling import PARAM_BYTES, Tiling, check_tiling, clamp, greedy_tiling, input_window, tiling_space


def _sizes(extent: int, tile: int) -> list[tuple[int, int]]:
    """(tile size, how many tiles have it) along one dimension."""
    full, rest = divmod(extent, tile)
    return [(tile, full)] + ([(rest, 1)] if rest else [])


def analytic_cycles(layer: LayerSpec, config: AccelConfig, tiling: Tiling) -> int:
    t = clamp(tiling, layer)
    oh, ow = _sizes(layer.out_h, t.tile_oh), _sizes(layer.out_w, t.tile_ow)
    co, ci = _sizes(layer.cout_per_group, t.tile_cout), _sizes(layer.cin_per_group, t.tile_cin)
    pixel_tiles = layer.n * sum(n for _, n in oh) * sum(n for _, n in ow)
    cout_tiles, cin_tiles = sum(n for _, n in co), sum(n for _, n in ci)
    # Operand reuse under the compiler's loop order (see Tiling): a tile is reloaded whenever its key
    # changes between consecutive steps.
    inputs_reused = cin_tiles == 1 and (t.dataflow == "os" or pixel_tiles == 1)
    weights_reused = cin_tiles == 1 and (t.dataflow == "ws" or cout_tiles == 1)
    compute = store = loads = 0
    for (h, nh), (w, nw), (c, nc), (k, nk) in itertools.product(oh, ow, co, ci):
        count = layer.n * layer.groups * nh * nw * nc * nk
        compute += count * gemm_cost(t.dataflow, h * w, layer.kh * layer.kw * k, c, config.rows, config.cols,
                                     True).cycles
        if k == ci[-1][0]:  # last reduction slice: requantize and store the output tile
            compute += count // nk * alu_cycles(h * w * c, config.alu_lanes)
            store += count // nk * dma_cycles(h * w * c, config)
    for (h, nh), (w, nw), (k, nk) in itertools.product(oh, ow, ci):
        window = input_window(h, layer.stride[0], layer.kh) * input_window(w, layer.stride[1], layer.kw)
        count = layer.n * layer.groups * nh * nw * nk * (1 if inputs_reused else cout_tiles)
        loads += count * dma_cycles(window * k, config)
    for (c, nc), (k, nk) in itertools.product(co, ci):
        count = layer.groups * nc * nk * (1 if weights_reused else pixel_tiles)
        loads += count * dma_cycles(c * layer.kh * layer.kw * k, config)
    for c, nc in co:
        loads += layer.groups * nc * pixel_tiles * dma_cycles(c * PARAM_BYTES, config)
    return max(compute, loads, store)


def default_tiling(layer: LayerSpec, config: AccelConfig, dataflow: str = "ws") -> Tiling:
    """The tiling with the fewest analytic cycles in `tiling_space` for this dataflow (ties: fewer GEMM
    tiles), or the greedy fit when the space is empty. Deterministic; raises if nothing fits."""
    candidates = tiling_space(layer, config, (dataflow,))
    if not candidates:
        return greedy_tiling(layer, config, dataflow)
    best = min(candidates, key=lambda t: (analytic_cycles(layer, config, t),
                                          -t.tile_oh * t.tile_ow * t.tile_cout * t.tile_cin))
    return check_tiling(layer, config, best)




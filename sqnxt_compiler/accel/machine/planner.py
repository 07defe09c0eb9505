"""Choosing a tiling without simulating it: a closed-form cost per candidate, and the default tiling.

The closed form counts the same GEMM folds and DMA transfers the compiler would emit (tile shapes take
at most two sizes per dimension: full and remainder) and models the three modules as a pipeline: the
bottleneck module's busy time plus the parts of the first and last steps that cannot overlap it. It ranks candidates in
microseconds; `estimate` then gives exact cycles.
"""

from __future__ import annotations

import itertools

from ...errors import SqnxtError
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
    """Closed-form latency of the layer under `tiling` (see the module docstring)."""
    return analytic_breakdown(layer, config, tiling)["total"]


def analytic_breakdown(layer: LayerSpec, config: AccelConfig, tiling: Tiling) -> dict[str, int]:
    """Closed-form busy cycles: "gemm" (array), "compute" (array + ALU), "load", "store" and "total"."""
    t = clamp(tiling, layer)
    oh, ow = _sizes(layer.out_h, t.tile_oh), _sizes(layer.out_w, t.tile_ow)
    co, ci = _sizes(layer.cout_per_group, t.tile_cout), _sizes(layer.cin_per_group, t.tile_cin)
    pixel_tiles = layer.n * sum(n for _, n in oh) * sum(n for _, n in ow)
    cout_tiles, cin_tiles = sum(n for _, n in co), sum(n for _, n in ci)
    # Operand reuse under the compiler's loop order (see Tiling): a tile is reloaded whenever its key
    # changes between consecutive steps.
    inputs_reused = cin_tiles == 1 and (t.dataflow == "os" or pixel_tiles == 1)
    weights_reused = cin_tiles == 1 and (t.dataflow == "ws" or cout_tiles == 1)
    gemm = alu = store = loads = 0
    for (h, nh), (w, nw), (c, nc), (k, nk) in itertools.product(oh, ow, co, ci):
        count = layer.n * layer.groups * nh * nw * nc * nk
        gemm += count * gemm_cost(t.dataflow, h * w, layer.kh * layer.kw * k, c, config.rows, config.cols,
                                  True).cycles
        if k == ci[-1][0]:  # last reduction slice: requantize and store the output tile
            alu += count // nk * alu_cycles(h * w * c, config.alu_lanes)
            store += count // nk * dma_cycles(h * w * c, config)
            if layer.residual:
                loads += count // nk * dma_cycles(h * w * c, config)
    for (h, nh), (w, nw), (k, nk) in itertools.product(oh, ow, ci):
        window = input_window(h, layer.stride[0], layer.kh) * input_window(w, layer.stride[1], layer.kw)
        count = layer.n * layer.groups * nh * nw * nk * (1 if inputs_reused else cout_tiles)
        loads += count * dma_cycles(window * k, config)
    for (c, nc), (k, nk) in itertools.product(co, ci):
        count = layer.groups * nc * nk * (1 if weights_reused else pixel_tiles)
        loads += count * dma_cycles(c * layer.kh * layer.kw * k, config)
    params_reused = t.dataflow == "ws" or cout_tiles == 1   # the parameter key is (group, cout tile)
    for c, nc in co:
        count = layer.groups * nc * (1 if params_reused else pixel_tiles)
        loads += count * dma_cycles(c * PARAM_BYTES, config)
    # the first step's loads and the last tile's store cannot overlap with anything
    steps = layer.groups * pixel_tiles * cout_tiles * cin_tiles   # pixel_tiles counts images too
    out_tiles = steps // cin_tiles
    # a three-stage pipeline: whichever module is the bottleneck, the first step's load (or compute) and
    # the last step's compute (or store) stick out of it
    compute = gemm + alu
    first_load, step_compute, last_store = loads / steps, compute / steps, store / out_tiles
    total = round(max(first_load + compute + last_store, loads + step_compute + last_store,
                      first_load + step_compute + store))
    return {"gemm": gemm, "compute": compute, "load": loads, "store": store, "total": total}


OBJECTIVES = ("total", "gemm")


def default_tiling(layer: LayerSpec, config: AccelConfig, dataflow: str = "ws", objective: str = "total") -> Tiling:
    """The tiling of `tiling_space` for this dataflow with the fewest analytic cycles (ties: larger
    tiles), or the greedy fit when the space is empty. Deterministic; raises if nothing fits.
    objective "total" minimises the layer's latency (on small layers it accepts more array fills to
    shorten the load prologue and store epilogue); "gemm" minimises the array's own cycles."""
    if objective not in OBJECTIVES:
        raise SqnxtError(f"objective must be one of {', '.join(OBJECTIVES)}, not '{objective}'")
    candidates = tiling_space(layer, config, (dataflow,))
    if not candidates:
        return greedy_tiling(layer, config, dataflow)
    best = min(candidates, key=lambda t: (analytic_breakdown(layer, config, t)[objective],
                                          -t.tile_oh * t.tile_ow * t.tile_cout * t.tile_cin))
    return check_tiling(layer, config, best)




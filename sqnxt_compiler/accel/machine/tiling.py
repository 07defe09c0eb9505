"""The tuning knobs of one layer (dataflow + tile sizes), their buffer footprints and the search space."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ...errors import SqnxtError
from .config import AccelConfig
from .layer import LayerSpec

DATAFLOWS = ("ws", "os")
# Every tile is double-buffered (ping-pong slots), so loads/stores of one tile overlap compute on another.
SLOTS = 2
ACC_BYTES = 4          # int32 accumulator
PARAM_BYTES = 8        # int32 bias + int32 requantization multiplier per output channel


@dataclass(frozen=True)
class Tiling:
    """Knobs for one layer. Tiles cover `tile_oh x tile_ow` output pixels of one image, `tile_cout` output
    channels and `tile_cin` input channels of one group. Loop order follows the dataflow:
    WS: group > cout tile > pixel tile > cin tile (a weight tile is loaded once when tile_cin covers
    the group and reused across pixel tiles); OS: group > pixel tile > cout tile > cin tile (an input tile
    is reused across cout tiles)."""

    dataflow: str
    tile_oh: int
    tile_ow: int
    tile_cout: int
    tile_cin: int

    def __post_init__(self) -> None:
        if self.dataflow not in DATAFLOWS:
            raise SqnxtError(f"dataflow must be one of {', '.join(DATAFLOWS)}, not '{self.dataflow}'")
        for knob in ("tile_oh", "tile_ow", "tile_cout", "tile_cin"):
            if int(getattr(self, knob)) < 1:
                raise SqnxtError(f"{knob} must be >= 1, not {getattr(self, knob)}")

    def as_dict(self) -> dict[str, int | str]:
        return {"dataflow": self.dataflow, "tile_oh": self.tile_oh, "tile_ow": self.tile_ow,
                "tile_cout": self.tile_cout, "tile_cin": self.tile_cin}


@dataclass(frozen=True)
class Footprint:
    """Bytes one slot of each buffer needs, and micro-ops per GEMM."""

    input_bytes: int
    weight_bytes: int
    accumulator_bytes: int
    uops: int


def clamp(tiling: Tiling, layer: LayerSpec) -> Tiling:
    """Tiles never exceed the layer: a knob larger than its dimension means "the whole dimension"."""
    return Tiling(tiling.dataflow, min(tiling.tile_oh, layer.out_h), min(tiling.tile_ow, layer.out_w),
                  min(tiling.tile_cout, layer.cout_per_group), min(tiling.tile_cin, layer.cin_per_group))


def input_window(tile_out: int, stride: int, kernel: int) -> int:
    """Input rows (or columns) an output tile of `tile_out` rows reads."""
    return (tile_out - 1) * stride + kernel


def footprint(layer: LayerSpec, tiling: Tiling) -> Footprint:
    t = clamp(tiling, layer)
    rows = input_window(t.tile_oh, layer.stride[0], layer.kh)
    cols = input_window(t.tile_ow, layer.stride[1], layer.kw)
    return Footprint(
        input_bytes=rows * cols * t.tile_cin,
        weight_bytes=t.tile_cout * layer.kh * layer.kw * t.tile_cin,
        # partial sums, per-channel parameters and (fused merge) the residual tile, widened to int32
        accumulator_bytes=(t.tile_oh * t.tile_ow * t.tile_cout * ACC_BYTES * (2 if layer.residual else 1)
                           + t.tile_cout * PARAM_BYTES),
        # one micro-op per kernel tap and output row: VTA's GEMM micro-op loops over a row's pixels
        uops=layer.kh * layer.kw * t.tile_oh,
    )


def overflows(layer: LayerSpec, config: AccelConfig, tiling: Tiling) -> list[str]:
    """Why this tiling does not fit (empty when it fits)."""
    fp = footprint(layer, tiling)
    problems = []
    for buffer, need, have in (("input", fp.input_bytes, config.input_bytes),
                               ("weight", fp.weight_bytes, config.weight_bytes),
                               ("accumulator", fp.accumulator_bytes, config.accumulator_bytes)):
        if need * SLOTS > have:
            problems.append(f"{buffer} buffer needs {SLOTS} x {need} = {SLOTS * need} bytes, has {have}")
    if fp.uops > config.uop_entries:
        problems.append(f"GEMM needs {fp.uops} micro-ops, the micro-op cache holds {config.uop_entries}")
    return problems


def check_tiling(layer: LayerSpec, config: AccelConfig, tiling: Tiling) -> Tiling:
    """The clamped tiling, or a SqnxtError naming each overflowing buffer and the knob to shrink."""
    problems = overflows(layer, config, tiling)
    if problems:
        raise SqnxtError(f"tiling {tiling.as_dict()} of {layer.name} ({layer.describe()}) does not fit "
                         f"{config.name}: " + "; ".join(problems) + " (shrink the tile sizes, or use "
                         "default_tiling())")
    return clamp(tiling, layer)


def greedy_tiling(layer: LayerSpec, config: AccelConfig, dataflow: str = "ws") -> Tiling:
    """A deterministic tiling that fits: whole dimensions first (maximal reuse, fewest array fills), then
    halve what overflows - output channels for weights; for accumulators and inputs, output channels
    then rows then columns under WS, rows then columns then channels under OS; input channels last
    (splitting the reduction costs partial-sum traffic)."""
    t = {"tile_oh": layer.out_h, "tile_ow": layer.out_w, "tile_cout": layer.cout_per_group,
         "tile_cin": layer.cin_per_group}

    def problems() -> list[str]:
        return overflows(layer, config, Tiling(dataflow, **t))

    def shrink(knob: str, floor: int = 1) -> bool:
        if t[knob] <= floor:
            return False
        t[knob] = max(floor, (t[knob] + 1) // 2)
        return True

    while any("weight" in p for p in problems()):
        if not (shrink("tile_cout", config.cols) or shrink("tile_cin") or shrink("tile_cout")):
            break
    # WS pays its array fill once per fold of pixels, so it keeps pixel tiles long and narrows output
    # channels first; OS pays per reduction, so it keeps all output channels and shortens pixel tiles.
    order = (("tile_cout", config.cols), ("tile_oh", 1), ("tile_ow", 1)) if dataflow == "ws" else (
        ("tile_oh", 1), ("tile_ow", 1), ("tile_cout", config.cols))
    while problems():
        if not (any(shrink(knob, floor) for knob, floor in order) or shrink("tile_cin")
                or shrink("tile_cout")):
            break
    return check_tiling(layer, config, Tiling(dataflow, **t))


def _candidates(extent: int, quantum: int = 1) -> list[int]:
    """Powers of two times `quantum` below `extent`, and the extent itself."""
    values = {extent}
    size = quantum
    while size < extent:
        values.add(size)
        size *= 2
    return sorted(values)


def step_count(layer: LayerSpec, tiling: Tiling) -> int:
    """GEMM tiles (loop-nest steps) the tiling produces; the instruction count is about 2-4x this."""
    t = clamp(tiling, layer)
    return (layer.n * layer.groups * ceil_div(layer.out_h, t.tile_oh) * ceil_div(layer.out_w, t.tile_ow)
            * ceil_div(layer.cout_per_group, t.tile_cout) * ceil_div(layer.cin_per_group, t.tile_cin))


def ceil_div(a: int, b: int) -> int:
    """Integer ceil(a / b) for positive b."""
    return -(-a // b)


def knob_candidates(layer: LayerSpec, config: AccelConfig,
                    dataflows: tuple[str, ...] = DATAFLOWS) -> dict[str, list]:
    """The values each knob ranges over (before filtering): both dataflows, tile sizes from powers of two
    (output channels in multiples of the array width) plus the whole dimension."""
    return {"dataflow": list(dataflows), "tile_oh": _candidates(layer.out_h), "tile_ow": _candidates(layer.out_w),
            "tile_cout": _candidates(layer.cout_per_group, min(config.cols, layer.cout_per_group)),
            "tile_cin": _candidates(layer.cin_per_group)}


def tiling_space(layer: LayerSpec, config: AccelConfig, dataflows: tuple[str, ...] = DATAFLOWS,
                 max_steps: int = 4096) -> list[Tiling]:
    """Every tiling a tuner should try: the product of `knob_candidates`, keeping those that fit the
    buffers. Tiles that cannot fill the array (fewer pixels than rows, or a reduction shorter than the
    rows) and tilings of more than `max_steps` GEMM tiles are left out: they waste the array and cost the
    most to simulate."""
    pixels_needed = min(config.rows, layer.out_h * layer.out_w)
    reduction_needed = min(config.rows, layer.kh * layer.kw * layer.cin_per_group)
    knobs = knob_candidates(layer, config, dataflows)
    space = []
    for dataflow, oh, ow, cout, cin in itertools.product(*knobs.values()):
        tiling = Tiling(dataflow, oh, ow, cout, cin)
        if (min(oh, layer.out_h) * min(ow, layer.out_w) < pixels_needed
                or layer.kh * layer.kw * cin < reduction_needed or step_count(layer, tiling) > max_steps):
            continue
        if not overflows(layer, config, tiling):
            space.append(tiling)
    return space

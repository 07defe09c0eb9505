"""Shared by the fused-kernel schedule families: schedule a `sqnxt_compiler.kernels.conv_chain` kernel.

The kernel computes conv stage after stage; this schedule tiles the final output by rows, runs the row
tiles in parallel, and computes every earlier stage inside the tile (`compute_at`), so each intermediate
lives only as a (rows + halo) x width x channels buffer per thread (at most TILE_BYTES_BUDGET). Inside a stage,
a register tile of output channels x a whole row (vectorized along the width) accumulates in a local
buffer over input channels and kernel taps. Rows are whole vectors (`padded_width` in the kernel): a ragged
TIR-vectorized row is predicated and slow."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING


from ..kernels.contract import CONV_BLOCK, MACS_ATTR, OUTPUT_BLOCK

from ._common import has_block, machine_knobs

if TYPE_CHECKING:
    from tvm import s_tir

    from ..target import TargetSpec

# From the target's vector width and register count: a row chunk of 4 vectors (64 columns with AVX-512,
# 16 with NEON) and half the registers as accumulators, so a stage accumulates as many output channels as
# fit, e.g. 4 channels for 64-column rows and 16 for 16-column rows with AVX-512.
@dataclass(frozen=True)
class RegisterBudget:
    lanes: int  # fp32 lanes of one vector register
    accumulators: int  # vector registers for accumulators; the rest hold the input row and weights

    @property
    def row_chunk(self) -> int:
        """Columns of a register tile: 4 vectors, or 2 when only 8 accumulators fit (16 registers), so that a
        tile still holds 4 channels and each input vector feeds as many FMAs as each weight broadcast."""
        return (4 if self.accumulators >= 16 else 2) * self.lanes

    @staticmethod
    def of(spec: "TargetSpec | None") -> "RegisterBudget":
        """The conv families' lanes and accumulator budget (`MachineKnobs`), from the target file, or from
        the TVM target in scope for design spaces, which see no target file."""
        machine = machine_knobs(spec)
        return RegisterBudget(machine.lanes, machine.accumulator_budget)


# Per-thread intermediates of one row tile: the point of the fusion is that the intermediate exists only as
# a tile, also on ARM cores with 32 KB L1 and a shared 1 MB L2.
TILE_BYTES_BUDGET = 64 * 1024


def stage_blocks(sch: "s_tir.Schedule") -> list[tuple[str, ...]]:
    """Per stage, the blocks that exist among (epilogue, conv, pad), in consumer-to-producer order."""
    stages, index = [], 0
    while True:
        found = [name for suffix in ("_epilogue", "", "_pad")
                 if has_block(sch, name := f"{CONV_BLOCK}{index}{suffix}")]
        if f"{CONV_BLOCK}{index}" not in found:
            return stages
        stages.append(tuple(found))
        index += 1


def _buffer_shape(sch: "s_tir.Schedule", block_name: str) -> list[int]:
    return [int(d) for d in sch.get(sch.get_sblock(block_name)).writes[0].source.shape]


def _computed_rows(sch: "s_tir.Schedule", stages: list[tuple[str, ...]]) -> int:
    """Rows of the last stage: the output's, or one more (see `kernels.conv_chain._row_margins`)."""
    return _buffer_shape(sch, f"{CONV_BLOCK}{len(stages) - 1}")[2]


def _kernel_height(sch: "s_tir.Schedule", conv: str) -> int:
    return int(sch.get(sch.get_sblock(conv)).iter_vars[5].dom.extent)


def _fitting_row_tiles(sch: "s_tir.Schedule", stages: list[tuple[str, ...]]) -> tuple[list[int], int]:
    """Tile heights whose per-thread intermediates fit TILE_BYTES_BUDGET, and the halo rows per tile."""
    height = _computed_rows(sch, stages)
    halo = sum(_kernel_height(sch, f"{CONV_BLOCK}{i}") - 1 for i in range(1, len(stages)))
    intermediates = [_buffer_shape(sch, f"{CONV_BLOCK}{i}") for i in range(len(stages) - 1)]
    row_bytes = sum(4 * channels * width for _, channels, _, width in intermediates)
    # With a halo, a ragged last tile would read margin rows the kernel does not have; TIR then clips the
    # region and keeps that intermediate full-size, so such tiles must divide the rows the last stage
    # computes (made even by the kernel, see `kernels.conv_chain._row_margins`).
    fitting = [r for r in range(1, height + 1)
               if row_bytes * (r + halo) <= TILE_BYTES_BUDGET and (halo == 0 or height % r == 0)] or [1]
    return fitting, halo


def _row_tile(sch: "s_tir.Schedule", stages: list[tuple[str, ...]], cores: int) -> int:
    """Rows of final output per tile: minimises (rounds of tiles over the cores) x (rows + halo rows
    recomputed), among the fitting heights. On one core that can be the whole image, within the budget."""
    height = _computed_rows(sch, stages)
    cores = max(1, cores)
    fitting, halo = _fitting_row_tiles(sch, stages)

    def cost(rows: int) -> float:
        rounds = math.ceil(math.ceil(height / rows) / cores)
        return rounds * (rows + halo)

    return min(fitting, key=lambda r: (cost(r), -r))


def _register_tile(sch: "s_tir.Schedule", block, loops: list, budget: RegisterBudget,
                   sampled: bool = False) -> tuple:
    """Reorder a conv block's (o, y, x, rc, ry, rx) loops into (o_outer, y, x_outer, taps..., o_inner, x)
    and accumulate as many channels x a row chunk as `budget` holds (or a sampled number of channels, up to
    that), in a local buffer; returns (o_outer, y, accumulator)."""
    o, y, x, rc, ry, rx = loops
    width = int(sch.get(x).extent)  # a multiple of 16 (or 8), see `padded_width`
    chunk = next(c for c in (budget.row_chunk, 48, 32, 16, 8, width) if c <= budget.row_chunk and width % c == 0)
    channels = int(sch.get(o).extent)
    limit = max(1, budget.accumulators // max(1, chunk // budget.lanes))
    if sampled:
        tile = sch.sample_perfect_tile(o, n=2, max_innermost_factor=min(limit, channels))[1]
    else:
        tile = max(d for d in range(1, min(limit, channels) + 1) if channels % d == 0)
    oo, oi = sch.split(o, [None, tile])
    xo, x = sch.split(x, [None, chunk])
    sch.reorder(oo, y, xo, rc, ry, rx, oi, x)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, xo, preserve_unit_loops=True)
    sch.unroll(oi)
    sch.vectorize(x)
    sch.vectorize(sch.get_loops(acc)[-1])
    sch.decompose_reduction(block, rc)
    return oo, y, acc


def _vectorize_innermost(sch: "s_tir.Schedule", block) -> None:
    sch.vectorize(sch.get_loops(block)[-1])


def runs_in_parallel(sch: "s_tir.Schedule", spec: "TargetSpec | None", sampled_parallel: bool | None) -> bool:
    """A fused kernel's tiles run on all cores: as a design space says (`sampled_parallel`), else when the
    kernel has at least the target's `parallel_min_macs`."""
    if sampled_parallel is not None:
        return sampled_parallel
    return int(sch.mod["main"].attrs[MACS_ATTR]) >= int(spec.cpu.get("parallel_min_macs", 0))


def schedule_conv_chain(sch: "s_tir.Schedule", spec: "TargetSpec | None", sampled_parallel: bool | None = None) -> str:
    """Schedule a fused conv-chain kernel in place; returns a one-line description for --explain.

    The last conv is the anchor: its rows are split into tiles (run in parallel when the kernel has at
    least the target's `parallel_min_macs`, as the conv families do), every earlier stage is computed at the tile, and the output epilogue (bias, residual, ReLU) reads
    the accumulator row.

    With `sampled_parallel` set (a design space, which sees no target file), the row tile and every
    stage's channel tile are sampled (`sample_perfect_tile`, so evolutionary search can mutate them) and
    the tiles run in parallel or not as given."""
    stages = stage_blocks(sch)
    sampled = sampled_parallel is not None
    parallel = runs_in_parallel(sch, spec, sampled_parallel)
    if sampled:
        fitting, _ = _fitting_row_tiles(sch, stages)
        rows = sch.sample_perfect_tile(sch.get_loops(sch.get_sblock(f"{CONV_BLOCK}{len(stages) - 1}"))[2],
                                       n=2, max_innermost_factor=max(fitting))[1]
    else:
        rows = _row_tile(sch, stages, cores=int(spec.cpu.get("cores", 1)) if parallel else 1)
    last = sch.get_sblock(f"{CONV_BLOCK}{len(stages) - 1}")
    b, o, y, x, rc, ry, rx = sch.get_loops(last)
    yo, yi = sch.split(y, [None, rows])
    sch.reorder(b, yo, o, yi, x, rc, ry, rx)
    tile = sch.fuse(b, yo)
    if parallel:
        sch.parallel(tile)
    out = sch.get_sblock(OUTPUT_BLOCK)
    producers = [name for blocks in reversed(stages[:-1]) for name in blocks]
    if len(stages[-1]) > 1:  # the last stage's padding
        producers = [stages[-1][-1]] + producers
    for name in producers:  # consumers before their producers, as compute_at requires
        sch.compute_at(sch.get_sblock(name), tile, preserve_unit_loops=True)
    budget = RegisterBudget.of(spec)
    _, yi_loop, acc = _register_tile(sch, last, [o, yi, x, rc, ry, rx], budget, sampled)
    sch.reverse_compute_at(out, yi_loop, preserve_unit_loops=True)
    _vectorize_innermost(sch, out)
    for index, blocks in enumerate(stages[:-1]):
        for name in blocks:
            block = sch.get_sblock(name)
            if name == f"{CONV_BLOCK}{index}":
                _register_tile(sch, block, sch.get_loops(block)[2:], budget, sampled)
            else:
                _vectorize_innermost(sch, block)
    if len(stages[-1]) > 1:
        _vectorize_innermost(sch, sch.get_sblock(stages[-1][-1]))
    return f"{len(stages)} stages in row tiles of {rows}" + (", parallel" if parallel else "")


def serial_and_parallel_spaces(sch: "s_tir.Schedule", schedule) -> list["s_tir.Schedule"]:
    """A fused kernel's two design spaces: `schedule(space, None, sampled_parallel=...)` with its tiles on one
    core, and with them in parallel; the tiles are sampled in each."""
    spaces = []
    for parallel in (False, True):
        space = sch.copy()
        schedule(space, None, sampled_parallel=parallel)
        spaces.append(space)
    return spaces


def conv_chain_design_space(sch: "s_tir.Schedule") -> list["s_tir.Schedule"]:
    """Row tiles on one core or in parallel; row and channel tiles sampled."""
    return serial_and_parallel_spaces(sch, schedule_conv_chain)

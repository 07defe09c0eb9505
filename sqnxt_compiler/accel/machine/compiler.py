"""The per-layer compiler: tile a conv2d/dense layer for the buffers and emit the instruction stream.

Every step of the loop nest computes one GEMM tile. Its operands are loaded only when they differ from
what the buffer already holds (that is where WS reuses weights and OS reuses inputs), into alternating
ping-pong slots. Dependency tokens make the three modules overlap safely:

- a load step pops C2L (slot free) once two load steps are in flight, and pushes L2C (data ready);
- the step's GEMM pops L2C; the compute of load step j pushes C2L iff load step j + 2 will pop it;
- the first GEMM of output tile t pops S2C (accumulator slot free) for t >= 2; its ALU pass pushes C2S;
- the STORE of tile t pops C2S and pushes S2C for tile t + 2, or for FINISH after the last tile.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .config import AccelConfig
from .isa import Alu, AluOp, Buffer, Finish, Gemm, Instruction, Load, Program, Store
from .layer import LayerSpec, Requant
from .planner import default_tiling
from .tiling import PARAM_BYTES, SLOTS, Tiling, check_tiling, input_window


@dataclass(frozen=True)
class _Tile:
    """One output tile (image, group, output rows/cols, output channels) and its reduction slice."""

    image: int
    group: int
    row0: int
    rows: int
    col0: int
    cols: int
    co0: int
    couts: int
    ci0: int
    cins: int
    first: bool      # first reduction slice of this output tile
    last: bool


def _ranges(extent: int, tile: int) -> list[tuple[int, int]]:
    return [(start, min(tile, extent - start)) for start in range(0, extent, tile)]


def _steps(layer: LayerSpec, t: Tiling) -> list[_Tile]:
    """The loop nest in dataflow order (see Tiling's docstring)."""
    pixels = [(n, r, c) for n in range(layer.n) for r in _ranges(layer.out_h, t.tile_oh)
              for c in _ranges(layer.out_w, t.tile_ow)]
    couts = _ranges(layer.cout_per_group, t.tile_cout)
    cins = _ranges(layer.cin_per_group, t.tile_cin)
    steps = []
    for g in range(layer.groups):
        outer = itertools.product(couts, pixels) if t.dataflow == "ws" else (
            (co, px) for px in pixels for co in couts)
        for (co0, cos), (n, (r0, rs), (c0, cs)) in outer:
            for k, (ci0, cis) in enumerate(cins):
                steps.append(_Tile(n, g, r0, rs, c0, cs, co0, cos, ci0, cis, k == 0, k == len(cins) - 1))
    return steps


def requant_ops(requant: Requant, residual: bool) -> tuple[tuple[AluOp, int], ...]:
    """The fused ALU pass: bias, per-channel multiplier, residual, rounding shift, zero point, saturation,
    ReLU."""
    ops = [(AluOp.ADD_CHANNEL, 0), (AluOp.MUL_CHANNEL, 0)]
    if residual:
        ops.append((AluOp.ADD_RESIDUAL, requant.residual_multiplier))
    if requant.shift:
        ops += [(AluOp.ADD_IMM, 1 << (requant.shift - 1)), (AluOp.SHR_IMM, requant.shift)]
    if requant.zero_point:
        ops.append((AluOp.ADD_IMM, requant.zero_point))
    ops += [(AluOp.MIN_IMM, 127), (AluOp.MAX_IMM, requant.zero_point if requant.relu else -128)]
    return tuple(ops)


def _clipped(start: int, length: int, extent: int) -> int:
    return max(0, min(start + length, extent) - max(start, 0))


def _load(buffer: Buffer, slot: int, s: _Tile, layer: LayerSpec) -> Load:
    """The LOAD of one operand of step `s` into `slot`: input window (padding synthesised by the DMA),
    weight tile, per-channel parameters, or residual tile."""
    first_cout = s.group * layer.cout_per_group + s.co0
    if buffer is Buffer.INPUT:
        sh, sw = layer.stride
        rows, cols = input_window(s.rows, sh, layer.kh), input_window(s.cols, sw, layer.kw)
        row0, col0 = s.row0 * sh - layer.pad[0], s.col0 * sw - layer.pad[1]
        return Load(Buffer.INPUT, slot, image=s.image, row0=row0, col0=col0, rows=rows, cols=cols,
                    c0=s.group * layer.cin_per_group + s.ci0, channels=s.cins,
                    dram_bytes=_clipped(row0, rows, layer.h) * _clipped(col0, cols, layer.w) * s.cins)
    if buffer is Buffer.WEIGHT:
        return Load(Buffer.WEIGHT, slot, rows=layer.kh, cols=layer.kw, c0=first_cout, channels=s.couts,
                    cin0=s.ci0, cin=s.cins, dram_bytes=s.couts * layer.kh * layer.kw * s.cins)
    if buffer is Buffer.PARAM:
        return Load(Buffer.PARAM, slot, c0=first_cout, channels=s.couts, dram_bytes=s.couts * PARAM_BYTES)
    return Load(Buffer.RESIDUAL, slot, image=s.image, row0=s.row0, col0=s.col0, rows=s.rows, cols=s.cols,
                c0=first_cout, channels=s.couts, dram_bytes=s.rows * s.cols * s.couts)


def compile_layer(layer: LayerSpec, config: AccelConfig, tiling: Tiling | None = None,
                  requant: Requant | None = None) -> Program:
    """Compile one layer. `tiling` defaults to `default_tiling(layer, config, "ws")`; a tiling that
    overflows a buffer is refused with a SqnxtError. `requant` fixes the ALU immediates (shift, zero
    point, ReLU, residual multiplier); bias and multipliers are data, loaded at run time."""
    tiling = default_tiling(layer, config) if tiling is None else check_tiling(layer, config, tiling)
    requant = requant or Requant()
    alu_ops = requant_ops(requant, layer.residual)
    steps = _steps(layer, tiling)
    out_tiles = sum(s.last for s in steps)
    cog = layer.cout_per_group

    program: list[Instruction] = []
    held = {Buffer.INPUT: None, Buffer.WEIGHT: None, Buffer.PARAM: None}
    loads_into = {Buffer.INPUT: 0, Buffer.WEIGHT: 0, Buffer.PARAM: 0, Buffer.RESIDUAL: 0}
    load_step = 0
    compute_end_of_load_step: list[Instruction] = []
    tile_index = 0

    for s in steps:
        wanted = {
            Buffer.INPUT: (s.image, s.group, s.row0, s.col0, s.rows, s.cols, s.ci0),
            Buffer.WEIGHT: (s.group, s.co0, s.ci0),
            Buffer.PARAM: (s.group, s.co0),
        }
        loads = []
        for buffer, key in wanted.items():
            if held[buffer] != key:
                held[buffer] = key
                loads.append(_load(buffer, loads_into[buffer] % SLOTS, s, layer))
                loads_into[buffer] += 1
        if layer.residual and s.last:   # the merge operand of this output tile, for its ALU pass
            loads.append(_load(Buffer.RESIDUAL, loads_into[Buffer.RESIDUAL] % SLOTS, s, layer))
            loads_into[Buffer.RESIDUAL] += 1
        if loads:
            loads[0].deps.pop_next = load_step >= SLOTS
            loads[-1].deps.push_next = True
            program += loads

        acc_slot = tile_index % SLOTS
        gemm = Gemm((loads_into[Buffer.INPUT] - 1) % SLOTS, (loads_into[Buffer.WEIGHT] - 1) % SLOTS, acc_slot,
                    out_rows=s.rows, out_cols=s.cols, cout=s.couts, cin=s.cins, kh=layer.kh, kw=layer.kw,
                    stride=layer.stride, reset=s.first, dataflow=tiling.dataflow,
                    uops=layer.kh * layer.kw * s.rows)
        gemm.deps.pop_prev = bool(loads)
        gemm.deps.pop_next = s.first and tile_index >= SLOTS
        program.append(gemm)
        last_compute: Instruction = gemm
        if s.last:
            alu = Alu(acc_slot, elements=s.rows * s.cols * s.couts, ops=alu_ops,
                      param_slot=(loads_into[Buffer.PARAM] - 1) % SLOTS,
                      residual_slot=(loads_into[Buffer.RESIDUAL] - 1) % SLOTS)
            alu.deps.push_next = True
            program.append(alu)
            last_compute = alu
        if loads:
            compute_end_of_load_step.append(last_compute)
            load_step += 1
        if s.last:
            store = Store(acc_slot, s.image, s.row0, s.col0, s.rows, s.cols, s.group * cog + s.co0, s.couts)
            store.deps.pop_prev = True
            store.deps.push_prev = tile_index + SLOTS < out_tiles or tile_index == out_tiles - 1
            program.append(store)
            tile_index += 1

    # the compute of load step j frees its slots for load step j + SLOTS, if there is one
    for j, inst in enumerate(compute_end_of_load_step):
        inst.deps.push_prev = j + SLOTS < load_step
    finish = Finish()
    finish.deps.pop_next = True
    program.append(finish)
    return Program(layer, config, tiling, program, requant)

"""Traffic accounting and the energy model: what a program moves and computes, and what that costs.

Counted per instruction, independent of timing: DRAM bytes per operand (padding is not read), on-chip
buffer accesses (DMA fills, array reads, accumulator read-modify-writes, ALU passes, store reads), the most
bytes each buffer holds at once, MACs and register-file accesses. Energy is each count times its cost in
the config's EnergyTable (docs/accelerator.md, "Energy").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .config import EnergyTable
from .dataflow import gemm_instruction_cost
from .isa import Alu, AluOp, Buffer, Gemm, Load, Program, Store
from .tiling import ACC_BYTES

DRAM_OPERANDS = ("input", "weight", "param", "residual", "output")
BUFFERS = ("input", "weight", "accumulator")


@dataclass
class Traffic:
    macs: int
    rf_accesses: int
    dram_bytes: dict[str, int]         # read: input/weight/param/residual, written: output
    buffer_bytes: dict[str, int]       # on-chip accesses: input/weight/accumulator (reads + writes)
    buffer_peak_bytes: dict[str, int]  # most bytes resident at once (all slots), per buffer


def count_traffic(program: Program) -> Traffic:
    """The counts of the module docstring over `program`'s instructions."""
    config = program.config
    dram = defaultdict(int)
    onchip = defaultdict(int)
    slot_bytes = defaultdict(dict)   # buffer -> slot -> largest tile it ever held
    macs = rf_accesses = 0
    for inst in program.instructions:
        if isinstance(inst, Load):
            dram[inst.buffer.value] += inst.dram_bytes
            size = {Buffer.INPUT: inst.rows * inst.cols * inst.channels,
                    Buffer.WEIGHT: inst.channels * inst.rows * inst.cols * inst.cin,
                    Buffer.PARAM: inst.channels * 2 * ACC_BYTES,
                    Buffer.RESIDUAL: inst.rows * inst.cols * inst.channels * ACC_BYTES}[inst.buffer]
            where = inst.buffer.value if inst.buffer in (Buffer.INPUT, Buffer.WEIGHT) else "accumulator"
            onchip[where] += size                                  # DMA writes into the buffer
            _track(slot_bytes[where], (inst.buffer.value, inst.slot), size)
        elif isinstance(inst, Gemm):
            cost = gemm_instruction_cost(inst, config)
            macs += cost.macs
            rf_accesses += cost.rf_accesses
            onchip["input"] += cost.input_buffer_bytes
            onchip["weight"] += cost.weight_buffer_bytes
            onchip["accumulator"] += cost.acc_buffer_bytes
            _track(slot_bytes["accumulator"], ("acc", inst.acc_slot),
                   inst.out_rows * inst.out_cols * inst.cout * ACC_BYTES)
        elif isinstance(inst, Alu):
            reads = 2 if any(op is AluOp.ADD_RESIDUAL for op, _ in inst.ops) else 1
            onchip["accumulator"] += (reads + 1) * inst.elements * ACC_BYTES  # read(s), write back
        elif isinstance(inst, Store):
            dram["output"] += inst.rows * inst.cols * inst.channels
            onchip["accumulator"] += inst.rows * inst.cols * inst.channels * ACC_BYTES
    return Traffic(macs=macs, rf_accesses=rf_accesses,
                   dram_bytes={k: dram[k] for k in DRAM_OPERANDS},
                   buffer_bytes={k: onchip[k] for k in BUFFERS},
                   buffer_peak_bytes={k: sum(slot_bytes[k].values()) for k in BUFFERS})


def energy_pj(traffic: Traffic, energy: EnergyTable) -> dict[str, float]:
    """Picojoules per part: MACs, register-file accesses, on-chip buffer bytes, DRAM bytes."""
    return {"mac": traffic.macs * energy.mac_pj,
            "register_file": traffic.rf_accesses * energy.register_file_pj_per_access,
            "buffer": sum(traffic.buffer_bytes.values()) * energy.buffer_pj_per_byte,
            "dram": sum(traffic.dram_bytes.values()) * energy.dram_pj_per_byte}


def _track(slots: dict, key: tuple, size: int) -> None:
    slots[key] = max(slots.get(key, 0), size)

"""Per-layer figures: cycles per module and their overlap, utilization, buffer/DRAM traffic, energy."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

from .dataflow import gemm_cost
from .isa import Alu, AluOp, Buffer, Gemm, Load, Module, Program, Store
from .tiling import ACC_BYTES
from .timing import Timeline


@dataclass
class Report:
    layer: str
    config: str
    tiling: dict
    cycles: int                       # end of FINISH: the layer's latency
    load_cycles: int                  # busy cycles per module
    compute_cycles: int
    store_cycles: int
    gemm_cycles: int                  # the part of compute spent in the array (what SCALE-Sim models)
    alu_cycles: int
    macs: int
    array_macs_per_cycle: int
    clock_mhz: float
    instructions: dict[str, int]
    dram_bytes: dict[str, int]        # read: input/weight/param/residual, written: output
    buffer_bytes: dict[str, int]      # on-chip accesses: input/weight/accumulator (reads + writes)
    buffer_peak_bytes: dict[str, int]  # most bytes resident at once (all slots), per buffer
    buffer_capacity_bytes: dict[str, int]
    energy_pj: dict[str, float] = field(default_factory=dict)

    @property
    def overlap_cycles(self) -> int:
        """Module-busy cycles hidden under other modules (0 means fully serial)."""
        return self.load_cycles + self.compute_cycles + self.store_cycles - self.cycles

    @property
    def utilization(self) -> float:
        """MACs done / MACs the array could have done during the whole layer."""
        return self.macs / (self.cycles * self.array_macs_per_cycle) if self.cycles else 0.0

    @property
    def gemm_utilization(self) -> float:
        return self.macs / (self.gemm_cycles * self.array_macs_per_cycle) if self.gemm_cycles else 0.0

    @property
    def bound(self) -> str:
        busy = {"load": self.load_cycles, "compute": self.compute_cycles, "store": self.store_cycles}
        return max(busy, key=busy.get)

    @property
    def seconds(self) -> float:
        return self.cycles / (self.clock_mhz * 1e6)

    @property
    def total_energy_pj(self) -> float:
        return sum(self.energy_pj.values())

    @property
    def dram_total_bytes(self) -> int:
        return sum(self.dram_bytes.values())

    def as_dict(self) -> dict:
        data = asdict(self)
        for name in ("overlap_cycles", "utilization", "gemm_utilization", "bound", "seconds",
                     "total_energy_pj", "dram_total_bytes"):
            data[name] = getattr(self, name)
        return data

    def lines(self) -> list[str]:
        """Human-readable summary, one figure per line."""
        us = self.seconds * 1e6
        return [
            f"layer        {self.layer}",
            f"accelerator  {self.config} ({self.array_macs_per_cycle} MACs/cycle @ {self.clock_mhz:g} MHz)",
            "tiling       " + " ".join(f"{k}={v}" for k, v in self.tiling.items()),
            f"cycles       {self.cycles:,} ({us:,.1f} us), {self.bound}-bound",
            f"  load       {self.load_cycles:,}",
            f"  compute    {self.compute_cycles:,} (gemm {self.gemm_cycles:,}, alu {self.alu_cycles:,})",
            f"  store      {self.store_cycles:,}",
            f"  overlapped {self.overlap_cycles:,}",
            f"MACs         {self.macs:,}; utilization {self.utilization:.1%} (array busy {self.gemm_utilization:.1%})",
            "DRAM bytes   " + ", ".join(f"{k} {v:,}" for k, v in self.dram_bytes.items()),
            "buffer bytes " + ", ".join(f"{k} {v:,}" for k, v in self.buffer_bytes.items()),
            "buffer peak  " + ", ".join(f"{k} {self.buffer_peak_bytes[k]:,}/{self.buffer_capacity_bytes[k]:,}"
                                        for k in self.buffer_peak_bytes),
            f"energy       {self.total_energy_pj / 1e6:,.3f} uJ (" + ", ".join(
                f"{k} {v / 1e6:,.3f}" for k, v in self.energy_pj.items()) + ")",
            "instructions " + ", ".join(f"{k} {v}" for k, v in self.instructions.items()),
        ]


def build_report(program: Program, timeline: Timeline) -> Report:
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
            cost = gemm_cost(inst.dataflow, inst.out_rows * inst.out_cols, inst.kh * inst.kw * inst.cin,
                             inst.cout, config.rows, config.cols, inst.reset)
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
    energy = config.energy
    return Report(
        layer=program.layer.name, config=config.name, tiling=program.tiling.as_dict(),
        cycles=timeline.total_cycles, load_cycles=timeline.busy(Module.LOAD),
        compute_cycles=timeline.busy(Module.COMPUTE), store_cycles=timeline.busy(Module.STORE),
        gemm_cycles=_busy_of(program, timeline, Gemm), alu_cycles=_busy_of(program, timeline, Alu),
        macs=macs, array_macs_per_cycle=config.macs_per_cycle, clock_mhz=config.clock_mhz,
        instructions=program.counts(),
        dram_bytes={k: dram[k] for k in ("input", "weight", "param", "residual", "output")},
        buffer_bytes={k: onchip[k] for k in ("input", "weight", "accumulator")},
        buffer_peak_bytes={k: sum(slot_bytes[k].values()) for k in ("input", "weight", "accumulator")},
        buffer_capacity_bytes={"input": config.input_bytes, "weight": config.weight_bytes,
                               "accumulator": config.accumulator_bytes},
        energy_pj={"mac": macs * energy.mac_pj,
                   "register_file": rf_accesses * energy.register_file_pj_per_access,
                   "buffer": sum(onchip.values()) * energy.buffer_pj_per_byte,
                   "dram": sum(dram.values()) * energy.dram_pj_per_byte},
    )


def _track(slots: dict, key: tuple, size: int) -> None:
    slots[key] = max(slots.get(key, 0), size)


def _busy_of(program: Program, timeline: Timeline, kind: type) -> int:
    return int(sum(d for inst, d in zip(program.instructions, timeline.duration) if isinstance(inst, kind)))

"""The per-layer report: cycles per module and their overlap, utilization, and the traffic and energy
that energy.py counts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .energy import count_traffic, energy_pj
from .isa import Alu, Gemm, Module, Program
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
    traffic = count_traffic(program)
    return Report(
        layer=program.layer.name, config=config.name, tiling=program.tiling.as_dict(),
        cycles=timeline.total_cycles, load_cycles=timeline.busy(Module.LOAD),
        compute_cycles=timeline.busy(Module.COMPUTE), store_cycles=timeline.busy(Module.STORE),
        gemm_cycles=_busy_of(program, timeline, Gemm), alu_cycles=_busy_of(program, timeline, Alu),
        macs=traffic.macs, array_macs_per_cycle=config.macs_per_cycle, clock_mhz=config.clock_mhz,
        instructions=program.counts(), dram_bytes=traffic.dram_bytes, buffer_bytes=traffic.buffer_bytes,
        buffer_peak_bytes=traffic.buffer_peak_bytes,
        buffer_capacity_bytes={"input": config.input_bytes, "weight": config.weight_bytes,
                               "accumulator": config.accumulator_bytes},
        energy_pj=energy_pj(traffic, config.energy),
    )


def _busy_of(program: Program, timeline: Timeline, kind: type) -> int:
    return int(sum(d for inst, d in zip(program.instructions, timeline.duration) if isinstance(inst, kind)))

"""Cycle timing of a program: three in-order modules that overlap, synchronised by dependency tokens.

A fetch unit dispatches instructions in program order into the load/compute/store queues (each
`instruction_depth` deep; dispatch stalls while the target queue is full). A module starts its next
instruction when it is free and every token it pops has been pushed; it pushes tokens when it ends.
Because every token is pushed earlier in program order than it is popped (Program.check_tokens), one pass
in program order computes the exact schedule. All times are max/+ of durations, so shorter durations
(e.g. more DRAM bandwidth) can never delay anything.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ...errors import SqnxtError
from .config import AccelConfig
from .dataflow import alu_cycles, gemm_instruction_cost
from .isa import Alu, Gemm, Instruction, Load, Module, Program, Store, pops, pushes
from .memory import dma_cycles


def instruction_cycles(inst: Instruction, config: AccelConfig) -> int:
    """Duration of one instruction on its module (compute side: dataflow.py, memory side: memory.py)."""
    if isinstance(inst, (Load, Store)):
        size = inst.dram_bytes if isinstance(inst, Load) else inst.rows * inst.cols * inst.channels
        return dma_cycles(size, config)
    if isinstance(inst, Gemm):
        return gemm_instruction_cost(inst, config).cycles
    if isinstance(inst, Alu):
        return alu_cycles(inst.elements, config.alu_lanes)
    return 0


@dataclass
class Timeline:
    start: np.ndarray          # per instruction
    end: np.ndarray
    duration: np.ndarray
    module: np.ndarray         # Module value per instruction

    @property
    def total_cycles(self) -> int:
        return int(self.end.max(initial=0))

    def busy(self, module: Module) -> int:
        return int(self.duration[self.module == module].sum())


def schedule(program: Program, config: AccelConfig | None = None) -> Timeline:
    """Start/end cycle of every instruction. `config` defaults to the program's (pass another one to ask
    "what if the DRAM were faster" without recompiling: buffer sizes must not shrink)."""
    config = config or program.config
    count = len(program.instructions)
    start, end = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    duration = np.zeros(count, dtype=np.int64)
    modules = np.zeros(count, dtype=np.int8)
    free_at = {m: 0 for m in Module}
    queued = {m: deque() for m in Module}   # start times of the last `depth` instructions per queue
    tokens = {c: deque() for c in ("L2C", "C2L", "C2S", "S2C")}
    dispatched = 0
    depth = config.instruction_depth
    for i, inst in enumerate(program.instructions):
        module = inst.module
        queue = queued[module]
        if len(queue) == depth:             # wait until the oldest queued instruction has left the queue
            dispatched = max(dispatched, queue.popleft())
        ready = max(dispatched, free_at[module])
        for channel in pops(inst):
            if not tokens[channel]:
                raise SqnxtError(f"instruction {i} pops an empty {channel} token queue: {inst.describe()}")
            ready = max(ready, tokens[channel].popleft())
        cycles = instruction_cycles(inst, config)
        start[i], end[i], duration[i], modules[i] = ready, ready + cycles, cycles, module
        free_at[module] = ready + cycles
        queue.append(ready)
        for channel in pushes(inst):
            tokens[channel].append(ready + cycles)
    return Timeline(start, end, duration, modules)

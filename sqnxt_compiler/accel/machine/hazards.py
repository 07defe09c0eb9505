"""Race check of a schedule: do the dependency tokens really protect every buffer slot?

The functional simulator runs instructions in program order; the hardware runs three queues at once.
Both compute the same result only if, in the timed schedule, every read of a slot starts after the write
that produced its contents ended (read-after-write), and every write starts after all reads of the
previous contents ended (write-after-read). This module checks exactly that.
"""

from __future__ import annotations

from collections import defaultdict

from .isa import Alu, AluOp, Buffer, Gemm, Instruction, Load, Program, Store
from .timing import Timeline


def _accesses(inst: Instruction) -> tuple[list[tuple], list[tuple]]:
    """(slots read, slots written) by one instruction."""
    if isinstance(inst, Load):
        return [], [(inst.buffer.value, inst.slot)]
    if isinstance(inst, Gemm):
        acc = ("acc", inst.acc_slot)
        reads = [(Buffer.INPUT.value, inst.input_slot), (Buffer.WEIGHT.value, inst.weight_slot)]
        return reads + ([] if inst.reset else [acc]), [acc]
    if isinstance(inst, Alu):
        acc = ("acc", inst.acc_slot)
        residual = [(Buffer.RESIDUAL.value, inst.residual_slot)] if any(
            op is AluOp.ADD_RESIDUAL for op, _ in inst.ops) else []
        return [acc, (Buffer.PARAM.value, inst.param_slot)] + residual, [acc]
    if isinstance(inst, Store):
        return [("acc", inst.acc_slot)], []
    return [], []


def find_hazards(program: Program, timeline: Timeline) -> list[str]:
    """Every race in the schedule, as readable lines (empty when the program is race-free)."""
    written_end: dict[tuple, int] = {}
    read_end: dict[tuple, int] = defaultdict(int)   # latest end of a read of the current contents
    problems = []
    for index, inst in enumerate(program.instructions):
        start, end = int(timeline.start[index]), int(timeline.end[index])
        reads, writes = _accesses(inst)
        for slot in reads:
            if start < written_end.get(slot, 0):
                problems.append(f"read-after-write on {slot}: instruction {index} starts at {start}, "
                                f"before the write ends at {written_end[slot]}: {inst.describe()}")
            read_end[slot] = max(read_end[slot], end)
        for slot in writes:
            if slot not in reads and start < read_end[slot]:
                problems.append(f"write-after-read on {slot}: instruction {index} starts at {start}, "
                                f"before a read ends at {read_end[slot]}: {inst.describe()}")
            written_end[slot] = end
            read_end[slot] = 0 if slot not in reads else end
    return problems

"""Register pressure of a built library, read from its disassembly: per kernel, the vector FMAs and the vector
loads/stores that address the stack (spills and their reloads, and small stack-allocated tiles, which look the
same; not the ABI's callee-saved register saves), in all its code and in its innermost FMA loops, where a stack
move costs on every iteration (a loop: a backward branch and the code it jumps back over). Needs `objdump`
(binutils) for x86-64 and `aarch64-linux-gnu-objdump` (Debian `binutils-aarch64-linux-gnu`, pulled in by
`g++-aarch64-linux-gnu`).

The kernels' scratch buffers go on the stack in a normal build (`stack_buffers`), and their reads and writes at
constant offsets would count as stack moves; measure a build of `in_workspace(spec)`, which keeps them in TVM's
workspace: the same kernels, the same vector register allocation."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SqnxtError

if TYPE_CHECKING:
    from .target import TargetSpec

OBJDUMP = {"x86_64": "objdump", "aarch64": "aarch64-linux-gnu-objdump"}

_FUNCTION = re.compile(r"^[0-9a-f]+ <(?P<name>[^>]+)>:$")
_PATTERNS = {
    "x86_64": (re.compile(r"\bv(fn?m(add|sub)(132|213|231)ps|fmaddsub\w*ps)\b"),
               re.compile(r"%[xyz]mm\d+.*\(%rsp\)|\(%rsp\).*%[xyz]mm\d+")),
    "aarch64": (re.compile(r"\bfml[as]\s+v\d+\.\d*s"),
                re.compile(r"\b(ldr|str|ldp|stp|ldur|stur)\s+[qd]\d+.*\[sp|\b(ld1|st1)\s+\{v.*\[sp")),
}
# The AArch64 ABI's callee-saved registers (the low halves d8-d15 of v8-v15), saved in the prologue and restored
# in the epilogue of a function that uses them: once per call, not a spill. x86-64 has no callee-saved vectors.
_ABI_SAVES = {"aarch64": re.compile(
    r"\b(ldp|stp)\s+d(8|9|1[0-5]), d(8|9|1[0-5]), \[sp|\b(ldr|str)\s+d(8|9|1[0-5]), \[sp")}
_BRANCH = {
    "x86_64": re.compile(r"^\s*(?P<at>[0-9a-f]+):\s+j[a-z]+\s+(?P<to>[0-9a-f]+) <"),
    "aarch64": re.compile(r"^\s*(?P<at>[0-9a-f]+):\s+(b(\.[a-z]+)?|cbn?z|tbn?z)\s.*?\b(?P<to>[0-9a-f]+) <"),
}
_ADDRESS = re.compile(r"^\s*(?P<at>[0-9a-f]+):\t")
# A kernel's code: its packed-API wrapper `name`, its body `name_compute_` and the parallel lambdas in it.
_KERNEL_PART = re.compile(r"(_compute_)?(\.lambda.*|_lambda.*)?$")


@dataclass
class KernelPressure:
    name: str
    fmas: int = 0
    spills: int = 0
    loop_fmas: int = 0  # in the innermost loops that hold FMAs
    loop_spills: int = 0

    @property
    def ratio(self) -> float:
        return self.spills / self.fmas if self.fmas else 0.0

    @property
    def loop_ratio(self) -> float:
        return self.loop_spills / self.loop_fmas if self.loop_fmas else 0.0


def in_workspace(spec: "TargetSpec") -> "TargetSpec":
    """`spec` with its kernels' scratch buffers kept in TVM's workspace, not on the stack (`stack_buffers`)."""
    from .stack_buffers import with_stack_buffer_bytes  # imports TVM, which reading a disassembly does not need

    return with_stack_buffer_bytes(spec, 0)


def library_arch(spec: "TargetSpec") -> str:
    """The architecture a target's library is built for, as `kernel_pressure` names it."""
    return "aarch64" if spec.triple.startswith("aarch64") else "x86_64"


def objdump_for(arch: str) -> str:
    tool = OBJDUMP.get(arch)
    if tool is None or shutil.which(tool) is None:
        raise SqnxtError(f"no {tool or 'objdump'} for {arch} on PATH: install binutils"
                         + (" and g++-aarch64-linux-gnu" if arch == "aarch64" else ""))
    return tool


def kernel_pressure(library: str | Path, arch: str) -> list[KernelPressure]:
    """Per kernel with at least one vector FMA, its FMA and stack-spill counts, heaviest spiller first."""
    text = subprocess.run([objdump_for(arch), "-d", "--no-show-raw-insn", str(library)], check=True,
                          capture_output=True, text=True).stdout
    return pressure_of_disassembly(text, arch)


def pressure_of_disassembly(text: str, arch: str) -> list[KernelPressure]:
    """`kernel_pressure` of an `objdump -d --no-show-raw-insn` listing."""
    kernels: dict[str, KernelPressure] = defaultdict(lambda: KernelPressure(""))
    for name, lines in _functions(text):
        entry = kernels[_KERNEL_PART.sub("", name)]
        entry.name = _KERNEL_PART.sub("", name)
        _count(entry, lines, arch)
    found = [k for k in kernels.values() if k.fmas]
    return sorted(found, key=lambda k: (-k.spills, k.name))


def _functions(text: str) -> list[tuple[str, list[str]]]:
    """(name, instruction lines) of every function in the listing."""
    functions: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = _FUNCTION.match(line)
        if match:
            functions.append((match["name"], []))
        elif functions and _ADDRESS.match(line):
            functions[-1][1].append(line)
    return functions


def _count(entry: KernelPressure, lines: list[str], arch: str) -> None:
    """Add one function's FMAs and stack moves to `entry`, in all and in its innermost FMA loops."""
    fma, spill = _PATTERNS[arch]
    abi_save = _ABI_SAVES.get(arch)
    at = [int(_ADDRESS.match(line)["at"], 16) for line in lines]
    is_fma = [bool(fma.search(line)) for line in lines]
    # an FMA that reads the stack is a folded reload
    is_spill = [bool(spill.search(line)) and not (abi_save and abi_save.search(line)) for line in lines]
    entry.fmas += sum(is_fma)
    entry.spills += sum(is_spill)
    index_of = {address: index for index, address in enumerate(at)}
    loops = set()
    for index, line in enumerate(lines):
        branch = _BRANCH[arch].match(line)
        target = index_of.get(int(branch["to"], 16)) if branch else None
        if target is not None and target <= index:
            loops.add((target, index))
    with_fmas = [(first, last) for first, last in loops if any(is_fma[first:last + 1])]
    innermost = [(first, last) for first, last in with_fmas if not any(
        (f, l) != (first, last) and first <= f and l <= last for f, l in with_fmas)]
    hot = {i for first, last in innermost for i in range(first, last + 1)}
    entry.loop_fmas += sum(is_fma[i] for i in hot)
    entry.loop_spills += sum(is_spill[i] for i in hot)


def total_ratio(kernels: list[KernelPressure]) -> float:
    fmas = sum(k.fmas for k in kernels)
    return sum(k.spills for k in kernels) / fmas if fmas else 0.0


def loop_ratio(kernels: list[KernelPressure]) -> float:
    """Stack moves per FMA over the kernels' innermost FMA loops."""
    fmas = sum(k.loop_fmas for k in kernels)
    return sum(k.loop_spills for k in kernels) / fmas if fmas else 0.0

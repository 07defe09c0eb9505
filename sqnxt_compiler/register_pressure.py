"""Register pressure of a built library, read from its disassembly: per kernel, the vector FMAs and the vector
loads/stores that address the stack (spills and their reloads). Needs `objdump` (binutils) for x86-64 and
`aarch64-linux-gnu-objdump` (Debian `binutils-aarch64-linux-gnu`, pulled in by `g++-aarch64-linux-gnu`)."""

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
# A kernel's code: its packed-API wrapper `name`, its body `name_compute_` and the parallel lambdas in it.
_KERNEL_PART = re.compile(r"(_compute_)?(\.lambda.*|_lambda.*)?$")


@dataclass
class KernelPressure:
    name: str
    fmas: int = 0
    spills: int = 0

    @property
    def ratio(self) -> float:
        return self.spills / self.fmas if self.fmas else 0.0


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
    fma, spill = _PATTERNS[arch]
    text = subprocess.run([objdump_for(arch), "-d", "--no-show-raw-insn", str(library)], check=True,
                          capture_output=True, text=True).stdout
    kernels: dict[str, KernelPressure] = defaultdict(lambda: KernelPressure(""))
    current = None
    for line in text.splitlines():
        match = _FUNCTION.match(line)
        if match:
            current = _KERNEL_PART.sub("", match["name"])
            continue
        if current is None or "\t" not in line:
            continue
        entry = kernels[current]
        entry.name = current
        entry.fmas += bool(fma.search(line))
        entry.spills += bool(spill.search(line))  # an FMA that reads the stack is a folded reload
    found = [k for k in kernels.values() if k.fmas]
    return sorted(found, key=lambda k: (-k.spills, k.name))


def total_ratio(kernels: list[KernelPressure]) -> float:
    fmas = sum(k.fmas for k in kernels)
    return sum(k.spills for k in kernels) / fmas if fmas else 0.0

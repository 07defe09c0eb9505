"""CPU facts the kernels are designed around, from the TVM target (ISA) and, for this machine, the OS (caches).

One CPU class per vector ISA: the class decides the vector width and the register file every kernel family
is shaped for, and which tuning records apply (`records/apply.py`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tvm


@dataclass(frozen=True)
class VectorISA:
    cpu_class: str  # the name of tuning_logs/<model>/<class>/ and of the built-in target of that class
    vector_bits: int
    vector_registers: int


AVX512 = VectorISA("x86-avx512", 512, 32)   # 32 zmm
AVX2 = VectorISA("x86-avx2", 256, 16)       # 16 ymm
SSE = VectorISA("x86-64", 128, 16)          # 16 xmm
NEON = VectorISA("arm", 128, 32)            # 32 q (v0-v31)

# Used only where the OS does not say (a cross target states its caches in its file).
DEFAULT_L1D_BYTES = 32 * 1024
DEFAULT_L2_BYTES = 512 * 1024


def vector_isa(target: "tvm.target.Target") -> VectorISA:
    """The vector ISA an LLVM target compiles for (its triple, CPU and feature flags)."""
    from tvm.target import codegen

    triple = str(target.attrs.get("mtriple", "") or "")
    if triple.startswith(("aarch64", "arm")):
        return NEON
    has = lambda feature: bool(codegen.target_has_features(feature, target))  # noqa: E731
    if has("avx512f"):
        return AVX512
    if has("avx2") and has("fma"):
        return AVX2
    return SSE


def _sysfs_cache_bytes(level: int, kinds: tuple[str, ...]) -> int | None:
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if int((index / "level").read_text()) == level and (index / "type").read_text().strip() in kinds:
                text = (index / "size").read_text().strip().upper()
                scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:], 1)
                return int(text.rstrip("KM")) * scale
        except (OSError, ValueError):
            continue
    return None


def host_cache_bytes() -> tuple[int, int]:
    """(L1 data, L2) bytes per core of this machine, from sysfs, else sysconf, else the defaults."""
    l1d = _sysfs_cache_bytes(1, ("Data",))
    l2 = _sysfs_cache_bytes(2, ("Unified", "Data"))
    for name, value in (("SC_LEVEL1_DCACHE_SIZE", l1d), ("SC_LEVEL2_CACHE_SIZE", l2)):
        if value is None and name in os.sysconf_names:
            found = os.sysconf(name)
            if found > 0:
                l1d, l2 = (found, l2) if name.startswith("SC_LEVEL1") else (l1d, found)
    return l1d or DEFAULT_L1D_BYTES, l2 or DEFAULT_L2_BYTES

"""Target description files: find them by name or path, resolve "auto" fields, make the TVM target."""

from __future__ import annotations

import contextlib
import contextvars
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from .errors import SqnxtError


@dataclass
class TargetSpec:
    """A parsed target file. `kind` is "cpu" (LLVM) or "accel" (the simulated int8 accelerator)."""

    name: str
    kind: str
    description: str
    path: Path
    llvm: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    cross: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_cross(self) -> bool:
        """True when the code runs on another architecture than this machine (needs a cross linker)."""
        return bool(self.cross)

    @property
    def triple(self) -> str:
        return self.cross.get("triple", "")

    @property
    def vector_lanes(self) -> int:
        """float32 lanes of one vector register."""
        return int(self.cpu["vector_bits"]) // 32

    @property
    def cpu_class(self) -> str:
        """The vector ISA class the code is built for (`cpu.VectorISA.cpu_class`), e.g. "x86-avx2"."""
        return str(self.cpu.get("class", ""))

    @contextlib.contextmanager
    def scope(self) -> Iterator["TargetSpec"]:
        """This target in scope, as TVM's and as ours: meta_schedule builds design spaces outside any target,
        and the spaces read the same CPU facts as the default schedules (`current_target_spec`)."""
        token = _ACTIVE.set(self)
        try:
            with self.tvm_target():
                yield self
        finally:
            _ACTIVE.reset(token)

    def tvm_target(self) -> "tvm.target.Target":  # noqa: F821
        import tvm

        return tvm.target.Target(dict(self.llvm))

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "llvm": self.llvm, "file": str(self.path)}


_ACTIVE: contextvars.ContextVar["TargetSpec | None"] = contextvars.ContextVar("sqnxt_target_spec", default=None)


def current_target_spec() -> TargetSpec | None:
    """The TargetSpec of the innermost `TargetSpec.scope()`, None outside one."""
    return _ACTIVE.get()


def _target_dir() -> Path:
    return Path(str(resources.files("sqnxt_compiler.targets")))


def known_targets() -> list[str]:
    return sorted(p.stem for p in _target_dir().glob("*.toml"))


def _resolve_auto(spec: TargetSpec) -> None:
    """Fill "auto" (or absent) CPU facts: LLVM's host CPU name and the core count of this machine, the vector
    width and register file of the target's ISA, and for this machine the cache sizes the OS reports."""
    from tvm.target import codegen

    from .cpu import host_cache_bytes, vector_isa

    if spec.llvm.get("mcpu") == "auto":
        spec.llvm["mcpu"] = codegen.llvm_get_system_cpu()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if spec.llvm.get("num-cores") == "auto":
        spec.llvm["num-cores"] = cores
    if spec.cpu.get("cores") == "auto":
        spec.cpu["cores"] = cores
    _check_mcpu(spec)  # before any Target is made of it: LLVM would print its own complaint first
    import tvm

    isa = vector_isa(tvm.target.Target(dict(spec.llvm)))
    spec.cpu["class"] = isa.cpu_class
    for key, value in (("vector_bits", isa.vector_bits), ("vector_registers", isa.vector_registers)):
        if spec.cpu.get(key, "auto") == "auto":
            spec.cpu[key] = value
    caches = ("l1d_bytes", "l2_bytes")
    if any(spec.cpu.get(key) == "auto" for key in caches):
        if spec.is_cross:
            raise SqnxtError(f"target '{spec.name}': cache sizes cannot be 'auto' for a cross target (this "
                             f"machine is not the board); state l1d_bytes and l2_bytes in {spec.path}")
        for key, value in zip(caches, host_cache_bytes()):
            if spec.cpu.get(key) == "auto":
                spec.cpu[key] = value


def load_target(name_or_path: str) -> TargetSpec:
    """Load a target by built-in name (see `known_targets()`) or by the path of a .toml file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or os.sep in name_or_path:
        path = candidate
        if not path.is_file():
            raise SqnxtError(f"target file '{name_or_path}' does not exist")
    else:
        path = _target_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            raise SqnxtError(f"unknown target '{name_or_path}'; known targets: {', '.join(known_targets())}"
                             " (or pass the path of a target .toml file)")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SqnxtError(f"target file '{path}' is not valid TOML: {err}") from None
    kind = raw.get("kind", "cpu")
    if kind not in ("cpu", "accel"):
        raise SqnxtError(f"target file '{path}': kind must be 'cpu' or 'accel', not '{kind}'")
    if kind == "cpu" and "llvm" not in raw:
        raise SqnxtError(f"target file '{path}' has no [llvm] table (the TVM target dict)")
    spec = TargetSpec(
        name=raw.get("name", path.stem), kind=kind, description=raw.get("description", ""), path=path,
        llvm=dict(raw.get("llvm", {})), cpu=dict(raw.get("cpu", {})), cross=dict(raw.get("cross", {})), raw=raw,
    )
    if kind == "cpu":
        _resolve_auto(spec)
    return spec


def _check_mcpu(spec: TargetSpec) -> None:
    """LLVM accepts an unknown mcpu with one log line and then emits generic code; refuse it instead."""
    from tvm.target import codegen

    mcpu, triple = spec.llvm.get("mcpu"), spec.llvm.get("mtriple", "")
    if not mcpu:
        return
    if mcpu not in codegen.llvm_get_cpu_archlist(_probe_target(triple)):
        raise SqnxtError(f"target '{spec.name}': LLVM does not know mcpu '{mcpu}' for "
                         f"'{triple or 'this host'}'; fix 'mcpu' in {spec.path}")


def _probe_target(triple: str) -> "tvm.target.Target":  # noqa: F821
    import tvm

    return tvm.target.Target({"kind": "llvm", "mtriple": triple} if triple else {"kind": "llvm"})

"""Target description files: find them by name or path, resolve "auto" fields, make the TVM target."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

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

    def tvm_target(self) -> "tvm.target.Target":  # noqa: F821
        import tvm

        return tvm.target.Target(dict(self.llvm))

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "llvm": self.llvm, "file": str(self.path)}


def _target_dir() -> Path:
    return Path(str(resources.files("sqnxt_compiler.targets")))


def known_targets() -> list[str]:
    return sorted(p.stem for p in _target_dir().glob("*.toml"))


def _resolve_auto(spec: TargetSpec) -> None:
    """Fill "auto" fields from this machine: LLVM's host CPU name, core count, vector width."""
    from tvm.target import codegen

    if spec.llvm.get("mcpu") == "auto":
        spec.llvm["mcpu"] = codegen.llvm_get_system_cpu()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if spec.llvm.get("num-cores") == "auto":
        spec.llvm["num-cores"] = cores
    if spec.cpu.get("cores") == "auto":
        spec.cpu["cores"] = cores
    if spec.cpu.get("vector_bits") == "auto":
        import tvm

        target = tvm.target.Target(dict(spec.llvm))
        has = lambda feature: bool(codegen.target_has_features(feature, target))  # noqa: E731
        spec.cpu["vector_bits"] = 512 if has("avx512f") else 256 if has("avx2") else 128


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
        _check_mcpu(spec)
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

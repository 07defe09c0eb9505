"""Find a linker for the target's shared library: the host's compiler, or a cross toolchain for ARM."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from typing import Callable

from .errors import SqnxtError
from .target import TargetSpec

CROSS_ENV = "SQNXT_CROSS_CXX"


def _install_hint(triple: str) -> str:
    return (f"install one: `pip install ziglang`, or as root `apt-get install g++-{triple} "
            f"libc6-dev-arm64-cross`, or set {CROSS_ENV} to a cross C++ compiler command")


def find_cross_compiler(triple: str) -> list[str]:
    """The command that links `triple` shared libraries, in order of preference:
    ${SQNXT_CROSS_CXX}, Debian's `<triple>-g++`, then the `ziglang` wheel (a self-contained clang)."""
    override = os.environ.get(CROSS_ENV)
    if override:
        command = shlex.split(override)
        if not shutil.which(command[0]):
            raise SqnxtError(f"cross compiler '{command[0]}' (from {CROSS_ENV}) was not found; "
                             f"fix {CROSS_ENV} or unset it to auto-detect")
        return command
    debian = shutil.which(f"{triple}-g++")
    if debian:
        return [debian]
    if importlib.util.find_spec("ziglang") is not None:
        # `zig cc` is enough: TVM's objects need only libc, and it avoids building libc++ for the target.
        return [sys.executable, "-m", "ziglang", "cc", "-target", triple]
    raise SqnxtError(f"no cross toolchain for {triple} found; {_install_hint(triple)}")


def _link(command: list[str], output: str, objects: list[str], options: list[str] | None) -> None:
    args = [*command, "-shared", "-fPIC", "-O2", "-o", output, *objects, *(options or [])]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SqnxtError(f"linking {os.path.basename(output)} with `{shlex.join(command)}` failed: {last}")


def library_compiler(spec: TargetSpec) -> Callable | None:
    """The `fcompile` for `Executable.export_library`: None (TVM's host default) unless cross-compiling."""
    if not spec.is_cross:
        return None
    triple = spec.triple
    command = find_cross_compiler(triple)

    def fcompile(output: str, objects: list[str], options: list[str] | None = None) -> None:
        # TVM passes host-specific options (e.g. -m64 on x86); keep only the portable ones.
        portable = [o for o in (options or []) if not o.startswith("-m")]
        _link(command, output, objects, portable)

    fcompile.output_format = "so"
    fcompile.get_target_triple = lambda: triple
    return fcompile

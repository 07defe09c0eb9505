"""Functions of an IRModule: what the passes and the compile-time weight packing share when they drop kernels."""

from __future__ import annotations

from typing import Iterable

import tvm
import tvm_ffi
from tvm import relax


def without_uncalled(mod: tvm.IRModule, kernels: Iterable[str]) -> tvm.IRModule:
    """`mod` without those of `kernels` no Relax function calls any more. relax's DeadCodeElimination keeps them:
    scheduled kernels carry a global symbol, which makes them entry points."""
    called: set[str] = set()
    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            tvm_ffi.structural_walk(func, [(tvm.ir.GlobalVar, lambda gvar: called.add(gvar.name_hint))])
    for name in set(kernels) - called:
        del mod[mod.get_global_var(name)]
    return mod

"""Helpers shared by the tests: compile a model, run it, compare it with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

import sqnxt_compiler
from sqnxt_compiler.target import load_target
from sqnxt_compiler.verify import reference_outputs, relative_error

ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


def elf_machine(path: Path) -> str:
    """The architecture an ELF file is built for, from its header (e_machine at byte 18)."""
    header = Path(path).read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return ELF_MACHINES.get(int.from_bytes(header[18:20], "little"), "unknown")


def seeded_input(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def compile_and_compare(model: onnx.ModelProto, out_dir: Path, target: str = "host", bound: float = 1e-4,
                        **compile_kwargs) -> float:
    """Compile for host, run on a seeded input, and check the output against ONNX Runtime."""
    result = sqnxt_compiler.compile(model, target=target, output=out_dir / f"{model.graph.name}.so",
                                    **compile_kwargs)
    return compare_with_reference(model, result, bound)


def compare_with_reference(model: onnx.ModelProto, result, bound: float = 1e-4) -> float:
    """Run a compiled model (`sqnxt_compiler.compile`'s result) on a seeded input and check its output against
    ONNX Runtime's; returns the max relative error."""
    inputs = [seeded_input(i.shape, seed) for seed, i in enumerate(result.inputs)]
    actual = sqnxt_compiler.load(result.library).run(*inputs)
    expected = reference_outputs(model, {i.name: x for i, x in zip(result.inputs, inputs)})
    assert len(actual) == len(expected)
    error = max(relative_error(a, e) for a, e in zip(actual, expected))
    assert error <= bound, f"{model.graph.name}: relative error {error:.3e} > {bound}"
    return error


def runs_here(cpu_class: str) -> bool:
    """Whether this machine runs code built for `cpu_class` (an AVX-512 machine runs the x86-avx2 class too)."""
    from sqnxt_compiler.cpu import vector_isa

    isa = vector_isa(load_target("host").tvm_target())
    return cpu_class == isa.cpu_class or (cpu_class == "x86-avx2" and isa.cpu_class == "x86-avx512")

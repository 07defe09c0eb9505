"""Register pressure of 1.0-SqNxt-23 per CPU class, read from the disassembly of the built library: vector
loads/stores that address the stack against vector FMAs (`sqnxt_compiler.register_pressure`).

The goal is at most 5% on every class. Not every kernel family is designed per register file yet, so the
classes that miss it are marked xfail(strict): the test fails as soon as one meets the goal (tighten it then),
and `CEILING` fails a build that spills more than today's (measured on 2026-12-04; per-kernel tables:
`python benchmarks/register_pressure.py`)."""

from __future__ import annotations

import pytest

import sqnxt_compiler
from sqnxt_compiler.errors import SqnxtError
from sqnxt_compiler.models import build_model
from sqnxt_compiler.register_pressure import kernel_pressure, library_arch, objdump_for, total_ratio
from sqnxt_compiler.target import load_target

GOAL = 0.05
CEILING = {"x86-avx512": 0.03, "x86-avx2": 0.16, "arm": 0.29}
MISSES_GOAL = {"x86-avx2", "arm"}


@pytest.fixture(scope="module")
def pressure(tmp_path_factory):
    """target -> (ratio, kernels), each target built once."""
    model, built = build_model("1.0-SqNxt-23"), {}

    def of(target: str) -> tuple[float, list]:
        if target not in built:
            arch = library_arch(load_target(target))
            try:
                objdump_for(arch)
            except SqnxtError as missing:
                pytest.skip(str(missing))
            output = tmp_path_factory.mktemp("pressure") / f"{target}.so"
            kernels = kernel_pressure(sqnxt_compiler.compile(model, target, output=output).library, arch)
            built[target] = (total_ratio(kernels), kernels)
        return built[target]

    return of


@pytest.mark.parametrize("target", sorted(CEILING))
def test_spills_stay_below_todays_ceiling(pressure, target):
    ratio, kernels = pressure(target)
    assert sum(k.fmas for k in kernels) > 200  # the kernels were found and their FMAs counted
    assert ratio <= CEILING[target], [(k.name, k.spills, k.fmas) for k in kernels[:5]]


@pytest.mark.parametrize("target", [pytest.param(t, marks=pytest.mark.xfail(
    strict=True, reason="kernel families not yet designed for this register file")) if t in MISSES_GOAL else t
    for t in sorted(CEILING)])
def test_spills_meet_the_goal(pressure, target):
    ratio, _ = pressure(target)
    assert ratio <= GOAL

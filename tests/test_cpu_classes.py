"""CPU facts per class: from the ISA (vector width, registers) and, for this machine, the OS (caches); the
same facts for default schedules and for tuning spaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqnxt_compiler.cpu import host_cache_bytes, vector_isa
from sqnxt_compiler.errors import SqnxtError
from sqnxt_compiler.schedules._common import machine_knobs
from sqnxt_compiler.target import current_target_spec, load_target


@pytest.mark.parametrize("name, cpu_class, bits, registers", [
    ("x86-avx2", "x86-avx2", 256, 16), ("x86-avx512", "x86-avx512", 512, 32), ("arm", "arm", 128, 32),
    ("rk3399", "arm", 128, 32), ("graviton2", "arm", 128, 32)])
def test_built_in_targets_take_their_class_facts(name, cpu_class, bits, registers):
    spec = load_target(name)
    assert (spec.cpu_class, spec.cpu["vector_bits"], spec.cpu["vector_registers"]) == (cpu_class, bits, registers)
    knobs = machine_knobs(spec)
    assert knobs.lanes == bits // 32 and knobs.accumulator_budget == registers // 2


def test_host_is_this_machines_class_with_its_caches():
    spec = load_target("host")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    expected = "x86-avx512" if " avx512f" in flags else "x86-avx2" if " avx2" in flags else None
    if expected is not None:
        assert spec.cpu_class == expected
    assert spec.cpu["vector_registers"] == vector_isa(spec.tvm_target()).vector_registers
    assert (spec.cpu["l1d_bytes"], spec.cpu["l2_bytes"]) == host_cache_bytes()
    assert 8 * 1024 <= spec.cpu["l1d_bytes"] <= spec.cpu["l2_bytes"]


def test_design_spaces_see_the_same_facts_as_default_schedules():
    for name in ("x86-avx2", "x86-avx512", "arm"):
        spec = load_target(name)
        assert current_target_spec() is None
        with spec.scope():
            assert current_target_spec() is spec
            assert machine_knobs() == machine_knobs(spec)
        assert current_target_spec() is None


def test_without_any_target_the_knobs_are_refused():
    with pytest.raises(ValueError, match="needs its target"):
        machine_knobs()


def test_a_cross_target_must_state_its_caches(tmp_path):
    text = (Path(load_target("arm").path).read_text().replace("l1d_bytes = 32768", 'l1d_bytes = "auto"'))
    board = tmp_path / "board.toml"
    board.write_text(text)
    with pytest.raises(SqnxtError, match="cache sizes cannot be 'auto' for a cross target"):
        load_target(str(board))

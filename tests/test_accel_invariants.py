"""Invariants of the compiler and the timing model: array peak bound, bandwidth monotonicity, buffer
capacity, balanced dependency tokens; plus config/tiling errors users see."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqnxt_compiler.accel import (AccelConfig, LayerSpec, Tiling, analytic_cycles, compile_layer, default_tiling,
                                  estimate, known_accelerators, tiling_space)
from sqnxt_compiler.accel.machine.hazards import find_hazards
from sqnxt_compiler.accel.machine.isa import Module
from sqnxt_compiler.accel.machine.tiling import greedy_tiling, overflows
from sqnxt_compiler.accel.machine.timing import schedule
from sqnxt_compiler.errors import SqnxtError

from test_accel_strategies import layers, tilings, tiny_config

TINY = tiny_config()
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fitting(data, layer, config=TINY) -> Tiling:
    tiling = data.draw(tilings(layer))
    return default_tiling(layer, config, tiling.dataflow) if overflows(layer, config, tiling) else tiling


@FAST
@given(data=st.data())
def test_cycles_never_below_the_array_peak(data):
    layer = data.draw(layers())
    report = estimate(layer, TINY, _fitting(data, layer))
    assert report.gemm_cycles >= math.ceil(layer.macs / TINY.macs_per_cycle)
    assert report.cycles >= report.compute_cycles >= report.gemm_cycles
    assert report.cycles >= max(report.load_cycles, report.store_cycles)
    assert 0 < report.utilization <= 1


@FAST
@given(data=st.data(), slow=st.floats(0.25, 64), factor=st.floats(1.0, 16))
def test_more_bandwidth_is_never_slower(data, slow, factor):
    layer = data.draw(layers())
    tiling = _fitting(data, layer)
    cycles = [estimate(layer, TINY.replace(dram_bytes_per_cycle=bw), tiling).cycles for bw in (slow, slow * factor)]
    assert cycles[1] <= cycles[0]


@FAST
@given(data=st.data())
def test_buffers_never_overflow(data):
    layer = data.draw(layers())
    tiling = data.draw(tilings(layer))
    problems = overflows(layer, TINY, tiling)
    if problems:
        with pytest.raises(SqnxtError, match="does not fit tiny-4x4: .*buffer needs"):
            compile_layer(layer, TINY, tiling)
        return
    report = estimate(layer, TINY, tiling)
    for buffer, peak in report.buffer_peak_bytes.items():
        assert 0 < peak <= report.buffer_capacity_bytes[buffer], buffer


@FAST
@given(layer=layers(max_hw=40), dataflow=st.sampled_from(["ws", "os"]))
def test_greedy_fallback_always_fits(layer, dataflow):
    tiling = greedy_tiling(layer, TINY, dataflow)
    assert not overflows(layer, TINY, tiling) and tiling.dataflow == dataflow


@FAST
@given(data=st.data())
def test_dependency_tokens_balance(data):
    layer = data.draw(layers())
    program = compile_layer(layer, TINY, _fitting(data, layer))
    assert set(program.token_balance().values()) == {0}
    program.check_tokens()  # every pop is preceded by its push in program order


def test_token_checker_catches_a_broken_program():
    program = compile_layer(LayerSpec.conv2d(8, 8, 8, 3), TINY, Tiling("ws", 2, 8, 4, 8))
    program.instructions[0].deps.pop_next = True   # the first load waits for a slot nobody frees
    with pytest.raises(SqnxtError, match="pops an empty C2L token queue"):
        program.check_tokens()
    assert program.token_balance()["C2L"] == -1


def test_modules_overlap_and_queue_depth_matters():
    config = AccelConfig.load("accel-16x16")
    layer = LayerSpec.conv2d(64, 64, 56, 3)
    report = estimate(layer, config, default_tiling(layer, config, "ws"))
    assert report.overlap_cycles > 0.9 * min(report.load_cycles, report.compute_cycles)
    shallow = estimate(layer, config.replace(instruction_depth=1), default_tiling(layer, config, "ws"))
    assert shallow.cycles >= report.cycles


def test_default_tiling_is_in_the_space_and_the_analytic_model_tracks_the_schedule():
    config = AccelConfig.load("accel-16x16")
    layer = LayerSpec.conv2d(32, 64, 28, 3, stride=2)
    for dataflow in ("ws", "os"):
        tiling = default_tiling(layer, config, dataflow)
        assert tiling in tiling_space(layer, config, (dataflow,))
        exact = estimate(layer, config, tiling).cycles
        assert abs(analytic_cycles(layer, config, tiling) - exact) <= 0.1 * exact


def test_overflowing_tiling_is_refused_clearly():
    config = AccelConfig.load("accel-16x16")
    layer = LayerSpec.conv2d(64, 64, 56, 3)
    with pytest.raises(SqnxtError) as err:
        compile_layer(layer, config, Tiling("ws", 56, 56, 64, 64))
    message = str(err.value)
    assert "accumulator buffer needs 2 x 803328 = 1606656 bytes, has 131072" in message
    assert "input buffer needs" in message and "shrink the tile sizes" in message


def test_builtin_configs_load_and_bad_files_are_named(tmp_path):
    assert known_accelerators() == ["accel-16x16", "accel-32x32"]
    big = AccelConfig.load("accel-32x32")
    assert (big.rows, big.cols, big.macs_per_cycle) == (32, 32, 1024)
    assert "Horowitz" in big.energy.source and "Eyeriss" in big.energy.source
    broken = tmp_path / "broken.toml"
    broken.write_text('kind = "accel"\n[accel]\nrows = 8\ncols = 0\n')
    with pytest.raises(SqnxtError, match=r"'accel.cols' must be a positive number, not 0"):
        AccelConfig.load(str(broken))
    with pytest.raises(SqnxtError, match="not an accelerator"):
        AccelConfig.load("arm")


def test_bad_layers_are_refused():
    with pytest.raises(SqnxtError, match="divisible by groups"):
        LayerSpec.conv2d(6, 8, 10, 3, groups=4)
    with pytest.raises(SqnxtError, match="does not fit the padded"):
        LayerSpec.conv2d(4, 4, 3, 7, pad=0)
    with pytest.raises(SqnxtError, match="dataflow must be one of ws, os"):
        Tiling("is", 1, 1, 1, 1)


@FAST
@given(data=st.data(), bandwidth=st.sampled_from([0.5, 4.0, 64.0]), depth=st.sampled_from([1, 3, 64]))
def test_schedules_are_race_free(data, bandwidth, depth):
    """The tokens make the timed, overlapped schedule read and write every buffer slot in program order,
    which is why executing in program order (functional.py) gives the hardware's result."""
    config = TINY.replace(dram_bytes_per_cycle=bandwidth, instruction_depth=depth)
    layer = data.draw(layers())
    program = compile_layer(layer, config, _fitting(data, layer, config))
    assert find_hazards(program, schedule(program)) == []


@pytest.mark.parametrize("module, pop, push, layer, tiling, slots", [
    # drop C2L: compute-bound, loads run ahead and overwrite input/weight slots still being read
    (Module.LOAD, "pop_next", "push_prev", LayerSpec.conv2d(64, 64, 28, 3), Tiling("ws", 4, 28, 16, 16),
     ("input", "weight", "param")),
    # drop S2C: store-bound (wide output), GEMMs overwrite accumulators not yet stored
    (Module.STORE, "push_prev", "pop_next", LayerSpec.conv2d(16, 256, 28, 1), Tiling("ws", 2, 28, 256, 16),
     ("acc",)),
])
def test_race_checker_catches_missing_tokens(module, pop, push, layer, tiling, slots):
    program = compile_layer(layer, AccelConfig.load("accel-16x16").replace(dram_bytes_per_cycle=4), tiling)
    for inst in program.instructions:   # remove both ends of one token channel: balanced, but unsafe
        if inst.module == module:
            setattr(inst.deps, pop, False)
        elif inst.module == Module.COMPUTE:
            setattr(inst.deps, push, False)
    assert set(program.token_balance().values()) == {0}
    hazards = find_hazards(program, schedule(program))
    assert hazards and all(h.split("'")[1] in slots for h in hazards), hazards[:3]

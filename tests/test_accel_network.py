"""Whole SqueezeNext models on the accelerator: layer extraction, and all of 1.0-SqNxt-23 simulated in seconds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sqnxt_compiler.accel import (AccelConfig, Requant, compile_layer, default_tiling, estimate, reference_layer,
                                  simulate)
from sqnxt_compiler.accel.machine.hazards import find_hazards
from sqnxt_compiler.accel.machine.network import layers_of_onnx
from sqnxt_compiler.accel.machine.report import build_report
from sqnxt_compiler.accel.machine.timing import schedule
from sqnxt_compiler.models import build_model


@pytest.mark.parametrize("name, macs, grouped", [("1.0-SqNxt-23", 278.0e6, False), ("1.0-G-SqNxt-23", 224.2e6, True)])
def test_layers_of_the_zoo(name, macs, grouped):
    layers = layers_of_onnx(build_model(name))
    assert abs(sum(layer.macs for layer in layers) - macs) < 0.05e6   # DESIGN.md section 3
    assert (layers[0].kh, layers[0].stride, layers[0].cout) == (7, (2, 2), 64)
    assert {(layer.kh, layer.kw) for layer in layers} == {(7, 7), (1, 1), (3, 1), (1, 3)}
    assert any(layer.groups == 2 for layer in layers) == grouped
    assert layers[-1].describe().startswith("dense 128->1000")


def test_whole_squeezenext_is_simulated_in_seconds():
    config = AccelConfig.load("accel-16x16")
    layers = layers_of_onnx(build_model("1.0-SqNxt-23"))
    rng = np.random.default_rng(0)
    requant = Requant(multiplier=1, shift=10, relu=True)
    started, cycles, checked = time.perf_counter(), 0, 0
    for index, layer in enumerate(layers):
        x = rng.integers(-128, 128, layer.input_shape, dtype=np.int8)
        w = rng.integers(-128, 128, layer.weight_shape, dtype=np.int8)
        b = rng.integers(-1000, 1000, layer.cout, dtype=np.int32)
        output, report = simulate(compile_layer(layer, config, default_tiling(layer, config, "ws"), requant), x, w, b)
        cycles += report.cycles
        if index % 10 == 0:   # a sample of layers against the (slower) reference
            np.testing.assert_array_equal(output, reference_layer(layer, x, w, b, requant), err_msg=layer.name)
            checked += 1
    elapsed = time.perf_counter() - started
    assert checked == 12 and cycles > sum(layer.macs for layer in layers) / config.macs_per_cycle
    assert elapsed < 60, f"whole-network simulation took {elapsed:.1f} s"


def test_timing_only_estimate_is_fast_enough_for_tuning():
    config = AccelConfig.load("accel-32x32")
    layers = layers_of_onnx(build_model("1.0-SqNxt-23"))
    started = time.perf_counter()
    total = sum(estimate(layer, config, default_tiling(layer, config, "os")).cycles for layer in layers)
    assert total > 0 and time.perf_counter() - started < 30


@pytest.mark.parametrize("config_name", ["accel-16x16", "accel-32x32"])
def test_every_squeezenext_layer_compiles_safely(config_name):
    """Default tilings of every 1.0-G-SqNxt-23 layer (grouped convs included), both dataflows: buffers within
    capacity, tokens balanced, and the overlapped schedule race-free."""
    config = AccelConfig.load(config_name)
    for layer in layers_of_onnx(build_model("1.0-G-SqNxt-23")):
        for dataflow in ("ws", "os"):
            program = compile_layer(layer, config, default_tiling(layer, config, dataflow))
            program.check_tokens()
            timeline = schedule(program)
            assert find_hazards(program, timeline) == [], layer.name
            report = build_report(program, timeline)
            peaks, capacity = report.buffer_peak_bytes, report.buffer_capacity_bytes
            assert all(peaks[b] <= capacity[b] for b in peaks), (layer.name, peaks)
            assert report.macs == layer.macs

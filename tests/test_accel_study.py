"""`sqnxt-sim study`: whole networks under WS / OS / best per layer, reproducible bit for bit."""

from __future__ import annotations

import json

import pytest

from sqnxt_compiler.accel import AccelConfig, LayerSpec
from sqnxt_compiler.accel.study.study import STRATEGIES, run_study, strategy_reports
from sqnxt_compiler.accel.study.report import relative_table
from sqnxt_compiler.cli.sim import main

# Small but covering: a SqueezeNext (repeated shapes, the cache) and a baseline, at a low resolution.
SMALL = ["--models", "1.0-SqNxt-23,squeezenet1.0", "--configs", "accel-16x16", "--resolution", "64"]


def test_best_is_never_slower_than_either_dataflow():
    config = AccelConfig.load("accel-16x16")
    for layer in (LayerSpec.conv2d(64, 32, 55, 1), LayerSpec.conv2d(16, 16, 28, (1, 3)),
                  LayerSpec.dense(512, 1000)):
        reports = strategy_reports(layer, config)
        assert reports["ws"].tiling["dataflow"] == "ws" and reports["os"].tiling["dataflow"] == "os"
        assert reports["best"].cycles <= min(reports["ws"].cycles, reports["os"].cycles)


def test_totals_are_sums_of_layers_and_relative_to_baselines():
    study = run_study(["1.0-SqNxt-23", "squeezenet1.0"], ["accel-16x16"], resolution=64)
    network = study.network("1.0-SqNxt-23", "accel-16x16")
    assert len(network.layers) == 112
    for strategy in STRATEGIES:
        totals = network.totals(strategy)
        assert totals["cycles"] == sum(layer.reports[strategy].cycles for layer in network.layers)
        assert totals["macs"] == sum(layer.macs for layer in network.layers)
        assert 0 < totals["utilization"] <= 1
    assert network.totals("best")["cycles"] <= min(network.totals(s)["cycles"] for s in ("ws", "os"))
    table = relative_table(study)
    assert "cycles / squeezenet1.0" in table and "| squeezenet1.0 | accel-16x16 | WS | 1.000 | 1.000 |" in table


def test_cli_writes_reproducible_files(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["study", *SMALL, "--out", str(first)]) == 0
    assert "cycles / squeezenet1.0" in capsys.readouterr().out
    assert main(["study", *SMALL, "--out", str(second)]) == 0
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert {"study.md", "layers.md", "study.json", "energy.png",
            "layers_1.0-SqNxt-23_accel-16x16.png"} <= set(names)
    for name in names:   # bit for bit, charts included
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    data = json.loads((first / "study.json").read_text())
    assert {n["model"] for n in data["networks"]} == {"1.0-SqNxt-23", "squeezenet1.0"}


def test_cli_errors(capsys):
    assert main(["study", "--models", "no-such-model", "--configs", "accel-16x16", "--out", "/tmp/x"]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.slow
def test_full_study_runs_in_minutes(tmp_path):
    assert main(["study", "--out", str(tmp_path)]) == 0

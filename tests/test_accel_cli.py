"""`sqnxt-sim layer`: per-layer figures, JSON, and one-line errors."""

from __future__ import annotations

import json

from sqnxt_compiler.cli.sim import main


def test_layer_prints_figures_and_checks_the_output(capsys):
    assert main(["layer", "--config", "accel-16x16", "--kind", "conv", "--cin", "32", "--cout", "32",
                 "--hw", "28", "--kernel", "3x1", "--stride", "1", "--dataflow", "os", "--residual"]) == 0
    out = capsys.readouterr().out
    for figure in ("cycles", "load", "compute", "store", "utilization", "DRAM bytes", "energy", "exact",
                   "+residual", "residual 25,088"):
        assert figure in out


def test_layer_json_and_knobs(capsys):
    assert main(["layer", "--config", "accel-32x32", "--cin", "64", "--cout", "128", "--hw", "14", "--kernel",
                 "1", "--stride", "2", "--tile-oh", "4", "--json", "--timing-only", "--objective", "gemm"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tiling"]["tile_oh"] == 4 and data["cycles"] >= data["compute_cycles"]
    assert data["macs"] == 7 * 7 * 128 * 64


def test_dense(capsys):
    assert main(["layer", "--kind", "dense", "--cin", "128", "--cout", "1000", "--batch", "2"]) == 0
    assert "dense 128->1000" in capsys.readouterr().out


def test_errors_are_one_line(capsys):
    assert main(["layer", "--cin", "64", "--cout", "64", "--hw", "56", "--kernel", "3", "--tile-oh", "56",
                 "--tile-cout", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: tiling") and "accumulator buffer needs" in err and "\n" not in err
    assert main(["layer", "--config", "host", "--cin", "1", "--cout", "1"]) == 2
    assert "not an accelerator" in capsys.readouterr().err
    assert main(["layer", "--cin", "4", "--cout", "4", "--kernel", "3x3x3"]) == 2
    assert "--kernel must be N or NxM" in capsys.readouterr().err

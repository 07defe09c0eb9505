"""The co-design study: every conv/dense layer of zoo networks on accelerator configs, WS-only vs OS-only vs best.

For each (model, config) every layer is timed with `estimate` (compile + schedule, no data) under three
strategies: "ws" and "os" use `default_tiling` of that dataflow (latency-optimal by the closed form);
"best" estimates a shortlist of the analytically fastest tilings of both dataflows plus both defaults and
keeps the one with the fewest simulated cycles, so best <= min(ws, os) per layer by construction.
Layers run one after another (the accelerator holds one layer at a time), so network totals are sums.
Pooling, ReLU and merges stay on the host and are not counted.

Models trained on a data set (the digits zoo entries) also get their held-out top-1 in float and int8, so
accuracy, cycles and energy of each variant and dataflow sit in one table.

Everything is deterministic (no randomness, stable tie-breaks), so two runs give identical numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...models import build_model
from ..int8.accuracy import evaluate_int8
from ..machine.config import AccelConfig
from ..machine.layer import LayerSpec
from ..machine.network import layers_of_onnx
from ..machine.planner import analytic_cycles, default_tiling
from ..machine.report import Report
from ..machine.simulator import estimate
from ..machine.tiling import Tiling, tiling_space

STRATEGIES = ("ws", "os", "best")
# Candidates per layer that "best" simulates after ranking the whole space by the closed form: the closed
# form is within a few % of `estimate` on most tilings, so a short list finds the simulated optimum.
SHORTLIST = 6
# The comparison networks of the study (relative columns are given against those present).
BASELINES = ("squeezenet1.0", "alexnet")
ENERGY_PARTS = ("mac", "register_file", "buffer", "dram")


@dataclass
class LayerResult:
    name: str
    describe: str
    macs: int
    reports: dict[str, Report]          # strategy -> report


@dataclass
class NetworkResult:
    model: str
    config: AccelConfig
    layers: list[LayerResult] = field(default_factory=list)

    def totals(self, strategy: str) -> dict:
        """Whole-network figures of one strategy: layers run back to back."""
        reports = [layer.reports[strategy] for layer in self.layers]
        cycles = sum(r.cycles for r in reports)
        macs = sum(r.macs for r in reports)
        energy = {part: sum(r.energy_pj[part] for r in reports) for part in ENERGY_PARTS}
        return {
            "cycles": cycles,
            "latency_ms": cycles / (self.config.clock_mhz * 1e3),
            "macs": macs,
            "utilization": macs / (cycles * self.config.macs_per_cycle) if cycles else 0.0,
            "dram_bytes": sum(r.dram_total_bytes for r in reports),
            "energy_pj": energy,
            "energy_uj": sum(energy.values()) / 1e6,
            "ws_layers": sum(r.tiling["dataflow"] == "ws" for r in reports),
            "layers": len(reports),
        }


@dataclass
class Study:
    models: list[str]
    configs: list[str]
    networks: list[NetworkResult]
    # model -> held-out top-1 {"float": ..., "int8": ...} of models trained on a data set (others absent); int8
    # is the same under every tiling and strategy: the accelerator is bit-exact with the int8 reference
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)

    def network(self, model: str, config: str) -> NetworkResult:
        return next(n for n in self.networks if n.model == model and n.config.name == config)

    def as_dict(self) -> dict:
        return {"models": self.models, "configs": self.configs, "accuracy": self.accuracy, "networks": [
            {"model": n.model, "config": n.config.name,
             "totals": {s: n.totals(s) for s in STRATEGIES},
             "layers": [{"name": layer.name, "layer": layer.describe, "macs": layer.macs,
                         **{s: _layer_figures(r) for s, r in layer.reports.items()}} for layer in n.layers]}
            for n in self.networks]}


def _layer_figures(report: Report) -> dict:
    return {"tiling": report.tiling, "cycles": report.cycles, "utilization": report.utilization,
            "dram_bytes": report.dram_total_bytes, "energy_pj": report.energy_pj, "bound": report.bound}


def _key(report: Report) -> tuple:
    """Fewest cycles; ties broken by energy, then by the tiling itself (stable across runs)."""
    t = report.tiling
    return (report.cycles, report.total_energy_pj, t["dataflow"], t["tile_oh"], t["tile_ow"], t["tile_cout"],
            t["tile_cin"])


def strategy_reports(layer: LayerSpec, config: AccelConfig, shortlist: int = SHORTLIST) -> dict[str, Report]:
    """The layer's report under each strategy (see the module docstring)."""
    reports = {df: estimate(layer, config, default_tiling(layer, config, df)) for df in ("ws", "os")}
    space = tiling_space(layer, config)
    ranked = sorted(space, key=lambda t: (analytic_cycles(layer, config, t), _tiling_order(t)))[:shortlist]
    candidates = list(reports.values()) + [estimate(layer, config, t) for t in ranked]
    reports["best"] = min(candidates, key=_key)
    return reports


def _tiling_order(t: Tiling) -> tuple:
    return (t.dataflow, t.tile_oh, t.tile_ow, t.tile_cout, t.tile_cin)


def study_network(model: str, config: AccelConfig, shortlist: int = SHORTLIST, **model_options) -> NetworkResult:
    """Every conv/dense layer of zoo model `model` under every strategy on `config`."""
    result = NetworkResult(model, config)
    cache: dict[LayerSpec, dict[str, Report]] = {}   # SqueezeNext repeats shapes: simulate each once
    for layer in layers_of_onnx(build_model(model, **model_options)):
        shape = dataclasses.replace(layer, name="")
        if shape not in cache:
            cache[shape] = strategy_reports(shape, config, shortlist)
        result.layers.append(LayerResult(layer.name, layer.describe(), layer.macs, cache[shape]))
    return result


def trained_accuracy(model: str, resolution: int | None = None) -> dict[str, float] | None:
    """Held-out top-1 of zoo model `model` in float (ONNX Runtime) and int8 (the int8 reference, calibrated on
    training images), or None for a model with random weights."""
    from ...models.digits import TRAINED

    if model not in TRAINED:
        return None
    accuracy = evaluate_int8(model, resolution)["accuracy"]
    return {"float": accuracy["float_top1"], "int8": accuracy["int8_top1"]}


def run_study(models: list[str], configs: list[str], shortlist: int = SHORTLIST, **model_options) -> Study:
    """The whole study; `model_options` (e.g. resolution=...) go to `build_model`."""
    loaded = [AccelConfig.load(name) for name in configs]
    networks = [study_network(model, config, shortlist, **model_options) for model in models for config in loaded]
    accuracy = {model: found for model in models
                if (found := trained_accuracy(model, model_options.get("resolution"))) is not None}
    return Study(list(models), [c.name for c in loaded], networks, accuracy)

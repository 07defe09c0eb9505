"""The study as markdown: network totals, ratios against SqueezeNet 1.0 / AlexNet, and per-layer tables."""

from __future__ import annotations

import json
from pathlib import Path

from .study import BASELINES, STRATEGIES, NetworkResult, Study

_NAMES = {"ws": "WS", "os": "OS", "best": "best"}


def summary_table(study: Study) -> str:
    """One row per (model, config, strategy): cycles, latency, utilization, DRAM traffic, energy."""
    lines = [("| model | accelerator | strategy | top-1 float / int8 | cycles | latency (ms) | utilization "
              "| DRAM (MB) | energy (uJ) | MAC / RF / buffer / DRAM (uJ) | WS layers |"),
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for network in study.networks:
        accuracy = study.accuracy.get(network.model)
        top1 = f"{accuracy['float']:.2%} / {accuracy['int8']:.2%}" if accuracy else "- (random weights)"
        for strategy in STRATEGIES:
            t = network.totals(strategy)
            parts = " / ".join(f"{v / 1e6:,.0f}" for v in t["energy_pj"].values())
            lines.append(f"| {network.model} | {network.config.name} | {_NAMES[strategy]} | {top1} | {t['cycles']:,} "
                         f"| {t['latency_ms']:.3f} | {t['utilization']:.1%} | {t['dram_bytes'] / 1e6:.2f} "
                         f"| {t['energy_uj']:,.0f} | {parts} | {t['ws_layers']}/{t['layers']} |")
    return "\n".join(lines)


def relative_table(study: Study) -> str:
    """Cycles and energy of every model divided by each baseline's, per config and strategy (<1: cheaper)."""
    baselines = [b for b in BASELINES if b in study.models]
    if not baselines:
        return "(no baseline network in this study)"
    header = ["model", "accelerator", "strategy"] + [f"{what} / {b}" for b in baselines
                                                     for what in ("cycles", "energy")]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|" + "---:|" * (2 * len(baselines))]
    for network in study.networks:
        for strategy in STRATEGIES:
            t = network.totals(strategy)
            cells = []
            for b in baselines:
                ref = study.network(b, network.config.name).totals(strategy)
                cells += [f"{t['cycles'] / ref['cycles']:.3f}", f"{t['energy_uj'] / ref['energy_uj']:.3f}"]
            lines.append(f"| {network.model} | {network.config.name} | {_NAMES[strategy]} | " + " | ".join(cells)
                         + " |")
    return "\n".join(lines)


def layer_table(network: NetworkResult) -> str:
    """Per-layer cycles / utilization / DRAM / energy under each strategy, and the tiling "best" chose."""
    lines = [("| # | layer | MACs | cycles WS | cycles OS | cycles best | util WS | util OS | util best "
              "| DRAM best (KB) | energy best (uJ) | best tiling (df oh ow cout cin) |"),
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for index, layer in enumerate(network.layers):
        r = layer.reports
        t = r["best"].tiling
        tiling = f"{t['dataflow']} {t['tile_oh']} {t['tile_ow']} {t['tile_cout']} {t['tile_cin']}"
        lines.append(f"| {index} | {layer.name}: {layer.describe} | {layer.macs:,} | "
                     + " | ".join(f"{r[s].cycles:,}" for s in STRATEGIES) + " | "
                     + " | ".join(f"{r[s].utilization:.1%}" for s in STRATEGIES)
                     + f" | {r['best'].dram_total_bytes / 1e3:.1f} | {r['best'].total_energy_pj / 1e6:.2f} | {tiling} |")
    return "\n".join(lines)


def study_markdown(study: Study, charts: list[str] | None = None) -> str:
    """The main report: what was measured, totals, ratios, chart links."""
    parts = [
        "# Accelerator co-design study",
        "",
        (f"Models: {', '.join(study.models)}. Accelerators: {', '.join(study.configs)}. Every conv/dense layer is "
         "timed by the simulator's `estimate` (cycles, DRAM traffic, energy); pooling, ReLU and merges run on "
         "the host and are not counted. Strategies: WS-only and OS-only use each dataflow's default "
         "(latency-optimal) tiling; best takes, per layer, the fewest simulated cycles over both defaults and "
         "the analytically best tilings of both dataflows. Latency at the config's clock. Top-1: held-out "
         "accuracy of models trained on the digits, in float (ONNX Runtime) and int8 (calibrated on training "
         "images); int8 is the same under every strategy, the accelerator being bit-exact with the int8 "
         "reference whatever the tiling."),
        "",
        "## Totals",
        "",
        summary_table(study),
        "",
        "## Relative to the baselines (ratio < 1: fewer cycles / less energy than the baseline)",
        "",
        relative_table(study),
        "",
        "Per-layer tables: `layers.md`.",
    ]
    if charts:
        parts += ["", "## Charts", ""] + [f"![{c}]({c})" for c in charts]
    return "\n".join(parts) + "\n"


def layers_markdown(study: Study) -> str:
    sections = ["# Per-layer results"]
    for network in study.networks:
        sections += ["", f"## {network.model} on {network.config.name}", "", layer_table(network)]
    return "\n".join(sections) + "\n"


def write_study(study: Study, out_dir: str | Path) -> list[Path]:
    """study.md, layers.md, study.json and the PNG charts into `out_dir` (created); returns the paths."""
    from .charts import write_charts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charts = write_charts(study, out)
    files = {"study.md": study_markdown(study, [c.name for c in charts]), "layers.md": layers_markdown(study),
             "study.json": json.dumps(study.as_dict(), indent=1, sort_keys=True) + "\n"}
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files] + charts

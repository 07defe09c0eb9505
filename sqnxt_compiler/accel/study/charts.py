"""The study's PNG charts (matplotlib, Agg): per-layer time and utilization bars, and the energy breakdown."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .study import ENERGY_PARTS, STRATEGIES, NetworkResult, Study

_COLORS = {"ws": "tab:blue", "os": "tab:orange", "best": "tab:green"}
# No "Software" (matplotlib version) chunk: the PNG bytes depend only on the data, so runs compare equal.
_PNG_METADATA = {"Software": None}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")   # headless, and the only backend whose output we compare byte for byte
    import matplotlib.pyplot as plt
    return plt


def layer_chart(network: NetworkResult, path: Path) -> Path:
    """Two panels over the network's layers: latency (us) and utilization per strategy, grouped bars."""
    plt = _pyplot()
    count = len(network.layers)
    x = np.arange(count)
    width = 0.8 / len(STRATEGIES)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(24.0, max(8.0, 0.07 * count * len(STRATEGIES))), 7), sharex=True)
    for i, strategy in enumerate(STRATEGIES):
        reports = [layer.reports[strategy] for layer in network.layers]
        offset = (i - (len(STRATEGIES) - 1) / 2) * width
        top.bar(x + offset, [r.cycles / network.config.clock_mhz for r in reports], width,
                label=strategy.upper() if strategy != "best" else "best", color=_COLORS[strategy])
        bottom.bar(x + offset, [100 * r.utilization for r in reports], width, color=_COLORS[strategy])
    top.set_yscale("log")   # the stem takes ~70x a typical SqueezeNext layer: linear bars would hide the rest
    top.set_ylabel("time (us, log)")
    top.set_title(f"{network.model} on {network.config.name}: per-layer time and utilization")
    top.legend()
    bottom.set_ylabel("utilization (%)")
    bottom.set_ylim(0, 100)
    bottom.set_xlabel("layer (graph order)")
    bottom.set_xticks(x[:: max(1, count // 40)])
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata=_PNG_METADATA)
    plt.close(fig)
    return path


def energy_chart(study: Study, path: Path) -> Path:
    """Stacked energy (MAC, register file, buffer, DRAM) of every network, one panel per config."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(study.configs), figsize=(5 + 2.2 * len(study.models) * len(study.configs), 4.5),
                             squeeze=False)
    for ax, config in zip(axes[0], study.configs):
        labels, stacks = [], {part: [] for part in ENERGY_PARTS}
        for model in study.models:
            network = study.network(model, config)
            for strategy in STRATEGIES:
                labels.append(f"{model}\n{strategy}")
                energy = network.totals(strategy)["energy_pj"]
                for part in ENERGY_PARTS:
                    stacks[part].append(energy[part] / 1e6)
        x = np.arange(len(labels))
        bottom = np.zeros(len(labels))
        for part in ENERGY_PARTS:
            ax.bar(x, stacks[part], 0.7, bottom=bottom, label=part)
            bottom += np.asarray(stacks[part])
        ax.set_xticks(x, labels, rotation=90, fontsize=7)
        ax.set_ylabel("energy (uJ)")
        ax.set_title(f"energy breakdown, {config}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata=_PNG_METADATA)
    plt.close(fig)
    return path


def write_charts(study: Study, out_dir: Path) -> list[Path]:
    """All charts of the study into `out_dir`; returns their paths."""
    paths = [layer_chart(n, out_dir / f"layers_{n.model}_{n.config.name}.png") for n in study.networks]
    paths.append(energy_chart(study, out_dir / "energy.png"))
    return paths

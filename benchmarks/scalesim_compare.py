"""Compare the accelerator simulator's array cycles with SCALE-Sim on 1.0-SqNxt-23's layer shapes, and time a
whole-network simulation.

    python benchmarks/scalesim_compare.py                 # every distinct layer shape except the 7x7 stem
    python benchmarks/scalesim_compare.py --with-stem     # + the stem (SCALE-Sim's OS run takes ~1.5 min)
    python benchmarks/scalesim_compare.py --network-only  # whole-network simulation time and cycles

Columns: SCALE-Sim's stall-free compute cycles; ours with the array-optimal tiling (like-for-like) and with
the latency-optimal default tiling (what the compiler emits), each with its ratio to SCALE-Sim; our whole
latency with DMA and ALU; which module bounds it. docs/accelerator.md explains every difference.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from sqnxt_compiler.accel import AccelConfig, Requant, compile_layer, default_tiling, estimate, simulate
from sqnxt_compiler.accel.machine.network import layers_of_onnx
from sqnxt_compiler.accel.study.scalesim import compare_layer, scalesim_available
from sqnxt_compiler.models import build_model


def distinct_layers(model: str, with_stem: bool) -> list:
    seen = {}
    for layer in layers_of_onnx(build_model(model)):
        if layer.kh * layer.kw == 49 and not with_stem:
            continue
        if (layer.h, layer.w, layer.kh, layer.kw) != (1, 1, 1, 1):  # SCALE-Sim's dense is a GEMM topology
            seen.setdefault(layer.describe(), layer)
    return list(seen.values())


def comparison_table(model: str, configs: list[str], with_stem: bool) -> None:
    header = (f"{'layer':44s} {'array':6s} {'df':3s} {'scalesim':>9s} {'ours':>9s} {'ratio':>6s} "
              f"{'default':>9s} {'ratio':>6s} {'latency':>9s} {'bound':8s} {'ss s':>5s}")
    print(header)
    print("-" * len(header))
    worst = []
    for config_name in configs:
        config = AccelConfig.load(config_name)
        for layer in distinct_layers(model, with_stem):
            for dataflow in ("ws", "os"):
                started = time.perf_counter()
                like = compare_layer(layer, config, dataflow)
                seconds = time.perf_counter() - started
                default = estimate(layer, config, default_tiling(layer, config, dataflow))
                ours_default = default.gemm_cycles // (layer.n * layer.groups)
                if like["bound"] == "compute":
                    worst.append(abs(like["ratio"] - 1))
                print(f"{like['layer']:44s} {like['array']:6s} {dataflow:3s} {like['scalesim']:9d} "
                      f"{like['ours']:9d} {like['ratio']:6.3f} {ours_default:9d} "
                      f"{ours_default / like['scalesim']:6.3f} {default.cycles:9d} {default.bound:8s} "
                      f"{seconds:5.1f}")
    if worst:
        print(f"\ncompute-bound rows (array-optimal tiling): {len(worst)}, "
              f"largest deviation from SCALE-Sim {max(worst):.1%}")


def network_timing(model: str, configs: list[str]) -> None:
    layers = layers_of_onnx(build_model(model))
    rng = np.random.default_rng(0)
    operands = [(rng.integers(-128, 128, layer.input_shape, dtype=np.int8),
                 rng.integers(-128, 128, layer.weight_shape, dtype=np.int8),
                 rng.integers(-1000, 1000, layer.cout, dtype=np.int32)) for layer in layers]
    macs = sum(layer.macs for layer in layers)
    print(f"\n{model}: {len(layers)} conv/dense layers, {macs / 1e6:.1f} M MACs")
    for config_name in configs:
        config = AccelConfig.load(config_name)
        for dataflow in ("ws", "os"):
            started = time.perf_counter()
            reports = []
            for layer, (x, w, b) in zip(layers, operands):
                program = compile_layer(layer, config, default_tiling(layer, config, dataflow),
                                        Requant(shift=10, relu=True))
                reports.append(simulate(program, x, w, b)[1])
            seconds = time.perf_counter() - started
            cycles = sum(r.cycles for r in reports)
            energy = sum(r.total_energy_pj for r in reports) / 1e6
            bound = {b: sum(r.bound == b for r in reports) for b in ("compute", "load", "store")}
            print(f"  {config_name} {dataflow}: simulated (functional + timing) in {seconds:.2f} s; "
                  f"{cycles:,} cycles = {cycles / config.clock_mhz / 1e3:.2f} ms @ {config.clock_mhz:g} MHz, "
                  f"utilization {macs / (cycles * config.macs_per_cycle):.1%}, {energy:.0f} uJ, "
                  f"layers bound by {bound}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="1.0-SqNxt-23")
    parser.add_argument("--config", action="append", help="accelerator(s) (default: accel-16x16 and accel-32x32)")
    parser.add_argument("--with-stem", action="store_true", help="include the 7x7 stem (slow in SCALE-Sim)")
    parser.add_argument("--network-only", action="store_true", help="only the whole-network timing")
    args = parser.parse_args()
    configs = args.config or ["accel-16x16", "accel-32x32"]
    if not args.network_only:
        available, reason = scalesim_available()
        if not available:
            print(f"SCALE-Sim comparison skipped: {reason}", file=sys.stderr)
        else:
            comparison_table(args.model, configs, args.with_stem)
    network_timing(args.model, configs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

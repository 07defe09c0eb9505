"""Tuning results on this machine, in two tables.

    python benchmarks/tuning.py end-to-end   # 1.0-SqNxt-23 batch 1: ORT, stock TVM, ours default, ours tuned
    python benchmarks/tuning.py spaces --top-tasks 4 --trials 96   # our design spaces vs meta_schedule's

`end-to-end` compiles with the shipped log (tuning_logs/<model>/host) and times the four engines side by
side in one process (medians; the protocol and thread settings of benchmarks/latency.py, whose runners
it uses: production spinning defaults in blocks, or --no-spin rep by rep).
`spaces` tunes the same heaviest kernels of 1.0-SqNxt-23 twice at the same trial budget - once over our
WS/OS design spaces (`schedules/`), once over meta_schedule's generic post-order-apply space - and prints
the estimated latency of those kernels (sum of occurrences x best measured time) against trials, and each
run's wall time. The two runs are sequential, not interleaved: compare them on a quiet machine."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import (add_protocol_arguments, describe_protocol, ort_runner, ours_runner, stock_runner,  # noqa: E402
                     restart_with_thread_settings, side_by_side)

REPO = Path(__file__).resolve().parent.parent


def end_to_end(model_names: list[str], protocol: argparse.Namespace) -> None:
    from sqnxt_compiler.models import build_model

    spin = not protocol.no_spin
    print(f"\n## Batch 1 on host: tuned vs default vs peers (medians; {describe_protocol(spin, protocol.settle)}; "
          "vs ORT: median of per-round ratios)\n")
    print("| model | engine | median ms | vs ORT |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in model_names:
            log = REPO / "tuning_logs" / name / "host"
            if not log.is_dir():
                print(f"| {name} | (no shipped log at {log}) | - | - |")
                continue
            proto = build_model(name)
            data = np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype("float32")
            runners = {"ONNX Runtime": ort_runner(proto, data, spin), **stock_runner(proto, data, protocol),
                       "ours (default)": ours_runner(proto, data, Path(tmp) / "default"),
                       "ours (tuned)": ours_runner(proto, data, Path(tmp) / "tuned", tuning_log=log)}
            measured = side_by_side(runners, protocol.rounds, protocol.block, spin, {"stock TVM"},
                                    protocol.stock_rounds, protocol.settle)
            for engine, ms in measured.median_ms.items():
                print(f"| {name} | {engine} | {ms:.2f} | {measured.ratio[engine]:.2f}x |", flush=True)


def compare_spaces(model_name: str, top_tasks: int, trials: int, checkpoints: int) -> None:
    from sqnxt_compiler.models import build_model
    from sqnxt_compiler.target import load_target
    from sqnxt_compiler.tuning import tune

    spec = load_target("host")
    curves: dict[str, list[tuple[int, float]]] = {}
    walls: dict[str, float] = {}
    finals = {}
    for space in ("ours", "generic"):
        curve: list[tuple[int, float]] = []

        def record(event: dict, curve=curve) -> None:
            if event["tasks_timed"] == event["tasks_total"]:
                curve.append((event["trials_done"], event["estimated_latency_ms"]))

        with tempfile.TemporaryDirectory() as log:
            started = time.perf_counter()
            report = tune(build_model(model_name), spec, log, trials, space=space, top_tasks=top_tasks,
                          on_progress=record)
            walls[space] = time.perf_counter() - started
        # Our run's first measurement of each kernel is its default schedule (logged before the search).
        curves[space] = [(n + report.default_trials, ms) for n, ms in curve]
        finals[space] = report
    print(f"\n## Design spaces: {model_name}, {top_tasks} heaviest kernels, {trials} trials each\n")
    print("| trials | ours: est. ms | generic: est. ms |")
    print("|---|---|---|")
    for mark in np.linspace(trials / checkpoints, trials, checkpoints).astype(int):
        cells = [_best_until(curves[space], mark) for space in ("ours", "generic")]
        print(f"| {mark} | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")
    print("\n| space | wall time s | trials | failed | cost-model ranked | random (warm-up) |")
    print("|---|---|---|---|---|---|")
    for space, report in finals.items():
        print(f"| {space} | {walls[space]:.0f} | {report.trials_run} | {report.failed_trials} | "
              f"{report.model_predictions} | {report.random_predictions} |")
    print("\n| kernel | x | ours best ms | generic best ms |")
    print("|---|---|---|---|")
    for ours, generic in zip(finals["ours"].tasks, finals["generic"].tasks):
        print(f"| {ours.name} | {ours.occurrences} | {_ms(ours.best_s)} | {_ms(generic.best_s)} |")


def _best_until(curve: list[tuple[int, float]], trials: int) -> float | None:
    values = [ms for n, ms in curve if n <= trials]
    return min(values) if values else None


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    e2e = sub.add_parser("end-to-end")
    e2e.add_argument("--models", nargs="+", default=["1.0-SqNxt-23", "1.0-SqNxt-23v5"])
    add_protocol_arguments(e2e)
    spaces = sub.add_parser("spaces")
    spaces.add_argument("--model", default="1.0-SqNxt-23")
    spaces.add_argument("--top-tasks", type=int, default=4)
    spaces.add_argument("--trials", type=int, default=96)
    spaces.add_argument("--checkpoints", type=int, default=6)
    args = parser.parse_args(argv)
    restart_with_thread_settings(spin=args.command != "end-to-end" or not args.no_spin)
    if args.command == "end-to-end":
        end_to_end(args.models, args)
    else:
        compare_spaces(args.model, args.top_tasks, args.trials, args.checkpoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())

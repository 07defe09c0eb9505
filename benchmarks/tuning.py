"""Tuning results on this machine, in two tables.

    python benchmarks/tuning.py end-to-end   # batch 1: ORT, OpenVINO, stock TVM, ours default, ours tuned
    python benchmarks/tuning.py end-to-end --target x86-avx512 --batch 8
    python benchmarks/tuning.py spaces --top-tasks 4 --trials 96   # our design spaces vs meta_schedule's

`end-to-end` compiles for --target (default host) with the shipped log of the target's CPU class
(tuning_logs/<model>/<class>, `shipped_log`; without one, the tuned row is left out with a note) and times
the engines side by side in one process (medians; the protocol and thread settings of benchmarks/latency.py:
production spinning defaults in blocks, or --no-spin rep by rep; the engines of benchmarks/engines.py,
OpenVINO when installed; "vs ORT" and "vs best peer").
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
from engines import cpu_class, load_target_for_host, model_input, ours_runner  # noqa: E402
from latency import (add_protocol_arguments, cap_peers, end_to_end_header, peers_and_stock,  # noqa: E402
                     print_notes, restart_with_thread_settings, side_by_side)

REPO = Path(__file__).resolve().parent.parent


def shipped_log(model_name: str, spec) -> Path:
    """tuning_logs/<model>/<CPU class of the target>, as sqnxt-tune writes it (or the folder named after the
    target, the older layout, when only that exists)."""
    folders = [REPO / "tuning_logs" / model_name / folder for folder in (cpu_class(spec), spec.name)]
    return next((folder for folder in folders if folder.is_dir()), folders[0])


def end_to_end(model_names: list[str], batch: int, spec, protocol: argparse.Namespace) -> None:
    from sqnxt_compiler.models import build_model

    end_to_end_header(f"Batch {batch}, tuned vs default vs peers", spec, protocol,
                      ["model", "engine", "median ms", "vs ORT", "vs best peer"])
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in model_names:
            log = shipped_log(name, spec)
            if not log.is_dir():
                notes.append(f"{name}: no shipped log at {log.relative_to(REPO)}, so no tuned row")
            proto = build_model(name, batch=batch)
            data = model_input(proto)
            runners = {**peers_and_stock(proto, data, spec, protocol, notes),
                       "ours (default)": ours_runner(proto, data, Path(tmp) / "default", spec)}
            if log.is_dir():
                runners["ours (tuned)"] = ours_runner(proto, data, Path(tmp) / "tuned", spec, tuning_log=log)
            measured = side_by_side(runners, protocol.rounds, protocol.block, not protocol.no_spin, {"stock TVM"},
                                    protocol.stock_rounds, protocol.settle)
            for engine in measured.median_ms:
                print(f"| {name} | {engine} | {measured.cells(engine)} |", flush=True)
    print_notes(notes)


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
    e2e.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    add_protocol_arguments(e2e)
    spaces = sub.add_parser("spaces")
    spaces.add_argument("--model", default="1.0-SqNxt-23")
    spaces.add_argument("--top-tasks", type=int, default=4)
    spaces.add_argument("--trials", type=int, default=96)
    spaces.add_argument("--checkpoints", type=int, default=6)
    args = parser.parse_args(argv)
    restart_with_thread_settings(spin=args.command != "end-to-end" or not args.no_spin)
    if args.command == "end-to-end":
        spec = load_target_for_host(args.target)
        cap_peers(args, spec)
        end_to_end(args.models, args.batch, spec, args)
    else:
        compare_spaces(args.model, args.top_tasks, args.trials, args.checkpoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())

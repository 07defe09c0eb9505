"""Latency of SqueezeNext on this machine, side by side in one run: ONNX Runtime, stock TVM (`tvm.compile`
untuned on the same Relax import) and sqnxt-compiler with its default (untuned) schedules; then, per conv
layer, whether the output-stationary or the weight-stationary schedule wins and by how much.

    python benchmarks/latency.py                    # 1.0-SqNxt-23 and 1.0-SqNxt-23v5, batch 1 and 8
    python benchmarks/latency.py --models 1.0-SqNxt-23 --batches 1 --reps 20 --no-layers

Timings are medians over interleaved repetitions (each repetition runs every engine once, in turn), so
a load change on this shared machine hits all engines alike. Peak: --peak GFLOP/s (default 375, an FMA
loop on both cores of this 2-vCPU machine, see DESIGN.md).

TVM's runtime thread pool, left to itself, uses hardware_concurrency/2 threads on x86 (it assumes
hyper-threading): ONE thread on this 2-vCPU machine (the 7x7/2 stem: 2.43 ms with 1 thread, 1.23 ms with
2). It also pins workers to cores, and on this shared machine a pinned worker whose core is busy stalls
every parallel loop (1.0-SqNxt-23 batch 1: 46-66 ms pinned vs 9-17 ms unpinned, same conditions). So
the benchmark sets TVM_NUM_THREADS to the cores this process may use and TVM_BIND_THREADS=0, unless they
are already set or --tvm-runtime-defaults is given; it prints what it used. Neither engine's pool spins
between runs (TVM_THREAD_POOL_SPIN_COUNT=0, ORT allow_spinning=0): interleaved in one process, a spinning
idle pool took the core the other engine needed (ours measured 8-42 ms, bimodal, with both spinning).
ORT alone with spinning is somewhat faster at batch 1 (~3.5 ms vs ~4.7-6 ms here)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np


def _timer(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def ort_runner(proto, data: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Engines run interleaved in one process: an idle pool that keeps spinning steals the core the next
    # engine's workers need, so neither ORT nor TVM (TVM_THREAD_POOL_SPIN_COUNT=0) spins between runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: data})


def _vm_runner(executable, data: np.ndarray) -> Callable[[], object]:
    import tvm
    from tvm import relax

    device = tvm.cpu()
    vm = relax.VirtualMachine(executable, device)
    arg = tvm.runtime.tensor(data, device)
    return lambda: vm["main"](arg)


def stock_tvm_runner(proto, data: np.ndarray) -> Callable[[], object]:
    import tvm

    from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
    from sqnxt_compiler.target import load_target

    mod = import_to_relax(proto, resolve_inputs(proto))
    return _vm_runner(tvm.compile(mod, load_target("host").tvm_target()), data)


def ours_runner(proto, data: np.ndarray, workdir: Path, tuning_log: Path | None = None) -> Callable[[], object]:
    import sqnxt_compiler

    # one file per model and batch: a reused path would hand back the already-loaded library
    workdir.mkdir(parents=True, exist_ok=True)
    result = sqnxt_compiler.compile(proto, target="host", output=workdir / f"{proto.graph.name}_b{data.shape[0]}.so",
                                    tuning_log=tuning_log)
    model = sqnxt_compiler.load(result.library)
    return lambda: model.run(data)


def interleaved_medians(runners: dict[str, Callable[[], object]], reps: int, slow: set[str],
                        slow_reps: int) -> dict[str, float]:
    for run in runners.values():  # warm-up: first-touch allocations, thread pools
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(reps):
        for name, run in runners.items():
            if name in slow and rep >= slow_reps:
                continue
            times[name].append(_timer(run))
    return {name: statistics.median(t) for name, t in times.items()}


def end_to_end(models: list[str], batches: list[int], reps: int, stock_reps: int, peak: float) -> None:
    from sqnxt_compiler.models import build_model, model_counts

    print(f"\n## End to end on host (medians of interleaved reps; peak {peak:.0f} GFLOP/s)\n")
    print("| model | batch | engine | median ms | vs ORT | GFLOP/s | % peak |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            for batch in batches:
                proto = build_model(name, batch=batch)
                macs = model_counts(proto)[1]  # already for this batch
                data = np.random.default_rng(0).standard_normal((batch, 3, 227, 227)).astype("float32")
                runners = {"ONNX Runtime": ort_runner(proto, data), "stock TVM": stock_tvm_runner(proto, data),
                           "ours (default)": ours_runner(proto, data, Path(tmp))}
                medians = interleaved_medians(runners, reps, {"stock TVM"}, stock_reps)
                for engine, ms in medians.items():
                    gflops = 2 * macs / ms / 1e6
                    print(f"| {name} | {batch} | {engine} | {ms:.2f} | {ms / medians['ONNX Runtime']:.2f}x"
                          f" | {gflops:.1f} | {100 * gflops / peak:.0f}% |", flush=True)


def per_layer(model: str, reps: int) -> None:
    """Each single-conv kernel of the model, built alone with the OS and with the WS default schedule."""
    import tvm
    from tvm import s_tir

    from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
    from sqnxt_compiler.models import build_model
    from sqnxt_compiler.pipeline import PHASES, CompileContext, run_pipeline
    from sqnxt_compiler.schedules import conv2d_output_stationary as output_stationary
    from sqnxt_compiler.schedules import conv2d_weight_stationary as weight_stationary
    from sqnxt_compiler.schedules._common import find_conv, machine_knobs
    from sqnxt_compiler.schedules.dataflow_choice import choose
    from sqnxt_compiler.target import load_target

    spec = load_target("host")
    target = spec.tvm_target()
    machine = machine_knobs(spec)
    proto = build_model(model)
    lowering = [p for p in PHASES if p.name in ("fold_batchnorm", "legalize", "fuse_operators")]
    mod = run_pipeline(import_to_relax(proto, resolve_inputs(proto)), CompileContext(spec), lowering)
    print(f"\n## Per conv layer, {model} batch 1: OS vs WS default schedules (kernel alone, medians of "
          f"{reps} interleaved reps; each build packs its weights in the kernel, equally for both)\n")
    print("| kernel | conv | MMAC | OS ms | WS ms | winner | by | rule picks |")
    print("|---|---|---|---|---|---|---|---|")
    device = tvm.cpu()
    rows = []
    for gvar, func in sorted(mod.functions.items(), key=lambda kv: kv[0].name_hint):
        shape = find_conv(func) if isinstance(func, tvm.tirx.PrimFunc) else None
        if shape is None:
            continue
        args, kernels = None, {}
        for order, family in (("OS", output_stationary), ("WS", weight_stationary)):
            sch = s_tir.Schedule(func)
            family.apply(sch, spec)
            lib = tvm.compile(tvm.IRModule({"main": sch.mod["main"].with_attr("global_symbol", "main")}), target)
            if args is None:
                args = [tvm.runtime.tensor(np.random.default_rng(i).standard_normal(
                    [int(d) for d in p.ty.shape]).astype("float32"), device) for i, p in enumerate(func.params)]
            kernels[order] = lib.mod.time_evaluator("main", device, number=5, repeat=1)
        times = {order: [] for order in kernels}
        for _ in range(reps):
            for order, evaluator in kernels.items():
                times[order].append(evaluator(*args).mean * 1e3)
        os_ms, ws_ms = statistics.median(times["OS"]), statistics.median(times["WS"])
        winner = "OS" if os_ms <= ws_ms else "WS"
        conv = (f"{shape.kernel_h}x{shape.kernel_w}/{shape.stride_h} {shape.reduce_channels}->"
                f"{shape.out_channels} @{shape.out_height}x{shape.out_width}")
        rows.append((winner, choose(shape, machine)))
        print(f"| {gvar.name_hint} | {conv} | {shape.macs / 1e6:.2f} | {os_ms:.3f} | {ws_ms:.3f} | {winner} | "
              f"{max(os_ms, ws_ms) / min(os_ms, ws_ms):.2f}x | {rows[-1][1]} |", flush=True)
    agree = sum(w == c for w, c in rows)
    print(f"\nThe rule's pick matched the faster order on {agree} of {len(rows)} layers.")


def restart_with_thread_settings() -> None:
    """Re-exec this script with the thread settings of the module docstring in the environment (TVM's pool
    reads them when it starts; ours must not spin between interleaved runs of another engine)."""
    wanted = {"TVM_NUM_THREADS": str(len(os.sched_getaffinity(0))), "TVM_BIND_THREADS": "0",
              "TVM_THREAD_POOL_SPIN_COUNT": "0"}
    if any(name not in os.environ for name in wanted):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**wanted, **os.environ})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["1.0-SqNxt-23", "1.0-SqNxt-23v5"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--reps", type=int, default=15, help="interleaved repetitions (default 15)")
    parser.add_argument("--stock-reps", type=int, default=3, help="repetitions of the (slow) stock TVM build")
    parser.add_argument("--peak", type=float, default=375.0, help="machine peak GFLOP/s fp32 (default 375)")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer OS/WS table")
    parser.add_argument("--layer-reps", type=int, default=7)
    parser.add_argument("--tvm-runtime-defaults", action="store_true",
                        help="leave TVM's thread-pool defaults alone (see the module docstring)")
    args = parser.parse_args(argv)
    if not args.tvm_runtime_defaults:
        restart_with_thread_settings()
    print(f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', '(TVM default: cores/2 on x86)')}, "
          f"TVM_BIND_THREADS={os.environ.get('TVM_BIND_THREADS', '(TVM default: pinned)')}, "
          f"TVM_THREAD_POOL_SPIN_COUNT={os.environ.get('TVM_THREAD_POOL_SPIN_COUNT', '(TVM default)')}; "
          "ONNX Runtime: all cores, allow_spinning=0")
    end_to_end(args.models, args.batches, args.reps, args.stock_reps, args.peak)
    if not args.no_layers:
        per_layer(args.models[0], args.layer_reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())

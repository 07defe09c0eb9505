"""Latency of SqueezeNext on this machine, side by side in one run: the peers ONNX Runtime and OpenVINO (when
installed; `benchmarks/engines.py`), stock TVM (`tvm.compile` untuned on the same Relax import) and
sqnxt-compiler with its default (untuned) schedules, both built for --target (default host); then, per conv
layer, whether the output-stationary or the weight-stationary schedule wins and by how much; how much
slower our network runs than the sum of its kernels timed alone; what computing the 1x1 chains over
16-pixel chunks of the flattened image gains over rows padded to whole vectors, per kernel; and what the
polyphase Winograd stem gains over the direct conv.

    python benchmarks/latency.py                    # 1.0-SqNxt-23 and 1.0-SqNxt-23v5, batch 1 and 8
    python benchmarks/latency.py --models 1.0-SqNxt-23 --batches 1 --rounds 10 --no-layers
    python benchmarks/latency.py --target x86-avx2 --batch 8   # the AVX2 class, on this machine

Every table's heading names the target, its CPU class and the CPU it was measured on (/proc/cpuinfo's model
name, and whether it has AVX-512 F: an x86-avx2 build measured on an AVX-512 machine says so). Beside an x86-avx2
build the peers run their AVX2 kernels, as on an AVX2-only CPU (`--peers-isa`, `benchmarks/avx2_peers.py`).

Every engine runs with its production defaults for idle threads: the thread pools spin briefly between
runs (TVM's pool; ORT's allow_spinning; OpenVINO's, which has no such setting), as in a deployment that
serves requests back to back. Engines therefore run in blocks, not rep by rep: each round runs every engine
--block+1 times in turn (every other round in reverse order, so no engine always follows the same one or
comes last), after a pause of --settle seconds (default 0.3) in which the previous engine's idle
pool stops spinning, and drops the first run of each block (it wakes the pool); the median is over all kept
runs (rounds x block), so a load change on this shared machine still hits every engine, and "vs ORT" is the
median of the per-round ratios (`SideBySide`); "vs best peer" likewise, against the faster of ONNX Runtime
and OpenVINO in each round. Both pools spin far longer than one run: TVM's
workers ~100 ms after a run, ORT's ~40 ms; without the pause, ORT measured 8-13 ms for the ~9 runs after
a block of ours and ours 7.2-7.6 ms for ~5 runs after ORT (3.0 and 3.9 ms once the other pool slept), and
medians swung by 2x between runs of this script. Run rep by rep, a spinning pool took the core the
other engine needed (ours 8-42 ms).
`--no-spin` is the other fair protocol: neither pool spins (TVM_THREAD_POOL_SPIN_COUNT=0, ORT
allow_spinning=0; OpenVINO keeps its default) and engines interleave rep by rep. It penalises whoever
launches more parallel regions (each wakes a sleeping worker): 1.0-SqNxt-23 b1, ORT 2.95 ms spinning vs
4.17 ms not; ours tuned 4.64 vs 5.77 ms (tuned kernels parallelise more of the small kernels than the
defaults do).
"% of GEMM" is against what this machine's BLAS reaches on a 2048^3 fp32 GEMM (numpy/OpenBLAS, all cores),
measured at start (--peak overrides): the attainable ceiling, not the datasheet one. On the development
machine (AMD EPYC Zen 4, 2 vCPUs) that is ~205 GFLOP/s; a register-only FMA loop (12 independent chains,
gcc -O3) reaches 115 GFLOP/s per core with AVX-512 and the same with AVX2 (Zen 4 runs a 512-bit FMA on its
two 256-bit pipes), 230 for both. The 375 GFLOP/s quoted in DESIGN.md and in our earlier reports does not
hold on this machine, so earlier "% of peak" figures were ~40% too low.

TVM's runtime thread pool, left to itself, uses hardware_concurrency/2 threads on x86 (it assumes
hyper-threading): ONE thread on this 2-vCPU machine (the 7x7/2 stem: 2.43 ms with 1 thread, 1.23 ms with
2). It also pins workers to cores, and on this shared machine a pinned worker whose core is busy stalls
every parallel loop (1.0-SqNxt-23 batch 1: 46-66 ms pinned vs 9-17 ms unpinned, same conditions). So
the benchmark sets TVM_NUM_THREADS to the cores this process may use and TVM_BIND_THREADS=0 (what
`sqnxt_compiler.load` does too), unless they are already set or --tvm-runtime-defaults is given; it
prints what it used."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from avx2_peers import limit_peers_to_avx2  # noqa: E402
from engines import (PEERS, cpu_class, describe_target, engine_threads, load_target_for_host,  # noqa: E402
                     model_input, openvino_note, ours_runner, peer_runners, stock_tvm_runner)


def blas_gemm_gflops(size: int = 2048, reps: int = 5) -> float:
    """Best of `reps` fp32 GEMMs of size^3 through numpy's BLAS, in GFLOP/s: the attainable peak."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype("float32")
    a @ a  # warm-up: BLAS threads start
    best = min(_timer(lambda: a @ a) for _ in range(reps))
    return 2 * size ** 3 / best / 1e6


def _timer(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def peers_and_stock(proto, data: np.ndarray, spec, protocol: argparse.Namespace,
                    notes: list[str]) -> dict[str, Callable[[], object]]:
    """The engines every end-to-end table times before ours: the peers (`engines.peer_runners`, ONNX Runtime
    first), then stock TVM unless --stock-rounds is 0 (its untuned build takes ~30 s)."""
    runners = peer_runners(proto, data, not protocol.no_spin, notes)
    if protocol.stock_rounds > 0:
        runners["stock TVM"] = stock_tvm_runner(proto, data, spec)
    return runners


@dataclass
class SideBySide:
    """What `side_by_side` measured: per engine, the median ms over all kept runs; its ratio to the first
    engine (the reference, ONNX Runtime), taken round by round - this round's median / the reference's this
    round - and then the median of those ratios; and likewise its ratio to the best peer, this round's
    median / the fastest peer's median this round (ONNX Runtime or OpenVINO). The paired ratio is what to
    quote: this shared machine drifts between speed modes for seconds at a time (the same build measured 3.2
    and 4.6 ms), and a drift within a round hits both engines of a pair, while one that straddles rounds can
    move one engine's overall median alone."""

    median_ms: dict[str, float]
    ratio: dict[str, float]
    vs_best_peer: dict[str, float]

    def cells(self, engine: str) -> str:
        """The "median ms | vs ORT | vs best peer" cells of `engine`'s row."""
        return f"{self.median_ms[engine]:.2f} | {self.ratio[engine]:.2f}x | {self.vs_best_peer[engine]:.2f}x"


def side_by_side(runners: dict[str, Callable[[], object]], rounds: int, block: int, spin: bool,
                 slow: set[str], slow_rounds: int, settle_s: float) -> SideBySide:
    """Time the engines under the protocol of the module docstring: blocks of `block` kept runs per engine
    and round when pools spin, else one run per engine and rep (rounds x block reps). Engines in `slow` run
    once per round, in the first `slow_rounds` rounds. The first engine is the reference of `ratio`; the
    engines named in `engines.PEERS` are the peers of `vs_best_peer`."""
    if not spin:
        rounds, block = rounds * block, 1
    for run in runners.values():  # warm-up: first-touch allocations, thread pools
        run()
    per_round: dict[str, list[list[float]]] = {name: [] for name in runners}
    in_order = list(runners.items())
    for round_index in range(rounds):
        for name, run in (in_order if round_index % 2 == 0 else in_order[::-1]):
            if name in slow:
                if round_index < slow_rounds:
                    per_round[name].append([_timer(run)])
                continue
            if spin:
                time.sleep(settle_s)  # the previous engine's pool stops spinning
                run()  # dropped: it wakes this engine's pool
            per_round[name].append([_timer(run) for _ in range(block)])
    measured = {name: [statistics.median(b) for b in blocks]  # --stock-rounds 0: not measured
                for name, blocks in per_round.items() if blocks}
    reference = measured[next(iter(runners))]
    best_peer = [min(round_ms) for round_ms in zip(*(measured[name] for name in PEERS if name in measured))]

    def paired(against: list[float]) -> dict[str, float]:
        return {name: statistics.median(ms / ref for ms, ref in zip(round_ms, against))
                for name, round_ms in measured.items()}

    return SideBySide({name: statistics.median(t for b in blocks for t in b)
                       for name, blocks in per_round.items() if blocks}, paired(reference), paired(best_peer))


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="host", help="the target ours and stock TVM are built for: a name "
                        "in targets/ (host, x86-avx2, x86-avx512, ...) or a .toml path (default host)")
    parser.add_argument("--rounds", type=int, default=12, help="rounds over the engines (default 12)")
    parser.add_argument("--block", type=int, default=8, help="kept runs per engine and round (default 8)")
    parser.add_argument("--stock-rounds", type=int, default=3, help="runs of the (slow) stock TVM build (0: skip)")
    parser.add_argument("--settle", type=float, default=0.3, help="seconds of pause before each block (default 0.3)")
    parser.add_argument("--no-spin", action="store_true", help="idle pools sleep; engines interleave rep by rep")
    parser.add_argument("--peers-isa", choices=["auto", "avx2", "native"], default="auto",
                        help="the peers' instruction set: avx2 caps ONNX Runtime and OpenVINO at their AVX2 kernels on "
                        "an AVX-512 machine (benchmarks/avx2_peers.py); auto (default) does so for an x86-avx2 build")


def cap_peers(protocol: argparse.Namespace, spec) -> None:
    """Cap the peers at AVX2 as `--peers-isa` asks, before they are imported; the table header says what was done."""
    wanted = protocol.peers_isa
    if wanted == "auto":
        wanted = "avx2" if cpu_class(spec) == "x86-avx2" else "native"
    protocol.peers_note = limit_peers_to_avx2(required=protocol.peers_isa == "avx2") if wanted == "avx2" else ""


def describe_protocol(spin: bool, settle_s: float) -> str:
    return (f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', '(TVM default: cores/2 on x86)')}, "
            f"TVM_BIND_THREADS={os.environ.get('TVM_BIND_THREADS', '(TVM default: pinned)')}, "
            f"TVM_THREAD_POOL_SPIN_COUNT={os.environ.get('TVM_THREAD_POOL_SPIN_COUNT', '(TVM default)')}; "
            f"ONNX Runtime: {engine_threads()} threads, allow_spinning={int(spin)}; "
            f"OpenVINO: {engine_threads()} threads, its default idle policy; "
            + (f"engines in blocks after a {settle_s:g} s pause, first run of each block dropped" if spin
               else "engines interleaved rep by rep"))


def end_to_end_header(title: str, spec, protocol: argparse.Namespace, columns: list[str], extra: str = "") -> None:
    """The heading of an end-to-end table: what was built for which CPU, on which CPU, under which protocol."""
    print(f"\n## {title}: {describe_target(spec)}\n")
    print(f"Medians; {describe_protocol(not protocol.no_spin, protocol.settle)}; \"vs ORT\" and \"vs best peer\" "
          f"(our time / min(ONNX Runtime, OpenVINO)): medians of per-round ratios.{extra} {openvino_note()}"
          + (f" {protocol.peers_note}" if getattr(protocol, "peers_note", "") else "") + "\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def print_notes(notes: list[str]) -> None:
    if notes:
        print("\n" + "\n".join(f"- {note}" for note in notes))


def end_to_end(models: list[str], batches: list[int], spec, protocol: argparse.Namespace, peak: float) -> None:
    from sqnxt_compiler.models import build_model, model_counts

    end_to_end_header("End to end", spec, protocol,
                      ["model", "batch", "engine", "median ms", "vs ORT", "vs best peer", "GFLOP/s", "% of GEMM"],
                      f" \"% of GEMM\": of {peak:.0f} GFLOP/s, an fp32 GEMM through BLAS.")
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            for batch in batches:
                proto = build_model(name, batch=batch)
                macs = model_counts(proto)[1]  # already for this batch
                data = model_input(proto)
                runners = {**peers_and_stock(proto, data, spec, protocol, notes),
                           "ours (default)": ours_runner(proto, data, Path(tmp), spec)}
                measured = side_by_side(runners, protocol.rounds, protocol.block, not protocol.no_spin,
                                        {"stock TVM"}, protocol.stock_rounds, protocol.settle)
                for engine, ms in measured.median_ms.items():
                    gflops = 2 * macs / ms / 1e6
                    print(f"| {name} | {batch} | {engine} | {measured.cells(engine)}"
                          f" | {gflops:.1f} | {100 * gflops / peak:.0f}% |", flush=True)
    print_notes(notes)


def _random_arguments(func, device) -> list:
    """Random tensors for every argument of a PrimFunc (inputs and output), argument i seeded with i."""
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    return [tvm.runtime.tensor(np.random.default_rng(i).standard_normal([int(d) for d in a.shape]).astype(a.dtype),
                               device) for i, a in enumerate(ArgInfo.from_prim_func(func))]


def per_layer(model: str, reps: int, spec) -> None:
    """Each single-conv kernel of the model, built alone with the OS and with the WS default schedule."""
    import tvm
    from tvm import s_tir

    from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
    from sqnxt_compiler.models import build_model
    from sqnxt_compiler.pipeline import GRAPH_REWRITES, LOWERING, CompileContext, run_pipeline
    from sqnxt_compiler.schedules import conv2d_output_stationary as output_stationary
    from sqnxt_compiler.schedules import conv2d_weight_stationary as weight_stationary
    from sqnxt_compiler.schedules._common import find_conv, machine_knobs
    from sqnxt_compiler.schedules.dataflow_choice import choose

    target = spec.tvm_target()
    machine = machine_knobs(spec)
    proto = build_model(model)
    lowering = [p for p in GRAPH_REWRITES if p.name == "fold_batchnorm"] + LOWERING
    mod = run_pipeline(import_to_relax(proto, resolve_inputs(proto)), CompileContext(spec), lowering)
    print(f"\n## Per conv layer, {model} batch 1, target {spec.name}: OS vs WS default schedules (kernel alone, "
          f"medians of {reps} interleaved reps; each build packs its weights in the kernel, equally for both)\n")
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
                args = _random_arguments(func, device)
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


def _scheduled_module(model: str, spec):
    """`model` (batch 1) through every phase but the VM lowering: its kernels, scheduled by default."""
    from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
    from sqnxt_compiler.models import build_model
    from sqnxt_compiler.pipeline import SCHEDULING, UNSCHEDULED, CompileContext, run_pipeline

    proto = build_model(model)
    return run_pipeline(import_to_relax(proto, resolve_inputs(proto)), CompileContext(spec),
                        UNSCHEDULED + SCHEDULING)


def _interleaved_medians_us(funcs: list, target, reps: int) -> list[float]:
    """Median time in us of each PrimFunc (on random arguments), built alone and timed in interleaved reps."""
    import tvm

    device = tvm.cpu()
    arguments = [_random_arguments(f, device) for f in funcs]
    timers = [tvm.compile(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), target).mod
              .time_evaluator("main", device, number=10, repeat=1) for f in funcs]
    times: list[list[float]] = [[] for _ in funcs]
    for _ in range(reps):
        for timer, args, measured in zip(timers, arguments, times):
            measured.append(timer(*args).mean * 1e6)
    return [statistics.median(t) for t in times]


def _built_with_and_without(model: str, module, predicate: str, spec) -> tuple:
    """(target, `model`'s kernels as built, as built with `module.predicate` always False): the same
    model with and without one of the pipeline's choices, both with default schedules."""
    from unittest import mock

    built = _scheduled_module(model, spec)
    with mock.patch.object(module, predicate, lambda *_: False):
        without = _scheduled_module(model, spec)
    return spec.tvm_target(), built, without


def _comparison_header(title: str, reps: int, columns: list[str]) -> None:
    print(f"\n## {title} (kernel alone, default schedules, medians of {reps} interleaved reps)\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def pixel_chunks_vs_rows(model: str, reps: int, spec) -> None:
    """Each pointwise-chain kernel of the model (1x1 reduce pair, 1x1 expand + residual + ReLU) as built
    (over 16-pixel chunks of the flattened image) and as the row kernel the fusion passes build otherwise
    (rows padded to whole vectors), both with their default schedules, timed alone and interleaved."""
    import tvm

    from sqnxt_compiler import kernels
    from sqnxt_compiler.kernels.contract import MACS_ATTR, pixel_chunked

    target, chunked, rows = _built_with_and_without(model, kernels, "is_pointwise_chain", spec)
    _comparison_header(f"{model} batch 1, target {spec.name}: 1x1 chains over pixel chunks vs padded rows", reps,
                       ["kernel", "output", "MMAC", "rows us", "chunks us", "speedup"])
    for gvar, func in sorted(chunked.functions.items(), key=lambda kv: kv[0].name_hint):
        if not isinstance(func, tvm.tirx.PrimFunc) or not pixel_chunked(func):
            continue
        row_us, chunk_us = _interleaved_medians_us([rows[gvar.name_hint], func], target, reps)
        output = "x".join(str(d) for d in func.params[-1].ty.shape[1:])
        print(f"| {gvar.name_hint} | {output} | {int(func.attrs[MACS_ATTR]) / 1e6:.2f} | {row_us:.1f} | "
              f"{chunk_us:.1f} | {row_us / chunk_us:.2f}x |", flush=True)


def winograd_vs_direct(model: str, reps: int, spec) -> None:
    """The model's stem as built (polyphase Winograd along rows or over tiles, with the max pool after it when
    the pass takes it) and as the direct conv kernel the pipeline builds without the winograd_stem phase (the
    column conv of `passes/few_channel_conv.py`, with the max pool when it takes it, else + the separate max
    pool), all with their default schedules, alone."""
    import tvm

    from sqnxt_compiler.kernels.contract import (MACS_ATTR, POOL_ATTR, WINOGRAD_STEM, WINOGRAD_STEM_TILES,
                                                 fusion_pattern)
    from sqnxt_compiler.passes import winograd_stem

    target, winograd, direct = _built_with_and_without(model, winograd_stem, "is_winograd_stem", spec)
    _comparison_header(f"{model} batch 1, target {spec.name}: stride-2 stem as polyphase Winograd vs direct", reps,
                       ["stem", "output", "MMAC", "direct ms", "Winograd ms", "speedup"])
    direct_funcs = {gv.name_hint: f for gv, f in direct.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    for gvar, func in winograd.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc) or fusion_pattern(func) not in (WINOGRAD_STEM, WINOGRAD_STEM_TILES):
            continue
        data_shape, out_shape = ([int(d) for d in p.ty.shape] for p in (func.params[0], func.params[-1]))
        # the generic conv2d, or the column conv that takes a stem on few channels (`passes/few_channel_conv.py`)
        baseline = [next(f for name, f in direct_funcs.items() if "conv" in name
                         and [int(d) for d in f.params[0].ty.shape] == data_shape)]
        if POOL_ATTR in func.attrs and POOL_ATTR not in baseline[0].attrs:  # the column conv takes stride-2 pools
            baseline.append(next(f for name, f in direct_funcs.items() if "max_pool2d" in name
                                 and [int(d) for d in f.params[-1].ty.shape] == out_shape))
        *direct_us, winograd_us = _interleaved_medians_us([*baseline, func], target, reps)
        window = int(func.attrs[POOL_ATTR]) if POOL_ATTR in func.attrs else 0
        pool = f" + max pool {window}x{window}" if window else ""
        print(f"| {gvar.name_hint}{pool} | {'x'.join(map(str, out_shape[1:]))} | "
              f"{int(func.attrs[MACS_ATTR]) / 1e6:.1f} | {sum(direct_us) / 1e3:.3f} | {winograd_us / 1e3:.3f} | "
              f"{sum(direct_us) / winograd_us:.2f}x |", flush=True)


def network_vs_kernels(model: str, rounds: int, spec) -> None:
    """Our default build of `model` (batch 1) end to end vs the sum of its kernels, each built and timed
    alone (x its number of calls), alternating in rounds: how much the network loses to launches, the VM
    and caches that a kernel timed alone keeps warm."""
    import collections

    import tvm
    from tvm import relax

    from sqnxt_compiler.models import build_model
    from sqnxt_compiler.pipeline import FINALIZING, CompileContext, run_pipeline

    target = spec.tvm_target()
    scheduled = _scheduled_module(model, spec)
    calls: collections.Counter = collections.Counter()
    relax.analysis.post_order_visit(scheduled["main"].body, lambda e: calls.update(
        [e.args[0].name_hint] if isinstance(e, relax.Call) and e.op.name == "relax.call_tir" else []))
    device = tvm.cpu()
    kernels = []
    for gvar, func in scheduled.functions.items():
        if gvar.name_hint in calls:
            lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
            kernels.append((lib.mod.time_evaluator("main", device, number=1, repeat=30),
                            _random_arguments(func, device), calls[gvar.name_hint]))
    lowered = run_pipeline(scheduled, CompileContext(spec), FINALIZING)
    network = relax.VirtualMachine(relax.build(lowered, target, relax_pipeline=None), device)["main"]
    data = tvm.runtime.tensor(model_input(build_model(model)), device)
    alone, whole = [], []
    for _ in range(rounds):
        alone.append(sum(statistics.median(ev(*args).results) * count for ev, args, count in kernels) * 1e3)
        time.sleep(0.3)
        for _ in range(10):
            network(data)
        whole.append(statistics.median(_timer(lambda: network(data)) for _ in range(100)))
    print(f"\n## {model} batch 1, ours (default, target {spec.name}): network vs its kernels alone (medians of "
          f"{rounds} rounds)\n")
    print("| kernels | calls | sum of kernels alone | network | network / sum |")
    print("|---|---|---|---|---|")
    print(f"| {len(kernels)} | {sum(calls.values())} | {statistics.median(alone):.3f} ms | "
          f"{statistics.median(whole):.3f} ms | {statistics.median(whole) / statistics.median(alone):.2f}x |")


def restart_with_thread_settings(spin: bool = True) -> None:
    """Re-exec this script with the thread settings of the module docstring in the environment (TVM's pool
    reads them when it starts)."""
    wanted = {"TVM_NUM_THREADS": str(engine_threads()), "TVM_BIND_THREADS": "0"}
    if not spin:
        wanted["TVM_THREAD_POOL_SPIN_COUNT"] = "0"
    if any(name not in os.environ for name in wanted):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**wanted, **os.environ})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["1.0-SqNxt-23", "1.0-SqNxt-23v5"])
    parser.add_argument("--batches", "--batch", nargs="+", type=int, default=[1, 8], help="batch sizes of the "
                        "end-to-end table (default 1 8)")
    add_protocol_arguments(parser)
    parser.add_argument("--peak", type=float, help="peak GFLOP/s fp32 for the %% column (default: measured, a "
                        "2048^3 GEMM through numpy's BLAS)")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer OS/WS table")
    parser.add_argument("--layer-reps", type=int, default=7)
    parser.add_argument("--no-gap", action="store_true", help="skip the network vs kernels-alone table")
    parser.add_argument("--no-chunks", action="store_true", help="skip the pixel chunks vs padded rows table")
    parser.add_argument("--no-winograd", action="store_true", help="skip the Winograd vs direct stem table")
    parser.add_argument("--tvm-runtime-defaults", action="store_true",
                        help="leave TVM's thread-pool defaults alone (see the module docstring)")
    args = parser.parse_args(argv)
    if not args.tvm_runtime_defaults:
        restart_with_thread_settings(spin=not args.no_spin)
    spec = load_target_for_host(args.target)
    cap_peers(args, spec)
    end_to_end(args.models, args.batches, spec, args, args.peak or blas_gemm_gflops())
    if not args.no_gap:
        network_vs_kernels(args.models[0], 5, spec)
    if not args.no_chunks:
        pixel_chunks_vs_rows(args.models[0], args.layer_reps, spec)
    if not args.no_winograd:
        for model in args.models:
            winograd_vs_direct(model, args.layer_reps, spec)
    if not args.no_layers:
        per_layer(args.models[0], args.layer_reps, spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())

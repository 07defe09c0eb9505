"""Intermediate bytes written and latency of 1.0-SqNxt-23 on the host, with and without the fusion passes.

    python benchmarks/fusion.py [--model 1.0-SqNxt-23] [--rounds 15] [--runs 5] [--granularity]

"Intermediate bytes" sums the outputs of every kernel call in the compiled graph except the model's
output: each is written to memory once per inference. Latencies are interleaved (one batch of runs of
each variant per round, so the machine's load hits every variant alike) and reported as medians.
`--granularity` also builds the larger fusion groupings we measured before choosing the shipped one:
the low-rank pair merged with the expand epilogue, and the whole residual branch in one kernel.
As `benchmarks/latency.py` does, TVM's pool runs on every core this process may use, unpinned
(TVM_NUM_THREADS, TVM_BIND_THREADS=0; TVM's own default is half the cores, pinned), unless set already."""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import tvm
from tvm import relax

from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.models import build_model
from sqnxt_compiler.passes.fuse_bottleneck import residual_epilogue
from sqnxt_compiler.passes._conv_graph import ConvGraph, rewrite_module
from sqnxt_compiler.pipeline import PHASES, CompileContext, Phase, run_pipeline
from sqnxt_compiler.target import load_target
from sqnxt_compiler.verify import reference_outputs, relative_error

FUSION_PHASES = {"fuse_low_rank", "fuse_bottleneck"}


def _grouped_branch(stages: int) -> Phase:
    """An alternative granularity: the expand epilogue absorbs up to `stages - 1` producer convs."""

    def plan(graph: ConvGraph) -> dict:
        plans = {}
        for var in graph.order:
            found = residual_epilogue(graph, var)
            if found is None:
                continue
            chain, shortcut, final_relu = [found[0]], found[1], found[2]
            while len(chain) < stages and (producer := graph.producer_unit(chain[0])) is not None:
                chain.insert(0, producer)
            plans[var] = lambda rw, units=tuple(chain), s=shortcut, relu=final_relu: rw.emit_chain(
                units, "expand_epilogue", s, relu)
        return plans

    return Phase(f"fuse_branch_{stages}", lambda mod, _ctx: rewrite_module(mod, plan), "experiment")


def variants(granularity: bool) -> dict[str, list[Phase]]:
    unfused = [p for p in PHASES if p.name not in FUSION_PHASES]
    found = {"unfused": unfused, "fused (shipped: reduce pair | low-rank pair | expand+add+relu)": PHASES}
    if granularity:
        bottleneck = next(p for p in PHASES if p.name == "fuse_bottleneck")
        found["reduce pair | low-rank pair+expand+add+relu"] = [unfused[0], _grouped_branch(3), bottleneck,
                                                                *unfused[1:]]
        found["whole residual branch in one kernel"] = [unfused[0], _grouped_branch(5), *unfused[1:]]
    return found


def intermediate_bytes(mod: tvm.IRModule) -> tuple[int, int]:
    """(bytes, kernel calls) of the kernel outputs main writes, its own output excluded."""
    func = mod["main"]
    output = func.body.body
    total = calls = 0
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if not (isinstance(value, relax.Call) and value.op == tvm.ir.Op.get("relax.call_tir")):
                continue
            calls += 1
            if binding.var.same_as(output):
                continue
            ty = binding.var.ty
            for t in (ty.fields if isinstance(ty, relax.TupleType) else [ty]):
                total += int(np.prod([int(d) for d in t.shape])) * tvm.DataType(t.dtype).bits // 8
    return total, calls


def build(model, phases: list[Phase], spec):
    mod = import_to_relax(model, resolve_inputs(model))
    lowered = run_pipeline(mod, CompileContext(spec), [p for p in phases if p.name != "lower_to_vm"])
    stats = intermediate_bytes(lowered)
    final = run_pipeline(lowered, CompileContext(spec), [p for p in phases if p.name == "lower_to_vm"])
    executable = tvm.compile(final, spec.tvm_target(), relax_pipeline=None)
    return relax.VirtualMachine(executable, tvm.cpu()), stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="1.0-SqNxt-23")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=5, help="runs of each variant per round")
    parser.add_argument("--granularity", action="store_true", help="also measure the larger fusion groupings")
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0))))  # before TVM's pool starts
    os.environ.setdefault("TVM_BIND_THREADS", "0")
    print(f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']} TVM_BIND_THREADS={os.environ['TVM_BIND_THREADS']}")

    spec = load_target("host")
    model = build_model(args.model)
    data = np.random.default_rng(0).standard_normal(resolve_inputs(model)[0].shape).astype("float32")
    expected = reference_outputs(model, {model.graph.input[0].name: data})[0]
    built = {}
    for name, phases in variants(args.granularity).items():
        start = time.perf_counter()
        vm, stats = build(model, phases, spec)
        x = tvm.runtime.tensor(data)
        error = relative_error(vm["main"](x).numpy(), expected)
        built[name] = (vm, x, stats)
        print(f"built {name}: {time.perf_counter() - start:.0f} s, rel. error vs ONNX Runtime {error:.1e}", flush=True)

    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(args.rounds):
        for name, (vm, x, _) in built.items():
            vm["main"](x)  # warm the caches for this variant
            for _ in range(args.runs):
                start = time.perf_counter()
                vm["main"](x)
                times[name].append((time.perf_counter() - start) * 1e3)

    base_bytes, _ = built["unfused"][2]
    base_ms = statistics.median(times["unfused"])
    print(f"\n{args.model} on host, batch 1; {args.rounds} interleaved rounds x {args.runs} runs")
    print(f"{'variant':62s} {'kernels':>7s} {'intermediate MB':>15s} {'median ms':>9s} {'vs unfused':>10s}")
    for name, (_, _, (nbytes, calls)) in built.items():
        ms = statistics.median(times[name])
        print(f"{name:62s} {calls:7d} {nbytes / 1e6:9.2f} ({nbytes / base_bytes:4.0%}) {ms:9.2f} {base_ms / ms:9.2f}x")


if __name__ == "__main__":
    main()

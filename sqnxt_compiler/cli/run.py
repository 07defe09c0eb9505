"""`sqnxt-run`: load a compiled library with the TVM runtime, run it on an input, print or save the output."""

from __future__ import annotations

import os
import time

from ..emulation import EMULATED_VARIABLE
from ..errors import SqnxtError
from ..outputs import check_output_file
from .common import ArgumentParser, entry_point, load_npy, print_prediction, random_inputs, save_npy


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="sqnxt-run", description=__doc__)
    p.add_argument("library", help="a .so written by sqnxt-compile (its .so.json sidecar beside it)")
    p.add_argument("--input", action="append", metavar="FILE.npy",
                   help="input array(s), in the model's input order; default: a seeded random input")
    p.add_argument("--output", metavar="FILE.npy", help="save the first output here")
    p.add_argument("--repeat", type=int, help="timed runs (default: 10, or 0 for accelerator libraries, whose "
                                               "run time is the simulator's; 0 skips timing)")
    p.add_argument("--top", type=int, default=5, help="how many classes to print")
    p.add_argument("--rpc", metavar="HOST:PORT",
                   help="run on a remote board through this TVM RPC tracker (uploads the library)")
    p.add_argument("--rpc-key", metavar="KEY", help="the board's key at the tracker (with --rpc)")
    args = p.parse_args(argv)
    if bool(args.rpc) != bool(args.rpc_key):
        raise SqnxtError("--rpc and --rpc-key go together: --rpc HOST:PORT --rpc-key KEY")
    if args.output:   # before the run, which may take long (a remote or simulated model)
        check_output_file(args.output, "--output file", example="out.npy")

    if args.rpc:
        from ..remote import load_remote

        model = load_remote(args.library, args.rpc, args.rpc_key)
    else:
        from ..runtime import load

        model = load(args.library)
    declared = model.meta.get("inputs")
    if args.input:
        inputs = [load_npy(path) for path in args.input]
    elif declared:
        inputs = random_inputs([tuple(i["shape"]) for i in declared], [i["dtype"] for i in declared])
        print("no --input given: using a seeded random input")
    else:
        raise SqnxtError(f"'{args.library}' has no .json sidecar describing its inputs; pass --input FILE.npy")
    started = time.perf_counter()
    outputs = model.run(*inputs)
    elapsed = time.perf_counter() - started
    accel = bool(model.meta.get("accel") or model.accel_reports)
    repeat = args.repeat if args.repeat is not None else (0 if accel else 10)
    latencies = [t * 1e3 for t in model.benchmark(*inputs, repeat=repeat)] if repeat > 0 else None
    print_prediction(outputs, latencies, args.top)
    if accel:
        print(model.accel_summary())
        print(f"one run took {elapsed:.2f} s of wall time (host kernels + the Python simulator; not a latency)")
    if latencies and args.rpc:
        print(f"(latency timed on the board with key '{args.rpc_key}'; meaningless if that board is emulated)")
    elif latencies and os.environ.get(EMULATED_VARIABLE):
        print(f"(latency measured under {os.environ[EMULATED_VARIABLE]} emulation: meaningless as ARM speed)")
    if args.output:
        save_npy(args.output, outputs[0])
        print(f"wrote {args.output}")
    return 0

"""`sqnxt-run`: load a compiled library with the TVM runtime, run it on an input, print or save the output."""

from __future__ import annotations

import argparse

from ..errors import SqnxtError
from .common import entry_point, load_npy, print_prediction, random_inputs, save_npy


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sqnxt-run", description=__doc__)
    p.add_argument("library", help="a .so written by sqnxt-compile (its .so.json sidecar beside it)")
    p.add_argument("--input", action="append", metavar="FILE.npy",
                   help="input array(s), in the model's input order; default: a seeded random input")
    p.add_argument("--output", metavar="FILE.npy", help="save the first output here")
    p.add_argument("--repeat", type=int, default=10, help="timed runs (default: 10; 0 to skip timing)")
    p.add_argument("--top", type=int, default=5, help="how many classes to print")
    args = p.parse_args(argv)

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
    outputs = model.run(*inputs)
    latencies = [t * 1e3 for t in model.benchmark(*inputs, repeat=args.repeat)] if args.repeat > 0 else None
    print_prediction(outputs, latencies, args.top)
    if args.output:
        save_npy(args.output, outputs[0])
        print(f"wrote {args.output}")
    return 0

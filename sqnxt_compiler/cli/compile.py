"""`sqnxt-compile`: compile an ONNX model (or a built-in one) into a shared library for a target."""

from __future__ import annotations

import argparse
import sys

from ..errors import SqnxtError
from .common import (ArgumentParser, add_model_arguments, entry_point, model_from_arguments, print_latency,
                     print_prediction, random_inputs)


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="sqnxt-compile", description=__doc__)
    add_model_arguments(p)
    p.add_argument("-o", "--output", help="output library path (default: <model>_<target>.so)")
    p.add_argument("--calibrate", metavar="IMAGES.npy",
                   help="accelerator targets: int8 calibration images, shape (N, C, H, W) like the model's input "
                        "(default: a few synthetic inputs)")
    p.add_argument("--dataflow", choices=("ws", "os"), default="ws",
                   help="accelerator targets: weight- or output-stationary tilings (default: ws)")
    p.add_argument("--tuning-log", metavar="DIR",
                   help="apply tuning records written by sqnxt-tune (accelerator targets: tuned per-layer tilings)")
    p.add_argument("--dump-ir", metavar="DIR", help="write the module after every pipeline phase into DIR")
    p.add_argument("--explain", action="store_true", help="print what each pipeline phase did")
    p.add_argument("--run", action="store_true",
                   help="after building, load the library, run it once, print top-5 and latency, and check "
                        "the output against ONNX Runtime when it is installed; a model trained on the digits "
                        "(1.0-SqNxt-23-digits) classifies the held-out split and prints its accuracy instead")
    p.add_argument("--repeat", type=int, default=20, help="timed runs for --run (default: 20)")
    p.add_argument("--list-targets", action="store_true", help="list the built-in targets and exit")
    p.add_argument("--list-ops", action="store_true", help="list the supported ONNX operators and exit")
    return p


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list_targets:
        from ..target import known_targets, load_target

        for name in known_targets():
            print(f"{name:12s} {load_target(name).description}")
        return 0
    if args.list_ops:
        from ..frontend import supported_operators

        print(" ".join(supported_operators()))
        return 0
    from ..compiler import compile as compile_model
    from ..frontend import parse_input_shapes

    model, _ = model_from_arguments(args)
    result = compile_model(model, target=args.target, output=args.output,
                           input_shapes=parse_input_shapes(args.input_shape), tuning_log=args.tuning_log,
                           dump_ir=args.dump_ir, calibration=args.calibrate, dataflow=args.dataflow)
    shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in result.inputs)
    llvm = result.target.llvm
    if result.accel is not None:
        accel = result.accel
        tilings = (f"tuned tilings for {accel['tuned_layers']} of them" if accel["tuned_layers"]
                   else f"{accel['dataflow'].upper()} dataflow")
        print(f"wrote {result.library} (target {result.target.name}: {accel['layers']} conv/dense layers on the "
              f"accelerator, {tilings}, the rest on this host's CPU; inputs {shapes}) and {result.sidecar}")
        if accel["calibration"].endswith("synthetic inputs"):
            print(f"note: {result.notes['quantize'][0]}")
        else:
            print(f"int8 {result.notes['quantize'][0]}")
    else:
        print(f"wrote {result.library} (target {result.target.name}: {llvm.get('mtriple', 'host')} "
              f"{llvm.get('mcpu', '')}; inputs {shapes}) and {result.sidecar}")
    if args.explain:
        _explain(result.notes, accel=result.accel is not None)
    if args.run:
        _run_and_check(result, model, args.repeat)
    return 0


def _explain(notes: dict[str, list[str]], accel: bool = False) -> None:
    from ..pipeline import ACCEL_PHASES, PHASES

    if "quantize" in notes:
        print("[quantize] int8 post-training quantization (ONNX Runtime, QDQ)")
        for line in notes["quantize"]:
            print(f"    {line}")
    for phase in ACCEL_PHASES if accel else PHASES:
        print(f"[{phase.name}] {phase.doc}")
        for line in notes.get(phase.name, []):
            print(f"    {line}")


def _run_and_check(result, model, repeat: int) -> None:
    from ..models.digits import DATASET, model_dataset
    from ..runtime import load
    from ..verify import onnxruntime_available, reference_outputs, relative_error

    if result.target.is_cross:
        print(f"--run: {result.library} is built for {result.target.triple}; copy it to the board and use "
              "sqnxt-run there", file=sys.stderr)
        return
    loaded = load(result.library)
    if model_dataset(model) == DATASET:
        _classify_digits(result, loaded, model, repeat)
        return
    inputs = random_inputs([i.shape for i in result.inputs], [i.dtype for i in result.inputs])
    if result.accel is not None:
        _run_accel(result, loaded, model, inputs)
        return
    outputs = loaded.run(*inputs)
    latencies = [t * 1e3 for t in loaded.benchmark(*inputs, repeat=repeat)]
    print_prediction(outputs, latencies)
    if onnxruntime_available():
        expected = reference_outputs(model, {i.name: x for i, x in zip(result.inputs, inputs)})
        error = max(relative_error(a, e) for a, e in zip(outputs, expected))
        verdict = "OK" if error <= 1e-4 else "MISMATCH"
        print(f"check vs ONNX Runtime: max relative error {error:.2e} ({verdict}, bound 1e-4)")
        if error > 1e-4:
            raise SqnxtError(f"compiled output differs from ONNX Runtime (relative error {error:.2e} > 1e-4)")
    else:
        print("check vs ONNX Runtime: skipped (pip install onnxruntime to enable it)")


def _run_accel(result, loaded, model, inputs) -> None:
    """An accelerator library: one run (the simulator's wall time is no latency), the simulated totals, and how
    close int8 is to float ONNX Runtime (cosine; int8 differs from float by design)."""
    import time

    from ..verify import onnxruntime_available, reference_outputs

    started = time.perf_counter()
    outputs = loaded.run(*inputs)
    elapsed = time.perf_counter() - started
    print_prediction(outputs, None)
    print(loaded.accel_summary())
    print(f"one run took {elapsed:.2f} s of wall time (host kernels + the Python simulator; not a latency)")
    if onnxruntime_available():
        from ..accel.int8.accuracy import compare_logits

        expected = reference_outputs(model, {i.name: x for i, x in zip(result.inputs, inputs)})
        cosine = compare_logits(expected[0], outputs[0])["cosine_min"]
        print(f"check vs float ONNX Runtime: cosine similarity {cosine:.5f} (int8 vs float32)")


def _classify_digits(result, loaded, model, repeat: int) -> None:
    """A model trained on the digits: the held-out split through the library and through float ONNX Runtime,
    both top-1 accuracies and how often the two agree; then the latency of one batch (CPU builds)."""
    import time

    from ..models.digits import SPLIT_SEED, digits, predict, top1
    from ..verify import reference_session, relative_error

    info = result.inputs[0]
    images, labels = digits("test", info.shape[-1])
    started = time.perf_counter()
    ours = predict(lambda x: loaded.run(x)[0], images, info.shape[0])
    elapsed = time.perf_counter() - started
    session = reference_session(model)
    expected = predict(lambda x: session.run(None, {info.name: x})[0], images, info.shape[0])
    same = int((ours.argmax(1) == expected.argmax(1)).sum())
    build = "this int8 accelerator build" if result.accel is not None else "this build"
    print(f"held-out digits: {len(images)} images of scikit-learn's load_digits (split seed {SPLIT_SEED}), "
          "never seen in training")
    print(f"top-1: {build} {top1(ours, labels):.2%}, ONNX Runtime float32 {top1(expected, labels):.2%}; "
          f"same class on {same}/{len(images)} images ({same / len(images):.1%})")
    if result.accel is not None:
        print(f"{loaded.accel_summary()} (the last image)")
        print(f"{len(images)} images took {elapsed:.1f} s of wall time (host kernels + the Python simulator)")
        return
    print_latency([t * 1e3 for t in loaded.benchmark(images[:info.shape[0]], repeat=repeat)])
    error = relative_error(ours, expected)
    verdict = "OK" if error <= 1e-4 else "MISMATCH"
    print(f"check vs ONNX Runtime: max relative error {error:.2e} over the split ({verdict}, bound 1e-4)")
    if error > 1e-4:
        raise SqnxtError(f"compiled output differs from ONNX Runtime (relative error {error:.2e} > 1e-4)")

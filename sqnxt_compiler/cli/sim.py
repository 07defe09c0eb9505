"""`sqnxt-sim`: compile one layer for the simulated int8 accelerator and print its cycles, traffic, energy.

Subcommands: `layer`, `study`, `int8`. Each subcommand is an `_add_<name>_command(commands)` that builds its subparser
and sets `run=<function(args) -> exit code>`; `_parser()` lists them.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from ..errors import SqnxtError
from ..outputs import check_output_dir
from .common import ArgumentParser, entry_point


def _pair(text: str, what: str) -> tuple[int, int]:
    """"3" -> (3, 3); "3x1" -> (3, 1)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise SqnxtError(f"{what} must be N or NxM (e.g. 3 or 3x1), not '{text}'") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise SqnxtError(f"{what} must be N or NxM (e.g. 3 or 3x1), not '{text}'")
    return parts[0], parts[1]


def _add_layer_command(commands) -> None:
    p = commands.add_parser("layer", help="simulate one conv2d or dense layer",
                            description="Compile one layer (WS or OS dataflow, default or given tile sizes), "
                                        "run it on random int8 data, check it against the numpy reference and "
                                        "print cycles per module, utilization, traffic and energy.")
    p.add_argument("--config", default="accel-16x16", help="accelerator name or .toml path (default: accel-16x16)")
    p.add_argument("--kind", choices=("conv", "dense"), default="conv")
    p.add_argument("--cin", type=int, required=True, help="input channels (dense: input features)")
    p.add_argument("--cout", type=int, required=True, help="output channels (dense: output features)")
    p.add_argument("--hw", default="1", help="input height x width, e.g. 56 or 55x55 (conv)")
    p.add_argument("--kernel", default="1", help="kernel size, e.g. 3x3, 3x1, 7 (conv)")
    p.add_argument("--stride", default="1", help="stride, e.g. 1 or 2x2 (conv)")
    p.add_argument("--pad", help="padding (vertical x horizontal; default kernel // 2 per side)")
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--residual", action="store_true",
                   help="fuse a residual add (a SqueezeNext merge) into the layer's epilogue")
    p.add_argument("--dataflow", choices=("ws", "os"), default="ws")
    p.add_argument("--objective", choices=("total", "gemm"), default="total",
                   help="what the default tiling minimises: layer latency (default) or array cycles")
    for knob in ("oh", "ow", "cout", "cin"):
        p.add_argument(f"--tile-{knob}", type=int, help=f"tile_{knob} knob (default: from default_tiling)")
    p.add_argument("--dram-bytes-per-cycle", type=float, help="override the DRAM bandwidth of the config")
    p.add_argument("--timing-only", action="store_true", help="skip the functional run (estimate only)")
    p.add_argument("--listing", action="store_true", help="print the instruction stream")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the random data")
    p.set_defaults(run=_run_layer)


def _run_layer(args: argparse.Namespace) -> int:
    from ..accel import (AccelConfig, LayerSpec, Requant, Tiling, compile_layer, default_tiling,
                         reference_layer, simulate)
    from ..accel.machine.report import build_report
    from ..accel.machine.timing import schedule

    config = AccelConfig.load(args.config)
    if args.dram_bytes_per_cycle:
        config = config.replace(dram_bytes_per_cycle=args.dram_bytes_per_cycle)
    if args.kind == "dense":
        layer = LayerSpec.dense(args.cin, args.cout, n=args.batch)
    else:
        layer = LayerSpec.conv2d(args.cin, args.cout, _pair(args.hw, "--hw"), _pair(args.kernel, "--kernel"),
                                 _pair(args.stride, "--stride"), _pair(args.pad, "--pad") if args.pad else None,
                                 groups=args.groups, n=args.batch, residual=args.residual)
    base = default_tiling(layer, config, args.dataflow, args.objective)
    tiling = Tiling(args.dataflow, args.tile_oh or base.tile_oh, args.tile_ow or base.tile_ow,
                    args.tile_cout or base.tile_cout, args.tile_cin or base.tile_cin)
    requant = Requant(multiplier=1, shift=8, relu=True, residual_multiplier=1 << 7)
    program = compile_layer(layer, config, tiling, requant)
    started = time.perf_counter()
    if args.timing_only:
        report, check = build_report(program, schedule(program)), "skipped (--timing-only)"
    else:
        rng = np.random.default_rng(args.seed)
        x = rng.integers(-128, 128, layer.input_shape, dtype=np.int8)
        w = rng.integers(-128, 128, layer.weight_shape, dtype=np.int8)
        b = rng.integers(-(1 << 12), 1 << 12, layer.cout, dtype=np.int32)
        r = rng.integers(-128, 128, layer.output_shape, dtype=np.int8) if layer.residual else None
        output, report = simulate(program, x, w, b, residual=r)
        exact = np.array_equal(output, reference_layer(layer, x, w, b, requant, r))
        check = "exact" if exact else "MISMATCH"
        if not exact:
            raise SqnxtError("simulator output differs from the numpy reference (please report it)")
    elapsed = time.perf_counter() - started
    if args.listing:
        print(program.listing())
    if args.json:
        data = report.as_dict()
        data.update(functional_check=check, simulation_seconds=elapsed)
        print(json.dumps(data, indent=2, default=str))
        return 0
    print(f"{layer.describe()} -> output {layer.output_shape}")
    for line in report.lines():
        print(line)
    print(f"check        vs numpy reference: {check}; simulated in {elapsed:.3f} s")
    return 0


def _add_study_command(commands) -> None:
    p = commands.add_parser("study", help="whole networks on accelerator configs: WS vs OS vs best per layer",
                            description="Time every conv/dense layer of zoo models on accelerator configs under "
                                        "WS-only, OS-only and best-per-layer tilings; write a markdown table, "
                                        "per-layer tables, JSON and PNG charts (deterministic).")
    p.add_argument("--models", default="1.0-SqNxt-23,1.0-SqNxt-23v5,squeezenet1.0,alexnet",
                   help="comma-separated zoo models (default: the two SqueezeNexts, SqueezeNet 1.0, AlexNet); "
                        "models trained on the digits (1.0-SqNxt-23-digits, ...) also get their held-out top-1")
    p.add_argument("--configs", default="accel-16x16,accel-32x32", help="comma-separated accelerators")
    p.add_argument("--out", default="accel_study", help="output directory (default: ./accel_study)")
    p.add_argument("--resolution", type=int, help="input resolution of every model (default: each model's own)")
    p.add_argument("--shortlist", type=int, default=6,
                   help="analytically best tilings per layer that 'best' simulates (default: 6)")
    p.set_defaults(run=_run_study)


def _run_study(args: argparse.Namespace) -> int:
    from ..accel.study.study import run_study
    from ..accel.study.report import relative_table, summary_table, write_study

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not models or not configs or args.shortlist < 0:
        raise SqnxtError("--models and --configs need at least one name each, --shortlist must be >= 0")
    check_output_dir(args.out, "--out folder")
    started = time.perf_counter()
    options = {"resolution": args.resolution} if args.resolution else {}
    study = run_study(models, configs, args.shortlist, **options)
    paths = _write_study_whole(study, args.out, write_study)
    print(summary_table(study), "", relative_table(study), "", sep="\n")
    print(f"wrote {len(paths)} files to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


def _write_study_whole(study, out: str, write_study) -> list:
    """The study's files written into a temporary folder beside `out`, then moved into `out` one by one: a full
    disk or an interruption leaves no half-written file (nor a new empty `out`); a one-line error names it."""
    import shutil
    import tempfile
    from pathlib import Path

    from ..outputs import writing

    folder = Path(out)
    with writing(folder / "study.md", "the study"):
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            paths = [folder / path.name for path in write_study(study, staging)]
            folder.mkdir(exist_ok=True)
            for path in paths:
                os.replace(staging / path.name, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return paths


def _add_int8_command(commands) -> None:
    p = commands.add_parser("int8", help="int8 PTQ (ONNX Runtime QDQ) of zoo models vs float: top-1, cosine",
                            description="Quantize zoo models with ONNX Runtime (QDQ, symmetric int8, per-channel "
                                        "weights), run them on the project's int8 executor (numpy reference or "
                                        "the accelerator simulator) and compare with float ONNX Runtime: models "
                                        "trained on the digits on the held-out split (top-1 accuracy), "
                                        "random-weight models on synthetic inputs (agreement only).")
    p.add_argument("--models", default="1.0-SqNxt-23-digits,1.0-SqNxt-23v5-digits,1.0-SqNxt-23,1.0-SqNxt-23v5",
                   help="comma-separated zoo models (default: the trained digits models and their random twins)")
    p.add_argument("--resolution", type=int, help="input resolution (default: each model's own)")
    p.add_argument("--calibration", type=int,
                   help="calibration inputs (default: 240 training images for trained models, else 8 synthetic)")
    p.add_argument("--samples", type=int,
                   help="evaluation inputs (default: the whole held-out split for trained models, else 16 synthetic)")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax")
    p.add_argument("--backend", choices=("reference", "accel"), default="reference")
    p.add_argument("--config", default="accel-16x16", help="accelerator of the accel backend")
    p.add_argument("--dataflow", choices=("ws", "os"), default="ws", help="tilings of the accel backend")
    p.add_argument("--normalize-bn", action="store_true",
                   help="random-weight models: re-estimate BatchNorm statistics on synthetic inputs first "
                        "(input-dependent logits)")
    p.set_defaults(run=_run_int8)


def _run_int8(args: argparse.Namespace) -> int:
    from ..accel.int8.accuracy import evaluate_int8

    if any(n is not None and n < 1 for n in (args.calibration, args.samples)):
        raise SqnxtError("--calibration and --samples must be >= 1")
    print("| model | BN re-estimated | backend | float top-1 | int8 top-1 | cosine min | cosine mean "
          "| top-1 agreement | distinct float top-1 | ORT QDQ cosine mean | ORT QDQ top-1 agreement |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        r = evaluate_int8(model, args.resolution, args.calibration, args.samples, args.normalize_bn, args.method,
                          args.backend, args.config, args.dataflow)
        ours, ort, accuracy = r["int8_vs_float"], r["ort_qdq_vs_float"], r["accuracy"]
        labelled = (f"{accuracy['float_top1']:.2%} | {accuracy['int8_top1']:.2%}" if accuracy
                    else "- (random weights) | -")
        print(f"| {model} | {'yes' if r['normalize_bn'] else 'no'} | {args.backend} | {labelled} "
              f"| {ours['cosine_min']:.5f} "
              f"| {ours['cosine_mean']:.5f} | {ours['top1_agreement']:.1%} | {ours['distinct_top1']}/{r['samples']} "
              f"| {ort['cosine_mean']:.5f} | {ort['top1_agreement']:.1%} |")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="sqnxt-sim", description=__doc__)
    commands = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_layer_command(commands)
    _add_study_command(commands)
    _add_int8_command(commands)
    return p


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)

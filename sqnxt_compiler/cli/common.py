"""What every command-line entry point shares: one-line errors, exit codes, output helpers."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SqnxtError
from ..outputs import atomic_write_files, is_path_error, path_error

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130


def entry_point(body: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap a CLI body: SqnxtError -> `error: ...` and exit 2; anything unexpected -> one line and exit 3
    (set SQNXT_DEBUG=1 for the traceback); Ctrl-C -> exit 130. Never a traceback by default."""

    @functools.wraps(body)
    def main(argv: list[str] | None = None) -> int:
        warnings.formatwarning = _one_line_warning
        try:
            return body(argv) or 0
        except SqnxtError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR
        except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as err:  # noqa: BLE001 - the last line of defence for users
            if os.environ.get("SQNXT_DEBUG"):
                raise
            if is_path_error(err):   # a path or device the user gave us (no permission, full disk...)
                print(f"error: {path_error(err)}", file=sys.stderr)
                return EXIT_USER_ERROR
            detail = (str(err).strip().splitlines() or [""])[-1]
            print(f"internal error: {type(err).__name__}: {detail} (rerun with SQNXT_DEBUG=1 for the "
                  "traceback, and please report it)", file=sys.stderr)
            return EXIT_INTERNAL_ERROR

    return main


class ArgumentParser(argparse.ArgumentParser):
    """argparse with our error convention: a bad flag is `error: ...` (one line, exit 2), not usage + exit."""

    def error(self, message: str):
        raise SqnxtError(f"{message} (see `{self.prog} --help`)")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model to work on: an ONNX file, or a built-in zoo model at a chosen batch and resolution."""
    parser.add_argument("onnx", nargs="?", help="path of the ONNX model")
    parser.add_argument("--model", help="use a built-in zoo model instead (see `sqnxt-zoo list`)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of a built-in model")
    parser.add_argument("--resolution", type=int, help="input size of a built-in model (default: its own)")
    parser.add_argument("--target", default="host", help="target name or path of a target .toml (default: host)")
    parser.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                        help="fix the shape of an input with dynamic dimensions (repeatable)")


def model_from_arguments(args: argparse.Namespace):
    """The ONNX model `add_model_arguments` describes, and a short name for it (for default file names)."""
    from ..frontend import load_onnx
    from ..models import build_model

    if bool(args.onnx) == bool(args.model):
        raise SqnxtError("give either an ONNX file or --model NAME (see `sqnxt-zoo list`)")
    if args.model:
        return build_model(args.model, args.batch, args.resolution), args.model
    return load_onnx(args.onnx), Path(args.onnx).stem


def load_npy(path: str) -> np.ndarray:
    if os.path.isdir(path):
        raise SqnxtError(f"input file '{path}' is a folder; give a .npy file")
    if not os.path.isfile(path):
        raise SqnxtError(f"input file '{path}' does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise SqnxtError(f"input file '{path}' is not a valid .npy array: {err}") from None


def save_npy(path: str, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:   # a file object: np.save appends no .npy to the name
            np.save(handle, array)

    atomic_write_files([(Path(path), write, "output file")])


def random_inputs(shapes: list[tuple[int, ...]], dtypes: list[str], seed: int = 0) -> list[np.ndarray]:
    """Deterministic stand-in inputs (uniform [0, 1), like a normalised image) when none is given."""
    rng = np.random.default_rng(seed)
    return [rng.random(shape, dtype=np.float64).astype(dtype) for shape, dtype in zip(shapes, dtypes)]


def print_prediction(outputs: list[np.ndarray], latencies_ms: list[float] | None, top: int = 5) -> None:
    from ..runtime import top_k

    logits = outputs[0]
    print(f"output {tuple(logits.shape)} {logits.dtype}; top-{top} (class: probability):")
    for rank, (cls, prob) in enumerate(top_k(logits, top), start=1):
        print(f"  {rank}. class {cls:4d}: {prob:.4f}")
    if latencies_ms:
        print_latency(latencies_ms)


def print_latency(latencies_ms: list[float]) -> None:
    print(f"latency: median {np.median(latencies_ms):.2f} ms over {len(latencies_ms)} runs "
          f"(min {min(latencies_ms):.2f}, max {max(latencies_ms):.2f})")

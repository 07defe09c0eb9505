"""What every command-line entry point shares: one-line errors, exit codes, output helpers."""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable

import numpy as np

from ..errors import SqnxtError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130


def entry_point(body: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap a CLI body: SqnxtError -> `error: ...` and exit 2; anything unexpected -> one line and exit 3
    (set SQNXT_DEBUG=1 for the traceback); Ctrl-C -> exit 130. Never a traceback by default."""

    @functools.wraps(body)
    def main(argv: list[str] | None = None) -> int:
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
            detail = (str(err).strip().splitlines() or [""])[-1]
            print(f"internal error: {type(err).__name__}: {detail} (rerun with SQNXT_DEBUG=1 for the "
                  "traceback, and please report it)", file=sys.stderr)
            return EXIT_INTERNAL_ERROR

    return main


def load_npy(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise SqnxtError(f"input file '{path}' does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise SqnxtError(f"input file '{path}' is not a valid .npy array: {err}") from None


def save_npy(path: str, array: np.ndarray) -> None:
    tmp = f"{path}.tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


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
        print(f"latency: median {np.median(latencies_ms):.2f} ms over {len(latencies_ms)} runs "
              f"(min {min(latencies_ms):.2f}, max {max(latencies_ms):.2f})")

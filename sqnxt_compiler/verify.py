"""Numerical checks against ONNX Runtime, the float reference every compiled model is held to."""

from __future__ import annotations

import numpy as np
import onnx

from .errors import SqnxtError


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def reference_session(model: onnx.ModelProto):
    """An ONNX Runtime session of `model` on the CPU provider (single-threaded, so it is deterministic)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SqnxtError("ONNX Runtime is needed for the check: pip install 'sqnxt-compiler[dev]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def reference_outputs(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run `model` once on ONNX Runtime (see reference_session)."""
    return reference_session(model).run(None, inputs)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected|: the scale-free error the acceptance tests bound."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return float("inf")
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))

"""How close the int8 accelerator path is to float: cosine similarity and top-1 agreement of logits vs ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx

from ...models import build_model
from .bn_statistics import normalize_batchnorm
from .quantize import CALIBRATION_SEED, quantize_qdq, synthetic_inputs
from .reference import Int8Executor

# Evaluation inputs come from another seed than CALIBRATION_SEED: the int8 model never sees its test inputs.
EVALUATION_SEED, NORMALIZATION_SEED = 2, 3


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Per-sample cosine similarity (min and mean) and top-1 agreement of two (samples, classes) arrays."""
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    cand = candidate.reshape(len(candidate), -1).astype(np.float64)
    cosine = (ref * cand).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1))
    return {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
            "top1_agreement": float((ref.argmax(1) == cand.argmax(1)).mean()),
            "distinct_top1": len(set(ref.argmax(1).tolist()))}


def float_logits(model: onnx.ModelProto, inputs: list[np.ndarray]) -> np.ndarray:
    """The float model's outputs under ONNX Runtime, one run per input."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = model.graph.input[0].name
    return np.concatenate([session.run(None, {name: x})[0] for x in inputs])


def evaluate_int8(model_name: str, resolution: int | None = None, calibration: int = 8, evaluation: int = 16,
                  normalize_bn: bool = True, method: str = "minmax", backend: str = "reference",
                  config: str = "accel-16x16") -> dict:
    """Quantize zoo model `model_name` with ONNX Runtime (QDQ), run it on the int8 executor and compare
    with float ONNX Runtime on synthetic inputs. `normalize_bn` first re-estimates BatchNorm statistics
    (see bn_statistics: the random zoo weights otherwise give input-independent logits). Also reports ONNX
    Runtime's own execution of the QDQ model, for scale."""
    model = build_model(model_name, resolution=resolution)
    if normalize_bn:
        model = normalize_batchnorm(model, synthetic_inputs(model, calibration, NORMALIZATION_SEED))
    qdq = quantize_qdq(model, synthetic_inputs(model, calibration, CALIBRATION_SEED), method)
    inputs = synthetic_inputs(model, evaluation, EVALUATION_SEED)
    reference = float_logits(model, inputs)
    executor = Int8Executor(qdq, backend=backend, config=config)
    ours = np.concatenate([executor.run(x) for x in inputs])
    return {"model": model_name, "resolution": resolution, "normalize_bn": normalize_bn, "method": method,
            "backend": backend, "samples": evaluation, "layers": len(executor.layers),
            "int8_vs_float": compare_logits(reference, ours),
            "ort_qdq_vs_float": compare_logits(reference, float_logits(qdq, inputs))}

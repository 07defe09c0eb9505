"""How close the int8 accelerator path is to float: cosine similarity and top-1 agreement of logits vs ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx

from ...models import build_model
from ...models.digits import CALIBRATION_IMAGES, DATASET, calibration_images, digits, model_dataset, top1
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


def evaluate_int8(model_name: str, resolution: int | None = None, calibration: int | None = None,
                  evaluation: int | None = None, normalize_bn: bool = True, method: str = "minmax",
                  backend: str = "reference", config: str = "accel-16x16", dataflow: str = "ws") -> dict:
    """Quantize zoo model `model_name` with ONNX Runtime (QDQ), run it on the int8 executor and compare
    with float ONNX Runtime. Random-weight models: `calibration` (default 8) and `evaluation` (default 16)
    synthetic inputs, and `normalize_bn` first re-estimates BatchNorm statistics (see bn_statistics: the
    random zoo weights otherwise give input-independent logits). A model trained on the digits: calibrated
    on `calibration` training images (default 240), evaluated on the first `evaluation` held-out images
    (default all), with labels: the result's "accuracy" holds float, int8 and ORT-QDQ top-1 (None otherwise).
    Also reports ONNX Runtime's own execution of the QDQ model, for scale."""
    model = build_model(model_name, resolution=resolution)
    labels = None
    if model_dataset(model) == DATASET:
        size = model.graph.input[0].type.tensor_type.shape.dim[-1].dim_value
        calibration_set = list(calibration_images(calibration or CALIBRATION_IMAGES, size)[:, None])
        images, labels = digits("test", size)
        inputs, labels = list(images[:evaluation, None]), labels[:evaluation]
        normalize_bn = False   # trained statistics are the real ones
    else:
        if normalize_bn:
            model = normalize_batchnorm(model, synthetic_inputs(model, calibration or 8, NORMALIZATION_SEED))
        calibration_set = synthetic_inputs(model, calibration or 8, CALIBRATION_SEED)
        inputs = synthetic_inputs(model, evaluation or 16, EVALUATION_SEED)
    qdq = quantize_qdq(model, calibration_set, method)
    reference = float_logits(model, inputs)
    executor = Int8Executor(qdq, backend=backend, config=config, dataflow=dataflow)
    ours = np.concatenate([executor.run(x) for x in inputs])
    ort_qdq = float_logits(qdq, inputs)
    accuracy = None if labels is None else {
        "float_top1": top1(reference, labels), "int8_top1": top1(ours, labels), "ort_qdq_top1": top1(ort_qdq, labels)}
    return {"model": model_name, "resolution": resolution, "normalize_bn": normalize_bn, "method": method,
            "backend": backend, "samples": len(inputs), "layers": len(executor.layers),
            "int8_vs_float": compare_logits(reference, ours), "ort_qdq_vs_float": compare_logits(reference, ort_qdq),
            "accuracy": accuracy}

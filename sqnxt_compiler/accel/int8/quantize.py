"""int8 post-training quantization with ONNX Runtime's tooling: a QDQ model the int8 executor imports.

Why ONNX Runtime (`onnxruntime.quantization.quantize_static`) rather than our own statistics: it is a
maintained, widely used calibrator (MinMax / Entropy / Percentile), it folds BatchNorm into the convs in its
pre-processing, and its QDQ output is a plain ONNX graph whose scales we read back - the float model with
QuantizeLinear/DequantizeLinear pairs marks exactly where int8 tensors live, and ORT itself can run it as a
cross-check. Settings the accelerator needs: int8 activations and weights, both symmetric (the array has no
zero-point correction, see docs/accelerator.md), per-channel weight scales (the ALU has a multiplier per
output channel), int32 biases at scale input_scale x weight_scale.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from ...errors import SqnxtError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
SYNTHETIC_CALIBRATION = 8   # inputs used when the user gives no calibration images
# Seed of the synthetic calibration inputs, for compiling and for the int8 accuracy check alike, so both
# quantize a model to the same scales.
CALIBRATION_SEED = 1


def synthetic_inputs(model: onnx.ModelProto, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` float32 inputs shaped like the model's first input, varied like normalized photos differ:
    normal noise box-smoothed over a random 1-8 pixel scale (neighbouring pixels correlate), then a random
    gain and offset per channel (colour casts, brightness)."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        x = rng.standard_normal(dims)
        size = int(rng.choice([1, 2, 4, 8]))
        x = sum(np.roll(np.roll(x, i, axis=2), j, axis=3) for i in range(size) for j in range(size))
        x = x / x.std()
        channels = (1, dims[1]) + (1,) * (len(dims) - 2)
        x = x * rng.uniform(0.5, 1.5, channels) + rng.normal(0.0, 0.5, channels)
        samples.append(x.astype(np.float32))
    return samples


class _Reader:
    """ORT's CalibrationDataReader protocol over a list of arrays (get_next returns None at the end)."""

    def __init__(self, input_name: str, samples: Iterable[np.ndarray]):
        self._items = iter([{input_name: np.asarray(s, dtype=np.float32)} for s in samples])

    def get_next(self) -> dict | None:
        return next(self._items, None)


def quantize_qdq(model: onnx.ModelProto, calibration: Iterable[np.ndarray], method: str = "minmax") -> onnx.ModelProto:
    """The QDQ int8 model of `model` (float ONNX), calibrated on `calibration` (float32 inputs of the model's
    input shape): symmetric int8 activations and weights, per-channel weights, BatchNorm folded."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.calibrate import CalibrationDataReader
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise SqnxtError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, not '{method}'")
    reader_type = type("CalibrationReader", (_Reader, CalibrationDataReader), {})
    with tempfile.TemporaryDirectory(prefix="sqnxt-quant-") as tmp:
        raw, prepared, quantized = (str(Path(tmp) / n) for n in ("float.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(model, raw)
        # ORT's recommended pre-processing: shape inference + its basic optimizer (folds BatchNorm into Conv)
        quant_pre_process(raw, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared, quantized, reader_type(model.graph.input[0].name, calibration),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            # zero points 0: what the array computes; Relu stays a node (ORT drops it only when the
            # zero point makes it implicit), so the int8 executor fuses it into the conv's requantization
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        return onnx.load(quantized)


def load_calibration(source: str | Path | np.ndarray, model: onnx.ModelProto) -> list[np.ndarray]:
    """Calibration inputs from a .npy file (or an array) of images stacked along the batch axis: shape
    (N, *input_shape[1:]) with N a multiple of the model's batch size; one model input per batch of images."""
    label = "calibration array" if isinstance(source, np.ndarray) else f"calibration file '{source}'"
    if isinstance(source, np.ndarray):
        images = source
    else:
        if not Path(source).is_file():
            raise SqnxtError(f"{label} does not exist")
        try:
            images = np.load(source, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise SqnxtError(f"{label} is not a valid .npy array: {str(err).splitlines()[0]}") from None
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    batch, sample = dims[0], tuple(dims[1:])
    expected = f"(N, {', '.join(map(str, sample))}) float images, N a multiple of the batch size {batch}"
    if (images.ndim != len(dims) or tuple(images.shape[1:]) != sample or images.shape[0] == 0
            or images.shape[0] % batch or images.dtype.kind not in "fiu"):
        raise SqnxtError(f"{label} holds {images.dtype}{list(images.shape)}; expected {expected}")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
        raise SqnxtError(f"{label} contains NaN or infinite values")
    return [images[i:i + batch] for i in range(0, len(images), batch)]

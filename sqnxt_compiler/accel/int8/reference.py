"""The project's int8 executor of a QDQ model: conv/dense layers in integers, on numpy or on the simulator.

Every layer found by `partition_qdq` runs with the accelerator's arithmetic - int8 inputs and weights,
int32 accumulation, `Requant` fixed-point rescale (+ ReLU) to int8 - either through `reference_layer`
(backend "reference": one numpy loop over kernel taps) or compiled and run on the simulated accelerator
(backend "accel": `compile_layer` + `simulate`, which also yields a cycle/energy Report per layer). The two
must agree bit for bit. The host part of the graph (QuantizeLinear/DequantizeLinear, pooling, merges,
flatten) runs on ONNX's numpy reference evaluator, as the host CPU would run it around the accelerator.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.version_converter
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from ...errors import SqnxtError
from ..machine.config import AccelConfig
from ..machine.reference import reference_layer
from ..machine.report import Report
from ..machine.simulator import simulate
from .graph import DOMAIN, OP_TYPE, QuantizedLayer, partition_qdq

BACKENDS = ("reference", "accel")
# ONNX's reference evaluator implements QuantizeLinear/DequantizeLinear from opset 19 on; ORT writes 13
REFERENCE_OPSET = 21


def _with_reference_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), REFERENCE_OPSET)
    if version >= 19:
        return model
    return onnx.version_converter.convert_version(model, REFERENCE_OPSET)


class Int8Executor:
    """Run a QDQ int8 ONNX model (from `quantize_qdq`) with integer conv/dense layers.

        executor = Int8Executor(qdq_model, backend="accel", config="accel-16x16", dataflow="ws")
        logits = executor.run(x_nchw_float32)      # dequantized float output
        executor.reports                            # accel backend: one Report per layer of the last run
    """

    def __init__(self, qdq_model: onnx.ModelProto, backend: str = "reference", config: str | AccelConfig = "accel-16x16",
                 dataflow: str = "ws"):
        if backend not in BACKENDS:
            raise SqnxtError(f"backend must be one of {', '.join(BACKENDS)}, not '{backend}'")
        self.backend, self.dataflow = backend, dataflow
        self.config = config if isinstance(config, AccelConfig) else AccelConfig.load(config)
        graph, self.layers = partition_qdq(_with_reference_opset(qdq_model))
        if not self.layers:
            raise SqnxtError("no quantized Conv/Gemm found: is this a QDQ model from quantize_qdq()?")
        self.reports: list[Report] = []
        self._programs: dict[tuple[int, tuple[int, ...]], object] = {}   # compiled once per layer and shape
        executor = self

        class AccelLayer(OpRun):   # the integer layer node, bound to this executor
            op_domain = DOMAIN

            def _run(self, x, index=None):
                return (executor.run_layer(index, x),)

        AccelLayer.__name__ = OP_TYPE
        self._evaluator = ReferenceEvaluator(graph, new_ops=[AccelLayer])
        self._input = graph.graph.input[0].name

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """The model's first output for a float32 NCHW input batch."""
        self.reports = []
        return self._evaluator.run(None, {self._input: np.asarray(inputs, dtype=np.float32)})[0]

    def run_layer(self, index: int, x: np.ndarray) -> np.ndarray:
        """Layer `index` on an int8 NCHW (conv) or NC (dense) tensor, same layout out."""
        layer = self.layers[index]
        spec = layer.spec(x.shape)
        x_nhwc = x.transpose(0, 2, 3, 1) if layer.kind == "conv" else x.reshape(x.shape[0], 1, 1, -1)
        x_nhwc = np.ascontiguousarray(x_nhwc, dtype=np.int8)
        if self.backend == "reference":
            y = reference_layer(spec, x_nhwc, layer.weights, layer.bias, layer.requant)
        else:
            y, report = simulate(self._program(index, layer, x.shape), x_nhwc, layer.weights, layer.bias)
            self.reports.append(report)
        return y.transpose(0, 3, 1, 2) if layer.kind == "conv" else y.reshape(y.shape[0], -1)

    def _program(self, index: int, layer: QuantizedLayer, shape: tuple[int, ...]):
        key = (index, tuple(shape))
        if key not in self._programs:
            self._programs[key] = layer.program(shape, self.config, self.dataflow)
        return self._programs[key]

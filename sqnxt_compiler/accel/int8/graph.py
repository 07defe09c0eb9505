"""Find the accelerator's layers in a QDQ int8 ONNX graph and replace each by one integer node.

A layer is `DQ(x_int8) , DQ(w_int8 const) [, DQ(b_int32 const)] -> Conv | Gemm -> Q -> y_int8`. When the
conv's quantized output feeds only `DQ -> Relu -> Q` (ONNX Runtime keeps Relu as a node when activations are
symmetric), the Relu and its second quantization are folded into the layer: one requantization straight to
the Relu's scale with the ALU's ReLU, which is what the accelerator's epilogue does (and one rounding instead
of two). The rewritten graph keeps everything else (QuantizeLinear, MaxPool, Add, pooling...) for the host,
with one `AccelLayer` node (domain `sqnxt.accel`, attribute `index`) per layer reading and writing int8 NCHW.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import SqnxtError
from ..machine.compiler import compile_layer
from ..machine.config import AccelConfig
from ..machine.isa import Program
from ..machine.layer import LayerSpec, Requant
from ..machine.planner import default_tiling
from ..machine.tiling import Tiling

DOMAIN = "sqnxt.accel"
OP_TYPE = "AccelLayer"


@dataclass(frozen=True)
class QuantizedLayer:
    """One conv/dense layer in integer form; the spatial size comes from the input at run time."""

    name: str
    kind: str                       # "conv" or "dense"
    weights: np.ndarray             # int8 OHWI (dense: (cout, 1, 1, cin))
    bias: np.ndarray                # int32 (cout,)
    requant: Requant
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]  # top, left, bottom, right
    groups: int
    input_scale: float
    output_scale: float

    def spec(self, input_shape: tuple[int, ...]) -> LayerSpec:
        """The LayerSpec for an NCHW (conv) or NC (dense) input of this shape."""
        cout, cin = self.weights.shape[0], self.weights.shape[3] * self.groups
        if self.kind == "dense":
            return LayerSpec.dense(cin, cout, n=input_shape[0], name=self.name)
        n, _, h, w = input_shape
        return LayerSpec(n=n, cin=cin, h=h, w=w, cout=cout, kh=self.kernel[0], kw=self.kernel[1],
                         stride=self.stride, pad=self.pad, groups=self.groups, name=self.name)

    def program(self, input_shape: tuple[int, ...], config: AccelConfig, dataflow: str = "ws",
                tiling: Tiling | None = None) -> Program:
        """The accelerator's instruction stream for this layer on an input of this shape: under `tiling`
        (a tuned one; refused if it does not fit), else the default tiling of `dataflow`."""
        spec = self.spec(input_shape)
        return compile_layer(spec, config, tiling or default_tiling(spec, config, dataflow), self.requant)


@dataclass
class _Graph:
    """Producer / consumer maps and constant values of a graph."""

    model: onnx.ModelProto

    def __post_init__(self) -> None:
        self.producer = {o: n for n in self.model.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.constants = {t.name: numpy_helper.to_array(t) for t in self.model.graph.initializer}
        self.outputs = {o.name for o in self.model.graph.output}

    def only_consumer(self, tensor: str, op_type: str) -> onnx.NodeProto | None:
        users = self.consumers.get(tensor, [])
        if len(users) == 1 and users[0].op_type == op_type and tensor not in self.outputs:
            return users[0]
        return None

    def dequantized(self, tensor: str) -> tuple[str, np.ndarray, np.ndarray] | None:
        """(quantized tensor, scale, zero point) when `tensor` is a DequantizeLinear output."""
        node = self.producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear":
            return None
        zero = self.constants.get(node.input[2]) if len(node.input) > 2 else np.zeros(1)
        return node.input[0], self.constants[node.input[1]], zero


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def quantized_layer(name: str, weights: np.ndarray, weight_scale: np.ndarray | float, input_scale: float,
                    bias: np.ndarray | None, output_scale: float, output_zero: int, relu: bool, kind: str = "conv",
                    stride: tuple[int, int] = (1, 1), pad: tuple[int, int, int, int] = (0, 0, 0, 0),
                    groups: int = 1) -> QuantizedLayer:
    """The integer layer of one quantized conv (int8 OIHW `weights`) or dense (int8 (out, in) `weights`) with
    float `bias` (None: no bias) and per-channel or scalar `weight_scale`. Shared by the ONNX partitioner
    here and the Relax partitioner (passes/lower_accel.py), so both give the same integers."""
    if kind == "conv":
        kernel, ohwi = tuple(weights.shape[2:]), weights.transpose(0, 2, 3, 1)     # OIHW -> OHWI
    else:
        kernel, ohwi = (1, 1), weights[:, None, None, :]
    cout = ohwi.shape[0]
    acc_scale = float(input_scale) * np.broadcast_to(np.asarray(weight_scale, dtype=np.float64).reshape(-1), (cout,))
    int_bias = np.zeros(cout, dtype=np.int32)
    if bias is not None:
        # ORT stores the bias at exactly input_scale x weight_scale, so this recovers its int32 values
        int_bias = np.rint(np.asarray(bias, dtype=np.float64).reshape(-1) / acc_scale).astype(np.int32)
    return QuantizedLayer(
        name=name, kind=kind, weights=np.ascontiguousarray(ohwi, np.int8), bias=int_bias,
        requant=Requant.from_scale(acc_scale / output_scale, output_zero, relu), kernel=kernel,
        stride=tuple(int(s) for s in stride), pad=tuple(int(p) for p in pad), groups=int(groups),
        input_scale=float(input_scale), output_scale=float(output_scale))


def _match(graph: _Graph, node: onnx.NodeProto, index: int) -> tuple[QuantizedLayer, str, str, set[str]] | None:
    """(layer, int8 input name, int8 output name, names of the nodes it replaces), or None."""
    x, w = graph.dequantized(node.input[0]), graph.dequantized(node.input[1])
    if x is None or w is None or w[0] not in graph.constants:
        return None
    quant = graph.only_consumer(node.output[0], "QuantizeLinear")
    if quant is None:
        return None
    replaced = {node.name, quant.name}
    relu = False
    out_node = quant
    dq = graph.only_consumer(quant.output[0], "DequantizeLinear")
    relu_node = dq and graph.only_consumer(dq.output[0], "Relu")
    relu_q = relu_node and graph.only_consumer(relu_node.output[0], "QuantizeLinear")
    if relu_q is not None:   # fold Relu and its requantization into the layer's epilogue
        relu, out_node = True, relu_q
        replaced |= {dq.name, relu_node.name, relu_q.name}
    out_scale = float(graph.constants[out_node.input[1]])
    out_zero = int(graph.constants[out_node.input[2]]) if len(out_node.input) > 2 else 0
    x_name, x_scale, x_zero = x
    if np.any(x_zero != 0) or np.any(w[2] != 0) or x_scale.size != 1:
        raise SqnxtError(f"{node.name}: the accelerator needs symmetric int8 inputs and weights (zero point 0, "
                         "one input scale); quantize with ActivationSymmetric/WeightSymmetric")
    w_int = graph.constants[w[0]]
    a = _attrs(node)
    if node.op_type == "Conv":
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or any(d != 1 for d in a.get("dilations", [1, 1])):
            raise SqnxtError(f"{node.name}: auto_pad and dilation are not supported by the accelerator")
        geometry = dict(kind="conv", stride=tuple(a.get("strides", [1, 1])), pad=tuple(a.get("pads", [0, 0, 0, 0])),
                        groups=a.get("group", 1))
    else:   # Gemm: y = x @ B(^T) + C
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise SqnxtError(f"{node.name}: only Gemm with transA=0, alpha=beta=1 maps onto the accelerator")
        w_int = w_int if a.get("transB", 0) else w_int.T          # (out, in)
        geometry = dict(kind="dense")
    bias = None
    if len(node.input) > 2 and node.input[2]:
        b = graph.dequantized(node.input[2])
        bias = (graph.constants[b[0]].astype(np.float64) - b[2]) * b[1] if b else graph.constants[node.input[2]]
    layer = quantized_layer(node.name or f"{node.op_type}_{index}", w_int, w[1], float(x_scale), bias, out_scale,
                            out_zero, relu, **geometry)
    return layer, x_name, out_node.output[0], replaced


def partition_qdq(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[QuantizedLayer]]:
    """The graph with every matched Conv/Gemm replaced by an `AccelLayer` node, and those layers in order."""
    named = onnx.ModelProto()
    named.CopyFrom(model)
    for index, node in enumerate(named.graph.node):   # matching works on names: give every node one
        node.name = node.name or f"{node.op_type}_{index}"
    model, graph = named, _Graph(named)
    layers: list[QuantizedLayer] = []
    replaced: set[str] = set()
    new_nodes: dict[str, onnx.NodeProto] = {}     # name of the op node it stands for -> AccelLayer node
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("Conv", "Gemm"):
            continue
        found = _match(graph, node, index)
        if found is None:
            continue
        layer, x_name, y_name, names = found
        new_nodes[node.name] = helper.make_node(OP_TYPE, [x_name], [y_name], name=f"accel_{layer.name}",
                                                domain=DOMAIN, index=len(layers))
        layers.append(layer)
        replaced |= names
    nodes = [new_nodes.get(n.name, n) for n in model.graph.node if n.name not in replaced or n.name in new_nodes]
    del model.graph.node[:]
    model.graph.node.extend(_live(nodes, {o.name for o in model.graph.output}))
    model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return model, layers


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """Drop nodes nothing reads (the weight/bias DequantizeLinear the integer layers made redundant)."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    return kept[::-1]

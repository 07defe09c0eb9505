"""A small ONNX graph builder that also counts parameters and multiply-accumulates."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


@dataclass
class Tensor:
    """A value in the graph under construction: its ONNX name and static NCHW (or NC) shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return self.shape[1]


@dataclass
class GraphBuilder:
    """Emits ONNX nodes with seeded random weights, or with `weights` (initializer name -> array, e.g. the
    initializers of a trained export of the same graph); `params` counts conv/FC weights and biases only
    (BatchNorm statistics are excluded, as in the SqueezeNext paper's tables)."""

    seed: int = 0
    weights: Mapping[str, np.ndarray] | None = None
    opset: int = OPSET
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    params: int = 0
    macs: int = 0
    _counter: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def _constant(self, prefix: str, array: np.ndarray) -> str:
        name = self.fresh(prefix)
        if self.weights is not None:
            given = self.weights.get(name)
            if given is None or given.shape != array.shape:
                found = "missing" if given is None else f"shaped {list(given.shape)}"
                raise ValueError(f"weight '{name}' {list(array.shape)}: {found} in the given weights "
                                 "(made for another graph?)")
            array = given
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(
        self,
        x: Tensor,
        out_channels: int,
        kernel: tuple[int, int],
        stride: int = 1,
        pad: tuple[int, int] = (0, 0),
        groups: int = 1,
        bias: bool = False,
        name: str = "conv",
    ) -> Tensor:
        kh, kw = kernel
        cin = x.channels
        if cin % groups or out_channels % groups:
            raise ValueError(f"{name}: channels {cin}->{out_channels} not divisible by groups={groups}")
        fan_in = cin // groups * kh * kw
        weight = self.rng.normal(0.0, math.sqrt(2.0 / fan_in), (out_channels, cin // groups, kh, kw))
        inputs = [x.name, self._constant(f"{name}_w", weight)]
        self.params += weight.size
        if bias:
            inputs.append(self._constant(f"{name}_b", self.rng.normal(0.0, 0.05, out_channels)))
            self.params += out_channels
        n, _, h, w = x.shape
        oh = (h + 2 * pad[0] - kh) // stride + 1
        ow = (w + 2 * pad[1] - kw) // stride + 1
        out = Tensor(self.fresh(name), (n, out_channels, oh, ow))
        self.nodes.append(
            helper.make_node(
                "Conv", inputs, [out.name], kernel_shape=[kh, kw], strides=[stride, stride],
                pads=[pad[0], pad[1], pad[0], pad[1]], group=groups,
            )
        )
        self.macs += n * out_channels * oh * ow * fan_in
        return out

    def batch_norm(self, x: Tensor, name: str = "bn") -> Tensor:
        """Eval-mode BatchNorm with non-trivial statistics so that folding it is really exercised."""
        c = x.channels
        scale = self.rng.uniform(0.5, 1.5, c)
        shift = self.rng.normal(0.0, 0.1, c)
        mean = self.rng.normal(0.0, 0.1, c)
        var = self.rng.uniform(0.5, 2.0, c)
        names = [self._constant(f"{name}_{part}", v) for part, v in
                 (("scale", scale), ("shift", shift), ("mean", mean), ("var", var))]
        out = Tensor(self.fresh(name), x.shape)
        self.nodes.append(helper.make_node("BatchNormalization", [x.name, *names], [out.name], epsilon=1e-5))
        return out

    def unary(self, op: str, x: Tensor, **attrs) -> Tensor:
        out = Tensor(self.fresh(op.lower()), x.shape)
        self.nodes.append(helper.make_node(op, [x.name], [out.name], **attrs))
        return out

    def relu(self, x: Tensor) -> Tensor:
        return self.unary("Relu", x)

    def clip(self, x: Tensor, low: float, high: float) -> Tensor:
        """Clip with its bounds as initializers (opset >= 11), the way exporters write ReLU6."""
        bounds = [self.fresh("clip_min"), self.fresh("clip_max")]
        for name, value in zip(bounds, (low, high)):
            self.initializers.append(numpy_helper.from_array(np.array(value, np.float32), name))
        out = Tensor(self.fresh("clip"), x.shape)
        self.nodes.append(helper.make_node("Clip", [x.name, *bounds], [out.name]))
        return out

    def relu6(self, x: Tensor) -> Tensor:
        return self.clip(x, 0.0, 6.0)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape:
            raise ValueError(f"add: shape mismatch {a.shape} vs {b.shape}")
        out = Tensor(self.fresh("add"), a.shape)
        self.nodes.append(helper.make_node("Add", [a.name, b.name], [out.name]))
        return out

    def concat(self, parts: list[Tensor]) -> Tensor:
        n, _, h, w = parts[0].shape
        out = Tensor(self.fresh("concat"), (n, sum(p.channels for p in parts), h, w))
        self.nodes.append(helper.make_node("Concat", [p.name for p in parts], [out.name], axis=1))
        return out

    def pool(self, op: str, x: Tensor, kernel: int, stride: int, pad: int = 0, ceil: bool = False) -> Tensor:
        n, c, h, w = x.shape
        rounding = math.ceil if ceil else math.floor
        oh = int(rounding((h + 2 * pad - kernel) / stride)) + 1
        ow = int(rounding((w + 2 * pad - kernel) / stride)) + 1
        out = Tensor(self.fresh(op.lower()), (n, c, oh, ow))
        attrs = {"ceil_mode": int(ceil)} if ceil or self.opset >= 10 else {}  # ceil_mode exists from opset 10
        if ceil and self.opset < 10:
            raise ValueError(f"{op} with ceil_mode needs opset >= 10 (builder has {self.opset})")
        self.nodes.append(
            helper.make_node(op, [x.name], [out.name], kernel_shape=[kernel, kernel], strides=[stride, stride],
                             pads=[pad] * 4, **attrs)
        )
        return out

    def global_avg_pool(self, x: Tensor) -> Tensor:
        out = Tensor(self.fresh("gap"), (*x.shape[:2], 1, 1))
        self.nodes.append(helper.make_node("GlobalAveragePool", [x.name], [out.name]))
        return out

    def flatten(self, x: Tensor) -> Tensor:
        out = Tensor(self.fresh("flatten"), (x.shape[0], int(np.prod(x.shape[1:]))))
        self.nodes.append(helper.make_node("Flatten", [x.name], [out.name], axis=1))
        return out

    def constant_scale(self, x: Tensor, value: float) -> Tensor:
        """x * c with c from a Constant node (exporters emit these for scalars)."""
        const = Tensor(self.fresh("const"), ())
        self.nodes.append(helper.make_node("Constant", [], [const.name],
                                           value=numpy_helper.from_array(np.array(value, np.float32))))
        out = Tensor(self.fresh("mul"), x.shape)
        self.nodes.append(helper.make_node("Mul", [x.name, const.name], [out.name]))
        return out

    def reshape_flat(self, x: Tensor) -> Tensor:
        """Flatten the way exporters do it: Reshape with a constant shape [0, -1] (0 keeps the batch dim)."""
        shape = self.fresh("shape")
        self.initializers.append(numpy_helper.from_array(np.array([0, -1], dtype=np.int64), shape))
        out = Tensor(self.fresh("reshape"), (x.shape[0], int(np.prod(x.shape[1:]))))
        self.nodes.append(helper.make_node("Reshape", [x.name, shape], [out.name]))
        return out

    def gemm(self, x: Tensor, out_features: int, bias: bool, name: str = "fc") -> Tensor:
        n, in_features = x.shape
        weight = self.rng.normal(0.0, math.sqrt(1.0 / in_features), (out_features, in_features))
        inputs = [x.name, self._constant(f"{name}_w", weight)]
        self.params += weight.size
        if bias:
            inputs.append(self._constant(f"{name}_b", self.rng.normal(0.0, 0.05, out_features)))
            self.params += out_features
        out = Tensor(self.fresh(name), (n, out_features))
        self.nodes.append(helper.make_node("Gemm", inputs, [out.name], transB=1))
        self.macs += n * out_features * in_features
        return out

    def conv_bn_relu(self, x: Tensor, out_channels: int, kernel: tuple[int, int], stride: int = 1,
                     pad: tuple[int, int] = (0, 0), groups: int = 1, relu: bool = True,
                     name: str = "conv", activation: str = "relu") -> Tensor:
        """conv (no bias) -> BatchNorm -> `activation` ("relu" or "relu6"), or nothing when `relu` is False."""
        y = self.batch_norm(self.conv(x, out_channels, kernel, stride, pad, groups, name=name), name=f"{name}_bn")
        if not relu:
            return y
        return self.relu6(y) if activation == "relu6" else self.relu(y)

    def finish(self, name: str, x_in: Tensor, y: Tensor, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(x_in.name, TensorProto.FLOAT, list(x_in.shape))],
            [helper.make_tensor_value_info(y.name, TensorProto.FLOAT, list(y.shape))],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="sqnxt-compiler-zoo", doc_string=doc)
        model.ir_version = 8
        meta = model.metadata_props
        for key, value in (("params", self.params), ("macs", self.macs)):
            entry = meta.add()
            entry.key, entry.value = key, str(value)
        onnx.checker.check_model(model)
        return model

"""The accelerator's view of a whole model: every Conv / Gemm of an ONNX graph as a LayerSpec."""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper, shape_inference

from ...errors import SqnxtError
from .layer import LayerSpec


def _dims(value_info: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def layers_of_onnx(model: onnx.ModelProto) -> list[LayerSpec]:
    """Conv (any kernel, stride, padding, groups) and Gemm/MatMul layers, in graph order, with static shapes
    from ONNX shape inference. Everything else (pooling, adds, ReLU) stays on the host."""
    graph = shape_inference.infer_shapes(model).graph
    shapes = {vi.name: _dims(vi) for vi in list(graph.value_info) + list(graph.input) + list(graph.output)}
    weights = {t.name: numpy_helper.to_array(t).shape for t in graph.initializer}
    layers = []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            n, cin, h, w = shapes[node.input[0]]
            cout, _, kh, kw = weights[node.input[1]]
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise SqnxtError(f"{name}: auto_pad is not supported by the accelerator compiler")
            top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
            if tuple(attrs.get("dilations", [1, 1])) != (1, 1):
                raise SqnxtError(f"{name}: dilated convolutions are not supported by the accelerator")
            layers.append(LayerSpec(n=n, cin=cin, h=h, w=w, cout=cout, kh=kh, kw=kw,
                                    stride=tuple(attrs.get("strides", [1, 1])), pad=(top, left, bottom, right),
                                    groups=attrs.get("group", 1), name=name))
        elif node.op_type in ("Gemm", "MatMul"):
            batch, features = shapes[node.input[0]][-2:]
            out_features = shapes[node.output[0]][-1]
            layers.append(LayerSpec.dense(features, out_features, n=batch, name=name))
    return layers

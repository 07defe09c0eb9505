"""Real exporters' graphs import: the operator set, opsets 9-18, BatchNorm in every position, static shapes."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sqnxt_compiler.errors import SqnxtError
from sqnxt_compiler.frontend import parse_input_shapes, resolve_inputs
from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from utils import compile_and_compare


def coverage_graph(opset: int) -> onnx.ModelProto:
    """One graph with every operator the issue lists: Conv with bias, BatchNormalization (after a biased
    conv and standalone), Relu, Add, MaxPool, AveragePool, GlobalAveragePool, Concat, Dropout, Identity,
    Constant, Flatten, Reshape, Gemm, Softmax."""
    g = GraphBuilder(seed=opset, opset=opset)
    data = Tensor("data", (1, 3, 32, 32))
    x = g.relu(g.batch_norm(g.conv(data, 8, (3, 3), pad=(1, 1), bias=True)))
    x = g.pool("MaxPool", x, 2, 2)
    left = g.relu(g.conv(x, 8, (1, 1), bias=True))
    right = g.unary("Identity", g.batch_norm(x))
    x = g.concat([left, g.add(right, x)])
    x = g.pool("AveragePool", g.unary("Dropout", x), 2, 2)
    head = g.flatten(g.global_avg_pool(g.constant_scale(x, 0.5)))
    flat = g.reshape_flat(g.pool("AveragePool", x, 8, 1))
    y = g.unary("Softmax", g.gemm(g.add(head, flat), 10, bias=True), axis=1)
    return g.finish(f"coverage_opset{opset}", data, y)


@pytest.mark.parametrize("opset", range(9, 19))
def test_every_opset_and_operator(opset, tmp_path):
    compile_and_compare(coverage_graph(opset), tmp_path)


def test_ceil_mode_pooling(tmp_path):
    g = GraphBuilder()
    data = Tensor("data", (1, 4, 15, 15))
    y = g.pool("AveragePool", g.pool("MaxPool", data, 3, 2, ceil=True), 3, 2, ceil=True)
    compile_and_compare(g.finish("ceil_pools", data, y), tmp_path)


def _dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    dims[2].dim_param = "height"
    return model


def test_dynamic_shape_names_input_and_flag():
    with pytest.raises(SqnxtError, match=r"input 'data' has a dynamic shape.*--input-shape data=1,3,1,32"):
        resolve_inputs(_dynamic(coverage_graph(13)))


def test_input_shape_fixes_dynamic_model(tmp_path):
    model = _dynamic(coverage_graph(13))
    compile_and_compare(model, tmp_path, input_shapes=parse_input_shapes(["data=2,3,32,32"]))


@pytest.mark.parametrize("spec", ["data", "data=1,x", "data=0,3", "=1,2"])
def test_bad_input_shape_flag(spec):
    with pytest.raises(SqnxtError, match="bad --input-shape"):
        parse_input_shapes([spec])


def test_input_shape_for_unknown_input():
    with pytest.raises(SqnxtError, match="unknown input"):
        resolve_inputs(coverage_graph(13), {"image": (1, 3, 32, 32)})


def test_standalone_batchnorm_and_multiple_outputs(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 6, 6])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4, 6, 6]) for n in ("bn", "r")]
    rng = np.random.default_rng(0)
    stats = [onnx.numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), n)
             for n in ("s", "b", "m", "v")]
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"])]
    model = helper.make_model(helper.make_graph(nodes, "two_outputs", [x], outs, stats),
                              opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    compile_and_compare(model, tmp_path)

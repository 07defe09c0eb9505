"""int8 PTQ (ONNX Runtime QDQ) -> integer executor: accelerator bit-exact with the numpy reference, close to float."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from sqnxt_compiler.accel.int8.accuracy import compare_logits, evaluate_int8
from sqnxt_compiler.accel.int8.graph import OP_TYPE, partition_qdq
from sqnxt_compiler.accel.int8.reference import Int8Executor
from sqnxt_compiler.accel.int8.quantize import quantize_qdq, synthetic_inputs
from sqnxt_compiler.errors import SqnxtError
from sqnxt_compiler.models import build_model

RESOLUTION = 64   # small inputs keep the simulator runs short; every layer kind is still there


@pytest.fixture(scope="module")
def sqnxt23_int8() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    model = build_model("1.0-SqNxt-23", resolution=RESOLUTION)
    return model, quantize_qdq(model, synthetic_inputs(model, 4, seed=1))


def test_partition_takes_every_conv_and_dense(sqnxt23_int8):
    _, qdq = sqnxt23_int8
    graph, layers = partition_qdq(qdq)
    ops = [n.op_type for n in graph.graph.node]
    assert len(layers) == ops.count(OP_TYPE) == 112
    assert "Conv" not in ops and "Gemm" not in ops
    # a conv's own ReLU is folded into its requantization (90 convs); the ReLUs after the 21 merges (whose
    # expand conv feeds the Add directly) stay on the host
    assert sum(layer.requant.relu for layer in layers) == 90 and ops.count("Relu") == 21
    assert layers[-1].kind == "dense" and all(layer.requant.zero_point == 0 for layer in layers)


@pytest.mark.parametrize("config, dataflow", [("accel-16x16", "ws"), ("accel-32x32", "os")])
def test_accelerator_is_bit_exact_with_int8_reference(sqnxt23_int8, config, dataflow):
    model, qdq = sqnxt23_int8
    x = synthetic_inputs(model, 1, seed=5)[0]
    reference = Int8Executor(qdq, backend="reference")
    accel = Int8Executor(qdq, backend="accel", config=config, dataflow=dataflow)
    assert np.array_equal(accel.run(x), reference.run(x))
    assert len(accel.reports) == 112 and all(r.cycles > 0 for r in accel.reports)
    assert {r.tiling["dataflow"] for r in accel.reports} == {dataflow}


def test_int8_reference_is_as_close_to_float_as_onnxruntime(sqnxt23_int8):
    """Our integer arithmetic (one rounding per layer, ReLU folded) vs ORT running the same QDQ graph."""
    from sqnxt_compiler.accel.int8.accuracy import float_logits

    model, qdq = sqnxt23_int8
    inputs = synthetic_inputs(model, 4, seed=2)
    reference = float_logits(model, inputs)
    ours = compare_logits(reference, np.concatenate([Int8Executor(qdq).run(x) for x in inputs]))
    ort = compare_logits(reference, float_logits(qdq, inputs))
    assert ours["cosine_mean"] >= ort["cosine_mean"] - 1e-3


# Thresholds from measurements (docs/accelerator.md, "int8 quantization"): 227x227, 32 synthetic inputs,
# zoo weights as built: min cosine 0.99944 (1.0-SqNxt-23) and 0.99913 (23v5), top-1 agreement 100%.
@pytest.mark.parametrize("name", ["1.0-SqNxt-23", "1.0-SqNxt-23v5"])
def test_int8_matches_float_onnxruntime(name):
    result = evaluate_int8(name, calibration=8, evaluation=8, normalize_bn=False)   # the measured setting
    assert result["int8_vs_float"]["cosine_min"] >= 0.998
    assert result["int8_vs_float"]["top1_agreement"] == 1.0


def test_compare_logits():
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    result = compare_logits(a, a * 2)
    assert result["cosine_min"] == pytest.approx(1.0) and result["top1_agreement"] == 1.0
    assert compare_logits(a, a[::-1])["top1_agreement"] == 0.0


def test_asymmetric_activations_are_refused(sqnxt23_int8):
    _, qdq = sqnxt23_int8
    broken = onnx.ModelProto()
    broken.CopyFrom(qdq)
    for tensor in broken.graph.initializer:   # give the input's quantization a non-zero zero point
        if tensor.name.endswith("zero_point") and tensor.data_type == onnx.TensorProto.INT8 and not tensor.dims:
            tensor.CopyFrom(onnx.numpy_helper.from_array(np.array(3, dtype=np.int8), tensor.name))
            break
    with pytest.raises(SqnxtError, match="symmetric"):
        partition_qdq(broken)


def test_bad_backend():
    with pytest.raises(SqnxtError, match="backend"):
        Int8Executor(onnx.ModelProto(), backend="gpu")


def test_cli_int8_table(capsys):
    from sqnxt_compiler.cli.sim import main

    assert main(["int8", "--models", "1.0-SqNxt-23", "--resolution", "64", "--calibration", "2", "--samples", "2",
                 "--backend", "accel"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1.0-SqNxt-23")][0]
    assert "| accel | - (random weights) | - |" in row and float(row.split("|")[6]) > 0.99   # cosine min

"""Whole networks on the simulated accelerator: Relax partition, compiled library, runtime function, CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import pytest
import sqnxt_compiler
from sqnxt_compiler.accel.machine.config import AccelConfig
from sqnxt_compiler.accel.int8.accuracy import compare_logits, float_logits
from sqnxt_compiler.accel.int8.graph import partition_qdq
from sqnxt_compiler.accel.int8.reference import Int8Executor, _with_reference_opset
from sqnxt_compiler.accel.int8.quantize import quantize_qdq, synthetic_inputs
from sqnxt_compiler.errors import SqnxtError
from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.models import build_model
from sqnxt_compiler.passes.lower_accel import LowerAccel
from sqnxt_compiler.passes.partition_accel import PartitionAccel, composite_functions

RESOLUTION = 64   # small inputs keep compile + simulation short; every layer kind of SqueezeNext is there


@pytest.fixture(scope="module")
def sqnxt23(tmp_path_factory):
    """1.0-SqNxt-23 compiled for accel-16x16 (synthetic calibration), loaded."""
    model = build_model("1.0-SqNxt-23", resolution=RESOLUTION)
    output = tmp_path_factory.mktemp("sqnxt23") / "sqnxt23_accel.so"
    result = sqnxt_compiler.compile(model, target="accel-16x16", output=output)
    return model, result, sqnxt_compiler.load(result.library)


@pytest.fixture(scope="module")
def resnet_tiny(tmp_path_factory):
    """resnet-tiny (BatchNorm, Gemm with bias, Softmax) on accel-32x32, output-stationary."""
    model = build_model("resnet-tiny")
    output = tmp_path_factory.mktemp("resnet") / "resnet_accel.so"
    result = sqnxt_compiler.compile(model, target="accel-32x32", dataflow="os", output=output)
    return model, result, sqnxt_compiler.load(result.library)


def _float_layer_count(model: onnx.ModelProto) -> int:
    return sum(node.op_type in ("Conv", "Gemm") for node in model.graph.node)


def test_partition_puts_exactly_the_conv_and_dense_layers_on_the_accelerator(sqnxt23):
    model, result, _ = sqnxt23
    mod = import_to_relax(result.quantized, resolve_inputs(result.quantized))
    mod = PartitionAccel()(mod)
    kinds = Counter(str(f.attrs["Composite"]) for f in composite_functions(mod).values())
    # 111 convs + the classifier; a conv's own ReLU is folded (90), the 21 merges keep theirs on the host
    assert _float_layer_count(model) == 112 == sum(kinds.values())
    assert kinds == {"sqnxt_accel.conv2d_relu": 90, "sqnxt_accel.conv2d": 21, "sqnxt_accel.dense": 1}
    main = mod["main"].script()
    assert "R.nn.conv2d" not in main and "R.matmul" not in main and main.count("R.nn.relu(") == 21

    programs = []
    lowered = LowerAccel(AccelConfig.load("accel-16x16"), report=lambda layer, program: programs.append(layer))(mod)
    text = lowered.script()
    assert text.count('R.call_dps_packed("sqnxt.accel.run_layer"') == 112 and not composite_functions(lowered)
    # back-to-back layers hand over NHWC directly: layout changes only where the host reads or writes
    assert text.count("R.permute_dims(") < 112
    # the Relax partitioner's integer layers are the ONNX-level partitioner's, number for number
    _, reference = partition_qdq(_with_reference_opset(result.quantized))
    for layer in programs:
        twin = next(r for r in reference if r.weights.shape == layer.weights.shape
                    and np.array_equal(r.weights, layer.weights))
        assert np.array_equal(twin.bias, layer.bias) and twin.requant == layer.requant
        assert (twin.kind, twin.stride, twin.pad, twin.groups) == (layer.kind, layer.stride, layer.pad, layer.groups)


def test_compiled_library_is_bit_exact_with_the_int8_reference(sqnxt23):
    model, result, loaded = sqnxt23
    reference = Int8Executor(result.quantized, backend="reference")
    for x in synthetic_inputs(model, 3, seed=5):
        assert np.array_equal(loaded.run(x)[0], reference.run(x))
        assert len(loaded.accel_reports) == 112 and all(r.cycles > 0 for r in loaded.accel_reports)
    assert result.accel["layers"] == 112 and "112 layers" in loaded.accel_summary()


def test_compiled_library_is_close_to_float(sqnxt23):
    model, _, loaded = sqnxt23
    inputs = synthetic_inputs(model, 4, seed=2)
    ours = np.concatenate([loaded.run(x)[0] for x in inputs])
    assert compare_logits(float_logits(model, inputs), ours)["cosine_min"] >= 0.99


def test_other_model_array_and_dataflow(resnet_tiny):
    """BatchNorm, a Gemm with bias and a Softmax on the host; 32x32 array, OS tilings."""
    model, result, loaded = resnet_tiny
    assert result.accel["layers"] == _float_layer_count(model) == 10
    reference = Int8Executor(result.quantized, backend="reference")
    inputs = synthetic_inputs(model, 3, seed=4)
    ours = np.concatenate([loaded.run(x)[0] for x in inputs])
    # bit-exact so far; the host's float Softmax (TVM's exp vs numpy's) may differ in the last ulp one day
    np.testing.assert_allclose(ours, np.concatenate([reference.run(x) for x in inputs]), rtol=1e-6, atol=1e-7)
    assert {r.tiling["dataflow"] for r in loaded.accel_reports} == {"os"}
    assert {r.config for r in loaded.accel_reports} == {"accel-32x32"}
    assert compare_logits(float_logits(model, inputs), ours)["cosine_min"] >= 0.99


def test_calibration_file_is_used(tmp_path):
    model = build_model("resnet-tiny")
    images = np.concatenate(synthetic_inputs(model, 3, seed=8))
    np.save(tmp_path / "images.npy", images)
    result = sqnxt_compiler.compile(model, target="accel-16x16", output=tmp_path / "m.so",
                                    calibration=tmp_path / "images.npy")
    assert result.accel["calibration"].startswith("3 images from")
    expected = quantize_qdq(model, [images[i:i + 1] for i in range(3)])
    scales = lambda m: sorted(t.name for t in m.graph.initializer if t.name.endswith("_scale"))  # noqa: E731
    values = lambda m: {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}  # noqa: E731
    assert scales(result.quantized) == scales(expected)
    assert all(np.array_equal(values(result.quantized)[n], values(expected)[n]) for n in scales(expected))


@pytest.mark.parametrize("shape, message", [((2, 3, 32, 32), "holds float32\\[2, 3, 32, 32\\]"),
                                            ((0, 3, 64, 64), "expected \\(N, 3, 64, 64\\)")])
def test_bad_calibration_is_a_one_line_error(tmp_path, shape, message):
    np.save(tmp_path / "bad.npy", np.zeros(shape, dtype=np.float32))
    with pytest.raises(SqnxtError, match=message):
        sqnxt_compiler.compile(build_model("resnet-tiny"), target="accel-16x16", output=tmp_path / "m.so",
                               calibration=tmp_path / "bad.npy")


def test_calibration_is_refused_for_cpu_targets(tmp_path):
    with pytest.raises(SqnxtError, match="accelerator targets only"):
        sqnxt_compiler.compile(build_model("resnet-tiny"), target="host", output=tmp_path / "m.so",
                               calibration=np.zeros((1, 3, 64, 64), np.float32))


def test_library_without_sidecar_still_runs(resnet_tiny, tmp_path):
    model, result, loaded = resnet_tiny
    alone = tmp_path / "alone.so"
    shutil.copy(result.library, alone)
    x = synthetic_inputs(model, 1, seed=6)[0]
    moved = sqnxt_compiler.load(alone)
    assert np.array_equal(moved.run(x)[0], loaded.run(x)[0]) and len(moved.accel_reports) == 10


def test_stock_runtime_names_the_missing_function(resnet_tiny):
    """Without sqnxt_compiler's runtime functions, TVM itself refuses to start the VM and names the function."""
    _, result, _ = resnet_tiny
    code = ("import tvm; from tvm.runtime.vm import VirtualMachine\n"
            f"VirtualMachine(tvm.runtime.load_module({str(result.library)!r}), tvm.cpu())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode != 0 and "sqnxt.accel.run_layer" in run.stderr


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from sqnxt_compiler.cli.{} import main; "
                           "sys.exit(main(sys.argv[1:]))".format(args[0]), *args[1:]],
                          capture_output=True, text=True)


def test_cli_end_to_end(tmp_path):
    model = build_model("resnet-tiny")
    np.save(tmp_path / "images.npy", np.concatenate(synthetic_inputs(model, 2, seed=8)))
    np.save(tmp_path / "image.npy", synthetic_inputs(model, 1, seed=9)[0])
    library = tmp_path / "resnet_accel.so"
    built = _cli("compile", "--model", "resnet-tiny", "--target", "accel-16x16", "--calibrate",
                 str(tmp_path / "images.npy"), "-o", str(library), "--explain")
    assert built.returncode == 0, built.stderr
    assert "10 conv/dense layers on the accelerator" in built.stdout and "[partition_accel]" in built.stdout
    ran = _cli("run", str(library), "--input", str(tmp_path / "image.npy"), "--output", str(tmp_path / "y.npy"))
    assert ran.returncode == 0, ran.stderr
    assert "accelerator (accel-16x16, simulated): 10 layers" in ran.stdout
    expected = sqnxt_compiler.load(library).run(np.load(tmp_path / "image.npy"))[0]
    assert np.array_equal(np.load(tmp_path / "y.npy"), expected)


@pytest.mark.parametrize("args, message", [
    (["compile", "--model", "resnet-tiny", "--target", "accel-16x16", "--calibrate", "{tmp}/bad.npy", "-o",
      "{tmp}/m.so"], "error: calibration file '{tmp}/bad.npy' holds float32[4, 3, 32, 32]"),
    (["compile", "--model", "resnet-tiny", "--target", "accel-16x16", "--calibrate", "{tmp}/none.npy", "-o",
      "{tmp}/m.so"], "error: calibration file '{tmp}/none.npy' does not exist"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 32, 32), dtype=np.float32))
    run = _cli(*[a.format(tmp=tmp_path) for a in args])
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith(message.format(tmp=tmp_path))


def test_dense_with_untransposed_weight(tmp_path):
    """Gemm with transB=0 imports as matmul(x, W) without permute_dims: weights (in, out), scales on axis 1."""
    model = build_model("resnet-tiny")
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    weight = next(t for t in model.graph.initializer if t.name == gemm.input[1])
    weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight).T.copy(), weight.name))
    next(a for a in gemm.attribute if a.name == "transB").i = 0
    result = sqnxt_compiler.compile(model, target="accel-16x16", output=tmp_path / "m.so")
    assert result.accel["layers"] == 10
    loaded, reference = sqnxt_compiler.load(result.library), Int8Executor(result.quantized, backend="reference")
    for x in synthetic_inputs(model, 2, seed=3):
        np.testing.assert_allclose(loaded.run(x)[0], reference.run(x), rtol=1e-6, atol=1e-7)


def test_cli_run_with_wrong_input_shape_is_one_line(resnet_tiny, tmp_path):
    _, result, _ = resnet_tiny
    np.save(tmp_path / "wrong.npy", np.zeros((1, 3, 32, 32), dtype=np.float32))
    run = _cli("run", str(result.library), "--input", str(tmp_path / "wrong.npy"))
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "must have shape (1, 3, 64, 64)" in lines[0]

"""The model zoo builds the SqueezeNext family exactly as its authors defined it."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from sqnxt_compiler.cli.zoo import main as zoo_main
from sqnxt_compiler.errors import SqnxtError
from sqnxt_compiler.models import OFFICIAL_SQUEEZENEXT, build_model, list_models, model_counts

# DESIGN.md section 3 (the official Caffe prototxts): parameters (conv + FC) and MACs at 227x227.
PAPER_TABLE = {
    "1.0-SqNxt-23": (705_728, 278.0),
    "1.0-G-SqNxt-23": (531_520, 224.2),
    "1.0-SqNxt-23v5": (915_648, 224.9),
    "2.0-SqNxt-23": (2_339_008, 742.1),
    "2.0-SqNxt-23v5": (3_194_560, 702.6),
    "2.0-SqNxt-44": (4_384_960, 1342.9),
}


def _initializer_params(model: onnx.ModelProto) -> int:
    """Count conv/FC weights from the graph itself (not from the builder's own bookkeeping)."""
    weights = {n.input[i] for n in model.graph.node if n.op_type in ("Conv", "Gemm") for i in (1, 2) if i < len(n.input)}
    return sum(numpy_helper.to_array(t).size for t in model.graph.initializer if t.name in weights)


@pytest.mark.parametrize("name", list(PAPER_TABLE))
def test_counts_match_the_paper_table(name):
    model = build_model(name)
    params, macs = model_counts(model)
    assert (params, round(macs / 1e6, 1)) == PAPER_TABLE[name]
    assert _initializer_params(model) == params


# torchvision's parameter counts (which include BatchNorm's scale and shift, 2 per BN channel) and MACs at
# 224x224 (conv and FC multiply-accumulates, as fvcore counts them)
TORCHVISION_TABLE = {
    "resnet-18": (11_689_512, 1_814_073_344),
    "mobilenet-v2": (3_504_872, 300_774_272),
    "squeezenet1.1": (1_235_496, 349_151_936),
}


@pytest.mark.parametrize("name", list(TORCHVISION_TABLE))
def test_ordinary_cnns_match_torchvision(name):
    model = build_model(name)
    params, macs = model_counts(model)
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    bn_affine = sum(2 * init[n.input[1]].size for n in model.graph.node if n.op_type == "BatchNormalization")
    assert (params + bn_affine, macs) == TORCHVISION_TABLE[name]
    assert _initializer_params(model) == params


def test_mobilenet_v2_blocks():
    model = build_model("mobilenet-v2")
    depthwise = [n for n in model.graph.node if n.op_type == "Conv"
                 if next(a.i for a in n.attribute if a.name == "group") > 1]
    assert len(depthwise) == 17  # one per inverted-residual block
    assert sum(n.op_type == "Add" for n in model.graph.node) == 10  # stride-1 blocks with equal channels
    assert sum(n.op_type == "Clip" for n in model.graph.node) == 35  # ReLU6: 16 expands, 17 depthwise, 2 ends


def test_family_is_complete():
    assert set(PAPER_TABLE) | {"1.5-SqNxt-23"} == set(OFFICIAL_SQUEEZENEXT)
    assert model_counts(build_model("1.5-SqNxt-23"))[0] > model_counts(build_model("1.0-SqNxt-23"))[0]


def test_structure_of_official_blocks():
    model = build_model("1.0-SqNxt-23")
    kernels = [tuple(a.ints) for n in model.graph.node if n.op_type == "Conv" for a in n.attribute
               if a.name == "kernel_shape"]
    assert kernels[0] == (7, 7)
    assert kernels.count((3, 1)) == kernels.count((1, 3)) == 21  # one low-rank pair per block
    assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) == len(kernels)
    assert all(len(n.input) == 2 for n in model.graph.node if n.op_type == "Conv")  # no conv biases
    # the pair's order alternates inside a stage: block 1 is 3x1-first, block 2 is 1x3-first
    pairs = [k for k in kernels if k in ((3, 1), (1, 3))]
    assert pairs[:4] == [(3, 1), (1, 3), (1, 3), (3, 1)]


def test_third_party_family_matches_pytorchcv():
    model = build_model("sqnxt23_w1")
    params, _ = model_counts(model)
    conv_biases = {n.input[2] for n in model.graph.node if n.op_type == "Conv"}
    conv_channels = sum(numpy_helper.to_array(t).size for t in model.graph.initializer if t.name in conv_biases)
    # pytorchcv reports 724,056 with BatchNorm's affine parameters (2 per conv channel) still unfolded
    assert params + 2 * conv_channels == 724_056
    ops = {n.op_type for n in model.graph.node}
    assert ops == {"Conv", "Relu", "Add", "MaxPool", "AveragePool", "Reshape", "Gemm"}


def test_batch_resolution_and_seed():
    model = build_model("1.0-SqNxt-23", batch=4, resolution=128, seed=3)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [4, 3, 128, 128]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [4, 1000]
    a = numpy_helper.to_array(build_model("1.0-SqNxt-23", seed=1).graph.initializer[0])
    b = numpy_helper.to_array(build_model("1.0-SqNxt-23", seed=2).graph.initializer[0])
    assert not np.array_equal(a, b)


def test_batchnorm_statistics_are_not_trivial():
    model = build_model("1.0-SqNxt-23")
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scale, shift, mean, var = (init[name] for name in bn.input[1:])
    assert np.abs(scale - 1).max() > 0.1 and np.abs(mean).max() > 0.01 and np.abs(var - 1).max() > 0.1


def test_unknown_model_lists_known():
    with pytest.raises(SqnxtError, match="known models: .*1.0-SqNxt-23"):
        build_model("SqNxt-99")


def test_zoo_cli_export(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert zoo_main(["export", "1.0-G-SqNxt-23", "-o", str(out), "--resolution", "99"]) == 0
    onnx.checker.check_model(onnx.load(str(out)))
    assert "531,520 params" in capsys.readouterr().out
    assert zoo_main(["list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in list_models())

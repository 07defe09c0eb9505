"""Every zoo model compiles for the host and matches ONNX Runtime; every SqueezeNext cross-compiles for ARM."""

import json

import pytest

import sqnxt_compiler
from sqnxt_compiler.models import OFFICIAL_SQUEEZENEXT, build_model
from utils import compile_and_compare, elf_machine

HOST_MODELS = [*OFFICIAL_SQUEEZENEXT, "sqnxt23_w1", "sqnxt23v5_w1", "squeezenet1.0", "resnet-tiny"]


@pytest.mark.parametrize("name", HOST_MODELS)
def test_host_matches_onnxruntime(name, tmp_path):
    compile_and_compare(build_model(name), tmp_path)


def test_alexnet_matches_onnxruntime(tmp_path):
    compile_and_compare(build_model("alexnet", resolution=99), tmp_path)


def test_batch_and_resolution(tmp_path):
    compile_and_compare(build_model("1.0-SqNxt-23v5", batch=2, resolution=128), tmp_path)


@pytest.mark.parametrize("name", OFFICIAL_SQUEEZENEXT)
def test_arm_cross_compiles_to_aarch64(name, tmp_path):
    out = tmp_path / f"{name}.so"
    result = sqnxt_compiler.compile(build_model(name), target="arm", output=out)
    assert elf_machine(result.library) == "aarch64"
    meta = json.loads(result.sidecar.read_text())
    assert meta["target"]["llvm"]["mtriple"] == "aarch64-linux-gnu"
    assert meta["inputs"] == [{"name": "data", "shape": [1, 3, 227, 227], "dtype": "float32"}]
    assert meta["outputs"][0]["shape"] == [1, 1000]
    assert [p.name for p in tmp_path.iterdir()] and all(not p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.parametrize("target", ["rk3399", "graviton2"])
def test_other_arm_boards(target, tmp_path):
    result = sqnxt_compiler.compile(build_model("resnet-tiny"), target=target, output=tmp_path / "m.so")
    assert elf_machine(result.library) == "aarch64"

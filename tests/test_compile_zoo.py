"""Every zoo model compiles for the host and matches ONNX Runtime; every SqueezeNext cross-compiles for ARM."""

import json

import numpy as np
import pytest

import sqnxt_compiler
from sqnxt_compiler.models import OFFICIAL_SQUEEZENEXT, build_model
from sqnxt_compiler.runtime import aligned_array
from sqnxt_compiler.verify import reference_outputs, relative_error
from utils import compile_and_compare, elf_machine, seeded_input

HOST_MODELS = [*OFFICIAL_SQUEEZENEXT, "sqnxt23_w1", "sqnxt23v5_w1", "squeezenet1.0", "squeezenet1.1", "resnet-18",
               "mobilenet-v2", "resnet-tiny"]


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


def test_repeated_runs_read_each_new_input(tmp_path):
    """`run` copies every call's inputs into tensors it keeps between runs: each run must see its own input
    (a stale or aliased buffer would repeat the first result), including inputs it has to convert."""
    model = build_model("1.0-SqNxt-23", resolution=64)
    result = sqnxt_compiler.compile(model, target="host", output=tmp_path / "m.so")
    loaded = sqnxt_compiler.load(result.library)
    name, shape = result.inputs[0].name, result.inputs[0].shape
    first, second = seeded_input(shape, 1), seeded_input(shape, 2)
    kept = None
    for x in (first, second, np.asfortranarray(first.astype("float64"))):
        (actual,) = loaded.run(x)
        kept = kept or [id(t) for t in loaded._input_tensors]
        assert [id(t) for t in loaded._input_tensors] == kept, "run allocated new input tensors"  # the speed-up
        (expected,) = reference_outputs(model, {name: x.astype("float32")})
        assert relative_error(actual, expected) <= 1e-4
    assert not np.allclose(loaded.run(first)[0], loaded.run(second)[0])


def test_aligned_inputs_are_read_in_place(tmp_path):
    """An input in a buffer aligned as TVM's tensors are is read where it is: the library's own input tensor keeps
    the previous (copied) input, and the result is still the new input's."""
    model = build_model("1.0-SqNxt-23", resolution=64)
    result = sqnxt_compiler.compile(model, target="host", output=tmp_path / "m.so")
    loaded = sqnxt_compiler.load(result.library)
    name, shape = result.inputs[0].name, result.inputs[0].shape
    copied, in_place = seeded_input(shape, 1), aligned_array(seeded_input(shape, 2))
    storage = np.empty(copied.size + 1, np.float32)
    start = 1 if storage.ctypes.data % 64 == 0 else 0
    unaligned = storage[start:start + copied.size].reshape(shape)
    unaligned[...] = copied
    assert unaligned.ctypes.data % 64 != 0 and in_place.ctypes.data % 64 == 0
    loaded.run(unaligned)
    (actual,) = loaded.run(in_place)
    np.testing.assert_array_equal(np.from_dlpack(loaded._input_tensors[0]), copied)
    (expected,) = reference_outputs(model, {name: in_place})
    assert relative_error(actual, expected) <= 1e-4

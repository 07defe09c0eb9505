"""Kernels' scratch buffers on the stack (`stack_buffers`): no workspace calls left where they fit the budget,
the same results as with them in the workspace."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import tvm
from tvm import relax

import sqnxt_compiler
from sqnxt_compiler.errors import SqnxtError
from sqnxt_compiler.register_pressure import in_workspace, objdump_for
from sqnxt_compiler.stack_buffers import stack_buffer_bytes, with_stack_buffer_bytes
from sqnxt_compiler.target import load_target
from sqnxt_compiler.verify import reference_outputs, relative_error
from test_column_conv import conv_model
from test_fusion_passes import _seeded_input

WORKSPACE_CALL = "TVMBackendAllocWorkspace"


def _workspace_calls(library) -> int:
    try:
        objdump = objdump_for("x86_64")
    except SqnxtError as missing:
        pytest.skip(str(missing))
    listing = subprocess.run([objdump, "-d", str(library)], check=True, capture_output=True, text=True).stdout
    return sum(WORKSPACE_CALL in line for line in listing.splitlines())  # the loads of its address for the calls


def _run(library, data: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(data)).numpy()


def test_a_depthwise_convs_planes_go_on_the_stack(tmp_path):
    """A depthwise conv's row tiles each copy their input planes into a buffer of their own (a few KB): on the
    stack, the kernel calls no workspace allocation; kept in the workspace, it calls one per row tile. The two
    libraries compute the same bits, which match ONNX Runtime."""
    spec = load_target("x86-avx2")  # runs on any x86-64 test machine
    assert stack_buffer_bytes(spec) > 0 and stack_buffer_bytes(in_workspace(spec)) == 0
    model = conv_model(24, 24, 24, 56, 56, (3, 3), 2, True, "relu6", 1)
    data = _seeded_input(model)
    on_stack = sqnxt_compiler.compile(model, spec, output=tmp_path / "stack.so").library
    in_pool = sqnxt_compiler.compile(model, in_workspace(spec), output=tmp_path / "pool.so").library
    assert _workspace_calls(on_stack) == 0 < _workspace_calls(in_pool)
    expected = _run(in_pool, data)
    np.testing.assert_array_equal(_run(on_stack, data), expected)
    assert relative_error(expected, reference_outputs(model, {"data": data})[0]) <= 1e-5


def test_buffers_beyond_the_budget_stay_in_the_workspace(tmp_path):
    """With a budget smaller than the planes (256 bytes), the kernel keeps its workspace calls."""
    small = with_stack_buffer_bytes(load_target("x86-avx2"), 256)
    model = conv_model(24, 24, 24, 56, 56, (3, 3), 2, True, "relu6", 1)
    library = sqnxt_compiler.compile(model, small, output=tmp_path / "small.so").library
    assert _workspace_calls(library) > 0

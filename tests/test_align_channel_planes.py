"""AlignChannelPlanes: the tensors between kernels get channel planes of whole cache lines; the numbers stay."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tvm
from tvm import relax, s_tir

from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.kernels import ChainStage, pointwise_chain_kernel
from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from sqnxt_compiler.passes.align_channel_planes import padded_plane, with_padded_params
from sqnxt_compiler.pipeline import PHASES, CompileContext, run_pipeline
from sqnxt_compiler.schedules.fused_pixel_chunks import schedule_pixel_chunks
from sqnxt_compiler.target import load_target
from sqnxt_compiler.verify import reference_outputs, relative_error

AVX2 = load_target("x86-avx2")  # its code runs on every machine that runs these tests


@pytest.mark.parametrize("height, width, padded", [(13, 11, 144), (7, 7, 64), (55, 55, 3040 + 320),
                                                   (27, 27, 736 + 320), (28, 28, None), (3, 3, None)])
def test_planes_pad_to_whole_lines(height, width, padded):
    """Planes of 512 floats or more also get a guard of 20 lines; planes that are already whole lines (28x28:
    784 floats), or smaller than one, stay as they are."""
    assert padded_plane((1, 8, height, width)) == padded


def test_padded_kernel_reads_and_writes_only_its_planes():
    """A scheduled pixel-chunk kernel (1x1 conv + residual add) on padded tensors whose padding holds NaN:
    the valid floats match the kernel on NCHW tensors, and nothing reads or writes the padding."""
    batch, channels, height, width = 1, 16, 13, 11
    func = pointwise_chain_kernel((batch, channels, height, width), [ChainStage(32, (1, 1), (1, 1), (0, 0, 0, 0), 1,
                                                                                True, False)], True, True, "expand")
    sch = s_tir.Schedule(func)
    schedule_pixel_chunks(sch, AVX2)
    scheduled = sch.mod["main"]
    padded = with_padded_params(scheduled, [0, 3, 4])  # data, residual, output: after the weight and bias

    rng = np.random.default_rng(0)
    plane, pixels = padded_plane((batch, channels, height, width)), height * width
    data = rng.standard_normal((batch, channels, height, width)).astype("float32")
    weight = rng.standard_normal((32, channels, 1, 1)).astype("float32")
    bias = rng.standard_normal(32).astype("float32")
    residual = rng.standard_normal((batch, 32, height, width)).astype("float32")

    def planes(nchw: np.ndarray) -> np.ndarray:
        out = np.full((*nchw.shape[:2], plane), np.nan, "float32")
        out[:, :, :pixels] = nchw.reshape(*nchw.shape[:2], pixels)
        return out

    def run(func, *arrays):
        lib = tvm.compile(tvm.IRModule({"main": func}), AVX2.tvm_target())
        tensors = [tvm.runtime.tensor(a) for a in arrays]
        lib["main"](*tensors)
        return tensors[-1].numpy()

    expected = run(scheduled, data, weight, bias, residual, np.zeros((batch, 32, height, width), "float32"))
    result = run(padded, planes(data), weight, bias, planes(residual), planes(np.zeros((batch, 32, height, width),
                                                                                       "float32")))
    assert np.isnan(result[:, :, pixels:]).all()
    np.testing.assert_array_equal(result[:, :, :pixels].reshape(expected.shape), expected)


def _ragged_network():
    """Convs on 14x14 planes (196 floats), a residual add, a stride-2 depthwise conv, then a head that flattens
    (not a kernel read)."""
    g = GraphBuilder(seed=3)
    x = Tensor("data", (1, 8, 14, 14))
    y = g.relu(g.conv(x, 16, (3, 3), pad=(1, 1), bias=True))
    z = g.relu(g.add(g.conv(y, 16, (1, 1), bias=True), y))
    z = g.relu(g.conv(z, 16, (1, 1), bias=True))
    z = g.relu(g.conv(z, 16, (3, 3), 2, (1, 1), groups=16, bias=True))
    z = g.relu(g.conv(z, 16, (1, 1), bias=True))
    return g.finish("ragged", x, g.gemm(g.flatten(g.global_avg_pool(z)), 10, bias=True))


def _tensor_shapes(func: relax.Function) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in binding.var.ty.shape.values) for block in func.body.blocks
            for binding in block.bindings if isinstance(binding.var.ty, relax.TensorType)]


def test_network_pads_the_tensors_between_kernels_and_matches_onnxruntime():
    model = _ragged_network()
    data = np.random.default_rng(1).standard_normal((1, 8, 14, 14)).astype("float32")
    ctx = CompileContext(AVX2)
    mod = run_pipeline(import_to_relax(model, resolve_inputs(model)), ctx, [p for p in PHASES
                                                                             if p.name != "lower_to_vm"])
    vm = relax.VirtualMachine(tvm.compile(run_pipeline(mod, ctx, [p for p in PHASES if p.name == "lower_to_vm"]),
                                          AVX2.tvm_target(), relax_pipeline=None), tvm.cpu())
    (expected,) = reference_outputs(model, {"data": data})
    assert relative_error(vm["main"](tvm.runtime.tensor(data)).numpy(), expected) <= 1e-5
    shapes = _tensor_shapes(mod["main"])
    assert (1, 16, 208) in shapes and (1, 16, 14, 14) not in shapes  # padded, the depthwise conv's input too
    assert [int(d) for d in mod["main"].params[0].ty.shape.values] == [1, 8, 14, 14]  # the input stays NCHW
    assert "14x14 (196 -> 208 floats)" in ctx.notes["align_channel_planes"][0]
    called = {value.args[0].name_hint for block in mod["main"].body.blocks for value in
              (binding.value for binding in block.bindings) if isinstance(value, relax.Call)
              and isinstance(value.args[0], tvm.ir.GlobalVar)}
    kernels = {gvar.name_hint for gvar, func in mod.functions.items() if isinstance(func, tvm.tirx.PrimFunc)}
    assert kernels <= called  # the kernels replaced by their padded variants are gone


def test_one_core_leaves_planes_alone():
    """With one core no tensor is split between cores, so no plane is padded."""
    model = _ragged_network()
    ctx = CompileContext(dataclasses.replace(AVX2, cpu={**AVX2.cpu, "cores": 1}))
    mod = run_pipeline(import_to_relax(model, resolve_inputs(model)), ctx, [p for p in PHASES
                                                                             if p.name != "lower_to_vm"])
    assert not any(len(shape) == 3 for shape in _tensor_shapes(mod["main"]))
    assert ctx.notes["align_channel_planes"][0].startswith("one core")


def test_a_parameter_read_through_a_view_of_its_own_is_found():
    """A kernel that declares a buffer of its own over a parameter's data (a view of another dtype) assumes NCHW:
    that parameter is found, so its tensor is never padded; a plain parameter is not."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.tirx.script.builder import ir as T

    from sqnxt_compiler.passes.align_channel_planes import _reinterpreted_params

    with IRBuilder() as builder:
        with T.prim_func(s_tir=True):
            T.func_name("main")
            data = T.arg("data", T.buffer((1, 2, 4, 4), "float32"))
            weight = T.arg("weight", T.buffer((2,), "float32"))
            output = T.arg("output", T.buffer((1, 2, 4, 2), "float32"))
            with T.sblock("root"):
                pairs = T.decl_buffer((1, 2, 4, 2), "uint64", data=data.data)
                with T.grid(1, 2, 4, 2) as (b, c, y, x):
                    with T.sblock("copy"):
                        T.buffer_store(output, T.reinterpret("float32", T.Cast("uint32", pairs[b, c, y, x]))
                                       * weight[c], [b, c, y, x])
    assert _reinterpreted_params(builder.get()) == {0}

"""ChannelConcat + ConcatInPlace: the kernels whose outputs a concat along channels joins (a fire module's expands)
write their channels of its output, and the copy goes; RemoveDropout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tvm
from tvm import relax, s_tir, te

from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.kernels.channel_concat import channel_concat_kernel
from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from sqnxt_compiler.passes.concat_in_place import writing_into
from sqnxt_compiler.pipeline import PHASES, CompileContext, run_pipeline
from sqnxt_compiler.schedules.pooling import apply as schedule_elementwise
from sqnxt_compiler.target import load_target
from sqnxt_compiler.tuning.tasks import extract_tuning_tasks
from sqnxt_compiler.verify import reference_outputs, relative_error

AVX2 = load_target("x86-avx2")  # its code runs on every machine that runs these tests
_INPLACE = tvm.ir.Op.get("relax.call_tir_inplace")


def _fire_network(batch: int, shared_expand: bool = False):
    """A fire module on 13x11 images (ragged planes: padded on 2 cores): squeeze 1x1, then a 1x1 and a 3x3 expand
    joined along channels, Dropout, and a head. With `shared_expand` the 1x1 expand is also read by the head,
    so the concat must stay a copy."""
    g = GraphBuilder(seed=5)
    x = Tensor("data", (batch, 8, 13, 11))
    squeeze = g.relu(g.conv(x, 16, (1, 1), bias=True))
    left = g.relu(g.conv(squeeze, 32, (1, 1), bias=True))
    right = g.relu(g.conv(squeeze, 32, (3, 3), pad=(1, 1), bias=True))
    y = g.unary("Dropout", g.concat([left, right]))
    y = g.relu(g.conv(y, 32, (1, 1), bias=True))
    if shared_expand:
        y = g.add(y, left)
    return g.finish("fire", x, g.gemm(g.flatten(g.global_avg_pool(y)), 10, bias=True))


def _compiled(model, cores: int) -> tuple[tvm.IRModule, CompileContext, relax.VirtualMachine]:
    ctx = CompileContext(dataclasses.replace(AVX2, cpu={**AVX2.cpu, "cores": cores}))
    mod = run_pipeline(import_to_relax(model, resolve_inputs(model)), ctx,
                       [p for p in PHASES if p.name != "lower_to_vm"])
    lowered = run_pipeline(mod, ctx, [p for p in PHASES if p.name == "lower_to_vm"])
    return mod, ctx, relax.VirtualMachine(tvm.compile(lowered, AVX2.tvm_target(), relax_pipeline=None), tvm.cpu())


def _calls(mod: tvm.IRModule) -> list[relax.Call]:
    return [binding.value for block in mod["main"].body.blocks for binding in block.bindings
            if isinstance(binding.value, relax.Call)]


def _check_numbers(model, vm: relax.VirtualMachine, batch: int) -> None:
    data = np.random.default_rng(1).standard_normal((batch, 8, 13, 11)).astype("float32")
    (expected,) = reference_outputs(model, {"data": data})
    assert relative_error(vm["main"](tvm.runtime.tensor(data)).numpy(), expected) <= 1e-5


@pytest.mark.parametrize("batch, cores", [(1, 2), (2, 2), (2, 1)])
def test_fire_module_expands_write_the_concat_in_place(batch, cores):
    """On padded planes (2 cores) and NCHW ones (1 core), at batch 1 and 2 (where the concat's batch stride is
    not its parts'): no copy and no dropout left, the same numbers as ONNX Runtime."""
    model = _fire_network(batch)
    mod, ctx, vm = _compiled(model, cores)
    _check_numbers(model, vm, batch)
    calls = _calls(mod)
    assert sum(call.op == _INPLACE for call in calls) == 1
    names = {gvar.name_hint for gvar in mod.functions}
    assert not any("concat" in name and not name.endswith("_concat") for name in names)  # the copy is gone
    assert not any("dropout" in name for name in names)
    assert ctx.notes["channel_concat"] == ["1 concats along channels marked for in-place writes: 13x11: 1"]
    assert ctx.notes["concat_in_place"] == [
        "1 concats written in place by the kernels of their inputs, no copy: 64 channels: 1"]


def test_concat_of_a_tensor_read_elsewhere_stays_a_copy():
    model = _fire_network(2, shared_expand=True)
    mod, ctx, vm = _compiled(model, 2)
    _check_numbers(model, vm, 2)
    assert not any(call.op == _INPLACE for call in _calls(mod))
    assert ctx.notes["channel_concat"][0].startswith("no concat")
    assert ctx.notes["concat_in_place"][0].startswith("no channel concat")


def test_kernel_writes_its_channels_of_a_wider_tensor_and_nothing_else():
    """A scheduled kernel (here the concat kernel itself, 3 + 5 channels) moved to channels 4..11 of a 16-channel
    tensor at batch 2: those channels hold its result, every other float keeps its NaN."""
    shapes = [(2, 3, 5, 7), (2, 5, 5, 7)]
    sch = s_tir.Schedule(channel_concat_kernel(shapes, "float32"))
    schedule_elementwise(sch, AVX2)
    moved = writing_into(sch.mod["main"], 4, 16)
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal(shape).astype("float32") for shape in shapes]
    whole = tvm.runtime.tensor(np.full((2, 16, 5, 7), np.nan, "float32"))
    tvm.compile(tvm.IRModule({"main": moved}), AVX2.tvm_target())["main"](
        *[tvm.runtime.tensor(part) for part in parts], whole)
    result = whole.numpy()
    np.testing.assert_array_equal(result[:, 4:12], np.concatenate(parts, axis=1))
    assert np.isnan(result[:, :4]).all() and np.isnan(result[:, 12:]).all()


def test_kernel_with_an_output_not_laid_out_by_channels_is_left_alone():
    data = te.placeholder((1, 4, 2, 2), "float32", name="data")
    flat = te.compute((16,), lambda i: data[0, i // 4, i // 2 % 2, i % 2], name="flat")
    assert writing_into(te.create_prim_func([data, flat]), 4, 8) is None


def test_channel_concats_are_not_tuning_tasks():
    """concat_in_place removes them after scheduling, so tuning them would be wasted trials."""
    names = [task.name for task in extract_tuning_tasks(_fire_network(1), AVX2)]
    assert names and not any("concat" in name for name in names)

"""SubsamplePointwise: strided 1x1 convs read one shared dense copy of the pixels they use and run as stride-1 1x1s."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from sqnxt_compiler.passes.subsample_pointwise import SubsamplePointwise
from sqnxt_compiler.pipeline import PHASES, CompileContext, run_pipeline
from sqnxt_compiler.target import load_target
from sqnxt_compiler.verify import reference_outputs, relative_error

AVX2 = load_target("x86-avx2")  # its code runs on every machine that runs these tests


def _downsampling_block(batch: int, size: int, padded_projection: bool = False):
    """The first block of a SqueezeNext stage on a `size` x `size` image: a 1x1/2 projection and a 1x1/2 -> 1x1
    reduce pair on the same input, a 3x3/2 conv beside them (left alone), joined by adds and ReLUs."""
    g = GraphBuilder(seed=7)
    x = Tensor("data", (batch, 16, size, size))
    stem = g.relu(g.conv(x, 32, (1, 1), bias=True))
    projection = g.conv(stem, 64, (1, 1), stride=2, pad=(0, 0) if not padded_projection else (1, 1), bias=True)
    reduced = g.relu(g.conv(g.relu(g.conv(stem, 32, (1, 1), stride=2, bias=True)), 16, (1, 1), bias=True))
    expanded = g.conv(reduced, 64, (1, 1), bias=True)
    y = g.relu(g.add(expanded, g.conv(stem, 64, (3, 3), stride=2, pad=(1, 1), bias=True)))
    if not padded_projection:
        y = g.relu(g.add(y, projection))
    return g.finish("downsampling", x, g.gemm(g.flatten(g.global_avg_pool(y)), 10, bias=True))


def _conv_strides(mod: tvm.IRModule) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(kernel, strides) of every relax conv2d left in `mod`'s main."""
    return [((int(b.value.args[1].ty.shape[2]), int(b.value.args[1].ty.shape[3])),
             tuple(int(s) for s in b.value.attrs.strides))
            for block in mod["main"].body.blocks for b in block.bindings
            if isinstance(b.value, relax.Call) and b.value.op == tvm.ir.Op.get("relax.nn.conv2d")]


@pytest.mark.parametrize("batch, size", [(1, 29), (2, 28)])
def test_strided_pointwise_convs_share_one_subsampled_copy(batch, size):
    """Odd sizes keep the last row and column (29 -> 15); both strided 1x1s read one slice, the 3x3/2 keeps its
    stride; the whole pipeline then matches ONNX Runtime, the two 1x1s as stride-1 pixel-chunk kernels."""
    model = _downsampling_block(batch, size)
    mod = import_to_relax(model, resolve_inputs(model))
    records: list = []
    rewritten = SubsamplePointwise(report=records.append)(mod)
    out = (size + 1) // 2
    assert records == [(out, out, 0), (out, out, 0)]
    assert sorted(_conv_strides(rewritten)) == [((1, 1), (1, 1))] * 5 + [((3, 3), (2, 2))]
    assert sum(b.value.op == tvm.ir.Op.get("relax.strided_slice") for block in rewritten["main"].body.blocks
               for b in block.bindings if isinstance(b.value, relax.Call)) == 1

    ctx = CompileContext(AVX2)
    lowered = run_pipeline(mod, ctx, PHASES)
    assert ctx.notes["subsample_pointwise"] == [
        f"2 strided 1x1 convs read 1 subsampled copies, per stage: {out}x{out}: 2"]
    assert any(line.startswith("pointwise: 1 fused") for line in ctx.notes["pointwise_conv"])
    assert any("reduce_chain: 1 fused (1x1->1x1: 1)" in line for line in ctx.notes["fuse_bottleneck"])
    vm = relax.VirtualMachine(tvm.compile(lowered, AVX2.tvm_target(), relax_pipeline=None), tvm.cpu())
    data = np.random.default_rng(3).standard_normal((batch, 16, size, size)).astype("float32")
    (expected,) = reference_outputs(model, {"data": data})
    assert relative_error(vm["main"](tvm.runtime.tensor(data)).numpy(), expected) <= 1e-5


def test_padded_strided_pointwise_conv_keeps_its_stride():
    """A 1x1/2 with padding reads pixels that a slice of the input does not hold: it stays as it is."""
    model = _downsampling_block(1, 28, padded_projection=True)
    mod = import_to_relax(model, resolve_inputs(model))
    records: list = []
    rewritten = SubsamplePointwise(report=records.append)(mod)
    assert len(records) == 1  # the reduce pair's first conv only
    assert ((1, 1), (2, 2)) in _conv_strides(rewritten)

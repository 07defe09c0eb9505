"""ChunkMajorTensors: the tensors that pixel-chunk kernels pass to each other are chunk-major; the numbers stay."""

from __future__ import annotations

import numpy as np
import pytest
from chunk_layouts import chain_arrays, from_chunk_major, run_scheduled, stage, to_chunk_major
from tvm import relax, tirx

from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.kernels import pointwise_chain_kernel
from sqnxt_compiler.kernels.contract import CHAIN_SPEC_ATTR
from sqnxt_compiler.kernels.pixel_chunks import PIXEL_CHUNK, chunk_major_shape
from sqnxt_compiler.models import build_model
from sqnxt_compiler.pipeline import GRAPH_REWRITES, CompileContext, run_pipeline
from sqnxt_compiler.target import load_target

AVX2 = load_target("x86-avx2")  # its code runs on every machine that runs these tests


@pytest.mark.parametrize("height, width", [(13, 11), (8, 8), (55, 55)])  # the last chunk overlaps / does not
@pytest.mark.parametrize("stages, residual, chunk_major", [
    ([stage(32, relu=False)], True, {"output"}),
    ([stage(32, relu=False)], True, {"residual", "output"}),
    ([stage(32, relu=False)], True, {"data", "residual"}),
    ([stage(16), stage(8)], False, {"data"}),
    ([stage(160), stage(8)], False, {"data", "output"}),  # long reduction: NCHW input would be packed
])
def test_chunk_major_kernel_computes_what_the_nchw_kernel_computes(height, width, stages, residual, chunk_major):
    """Bit for bit, whichever of data, residual and output are chunk-major."""
    channels = 16 if stages[0].out_channels != 160 else 8
    shape = (2, channels, height, width)
    arrays = chain_arrays(shape, stages, residual)
    expected, _ = run_scheduled(pointwise_chain_kernel(shape, stages, residual, True, "p"), AVX2, arrays)

    out_shape = arrays[-1].shape
    images = [0] + ([len(arrays) - 2] if residual else [])
    laid_out = [to_chunk_major(a) if (i == 0 and "data" in chunk_major) or (i in images[1:] and "residual"
                                                                           in chunk_major) else a
                for i, a in enumerate(arrays[:-1])]
    output = np.zeros(chunk_major_shape(out_shape), "float32") if "output" in chunk_major else arrays[-1]
    result, _ = run_scheduled(pointwise_chain_kernel(shape, stages, residual, True, "p", chunk_major), AVX2,
                              [*laid_out, output])
    if "output" in chunk_major:
        assert result.shape == chunk_major_shape(out_shape)
        result = from_chunk_major(result, height, width)
    np.testing.assert_array_equal(result, expected)


def _layouts(func: relax.Function) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in binding.var.ty.shape.values) for block in func.body.blocks
            for binding in block.bindings if isinstance(binding.var.ty, relax.TensorType)]


def test_squeezenext_block_outputs_inside_a_stage_become_chunk_major():
    """In 1.0-SqNxt-23 a block's output feeds the next block's 1x1 reduce pair and its residual add, both
    pixel-chunk kernels, except the last block's of a stage (the next stage's strided slice reads it): 5 of 6
    blocks at 55x55, 5 of 6 at 28x28, 7 of 8 at 14x14, none at 7x7; and the projection shortcuts' at 55x55, 28x28
    and 14x14 (pixel-chunk kernels on the stage's subsampled input), but not the stem's (a Winograd kernel writes
    it) nor the 7x7 projection's (a conv kernel). No NCHW tensor of the network is 16 wide, so a trailing 16 marks
    the chunk-major ones."""
    model = build_model("1.0-SqNxt-23")
    ctx = CompileContext(AVX2)
    mod = run_pipeline(import_to_relax(model, resolve_inputs(model)), ctx, GRAPH_REWRITES)
    chunk_major = [shape for shape in _layouts(mod["main"]) if len(shape) == 4 and shape[-1] == PIXEL_CHUNK]
    assert sorted(chunk_major) == sorted([chunk_major_shape((1, 32, 55, 55))] * 6 + [
        chunk_major_shape((1, 64, 28, 28))] * 6 + [chunk_major_shape((1, 128, 14, 14))] * 8)
    assert ctx.notes["chunk_major_tensors"] == [
        "20 tensors between pixel-chunk kernels made chunk-major: 55x55: 6, 28x28: 6, 14x14: 8"]
    kernels = [func for func in mod.functions.values() if isinstance(func, tirx.PrimFunc)]
    assert not any(func.attrs is not None and CHAIN_SPEC_ATTR in func.attrs for func in kernels)
    assert [int(d) for d in mod["main"].ret_ty.shape.values] == [1, 1000]

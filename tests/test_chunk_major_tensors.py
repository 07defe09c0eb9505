"""ChunkMajorTensors: the tensors that pixel-chunk kernels pass to each other are chunk-major; the numbers stay."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, s_tir, tirx

from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.kernels import ChainStage, pointwise_chain_kernel
from sqnxt_compiler.kernels.contract import CHAIN_SPEC_ATTR
from sqnxt_compiler.kernels.pixel_chunks import PIXEL_CHUNK, chunk_major_shape
from sqnxt_compiler.models import build_model
from sqnxt_compiler.pipeline import GRAPH_REWRITES, CompileContext, run_pipeline
from sqnxt_compiler.schedules.fused_pixel_chunks import schedule_pixel_chunks
from sqnxt_compiler.target import load_target

AVX2 = load_target("x86-avx2")  # its code runs on every machine that runs these tests


def _chunk_starts(pixels: int) -> list[int]:
    """The first pixel of each chunk: the last chunk ends at the last pixel."""
    return [min(k * PIXEL_CHUNK, pixels - PIXEL_CHUNK) for k in range(-(-pixels // PIXEL_CHUNK))]


def to_chunk_major(nchw: np.ndarray) -> np.ndarray:
    batch, channels, height, width = nchw.shape
    flat = nchw.reshape(batch, channels, height * width)
    return np.stack([flat[:, :, start:start + PIXEL_CHUNK] for start in _chunk_starts(height * width)], axis=1)


def from_chunk_major(chunks: np.ndarray, height: int, width: int) -> np.ndarray:
    """The NCHW tensor; every pixel stored twice (the last chunk's overlap) must hold the same value both times."""
    batch, _, channels, _ = chunks.shape
    flat = np.full((batch, channels, height * width), np.nan, "float32")
    for k, start in enumerate(_chunk_starts(height * width)):
        stored = flat[:, :, start:start + PIXEL_CHUNK]
        written = ~np.isnan(stored)
        np.testing.assert_array_equal(stored[written], chunks[:, k][written])
        flat[:, :, start:start + PIXEL_CHUNK] = chunks[:, k]
    return flat.reshape(batch, channels, height, width)


def _stage(out_channels: int, relu: bool = True) -> ChainStage:
    return ChainStage(out_channels, (1, 1), (1, 1), (0, 0, 0, 0), 1, True, relu)


def _run(func: tirx.PrimFunc, arrays: list[np.ndarray]) -> np.ndarray:
    sch = s_tir.Schedule(func.without_attr(CHAIN_SPEC_ATTR))
    schedule_pixel_chunks(sch, AVX2)
    lib = tvm.compile(sch.mod, AVX2.tvm_target())
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*tensors)
    return tensors[-1].numpy()


@pytest.mark.parametrize("height, width", [(13, 11), (8, 8), (55, 55)])  # the last chunk overlaps / does not
@pytest.mark.parametrize("stages, residual, chunk_major", [
    ([_stage(32, relu=False)], True, {"output"}),
    ([_stage(32, relu=False)], True, {"residual", "output"}),
    ([_stage(32, relu=False)], True, {"data", "residual"}),
    ([_stage(16), _stage(8)], False, {"data"}),
    ([_stage(160), _stage(8)], False, {"data", "output"}),  # long reduction: NCHW input would be packed
])
def test_chunk_major_kernel_computes_what_the_nchw_kernel_computes(height, width, stages, residual, chunk_major):
    """Bit for bit, whichever of data, residual and output are chunk-major."""
    rng = np.random.default_rng(0)
    batch, channels = 2, 16 if stages[0].out_channels != 160 else 8
    shape = (batch, channels, height, width)
    arrays = [rng.standard_normal(shape).astype("float32")]
    in_channels = channels
    for stage in stages:
        arrays += [rng.standard_normal((stage.out_channels, in_channels, 1, 1)).astype("float32"),
                   rng.standard_normal(stage.out_channels).astype("float32")]
        in_channels = stage.out_channels
    out_shape = (batch, in_channels, height, width)
    if residual:
        arrays.append(rng.standard_normal(out_shape).astype("float32"))
    arrays.append(np.zeros(out_shape, "float32"))
    expected = _run(pointwise_chain_kernel(shape, stages, residual, True, "p"), arrays)

    images = [0] + ([len(arrays) - 2] if residual else [])
    laid_out = [to_chunk_major(a) if (i == 0 and "data" in chunk_major) or (i in images[1:] and "residual"
                                                                           in chunk_major) else a
                for i, a in enumerate(arrays[:-1])]
    output = np.zeros(chunk_major_shape(out_shape), "float32") if "output" in chunk_major else arrays[-1]
    result = _run(pointwise_chain_kernel(shape, stages, residual, True, "p", chunk_major), [*laid_out, output])
    if "output" in chunk_major:
        assert result.shape == chunk_major_shape(out_shape)
        result = from_chunk_major(result, height, width)
    np.testing.assert_array_equal(result, expected)


def _layouts(func: relax.Function) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in binding.var.ty.shape.values) for block in func.body.blocks
            for binding in block.bindings if isinstance(binding.var.ty, relax.TensorType)]


def test_squeezenext_block_outputs_inside_a_stage_become_chunk_major():
    """In 1.0-SqNxt-23 a block's output feeds the next block's 1x1 reduce pair and its residual add, both
    pixel-chunk kernels, except the last block's of a stage (the next stage's stride-2 conv reads it): 5 of 6
    blocks at 55x55, 5 of 6 at 28x28, 7 of 8 at 14x14, none at 7x7; and the 55x55 projection shortcut's (a
    pixel-chunk kernel), but not the stem's (a Winograd kernel writes it) nor the 28x28 projection's (stride 2).
    No NCHW tensor of the network is 16 wide, so a trailing 16 marks the chunk-major ones."""
    model = build_model("1.0-SqNxt-23")
    ctx = CompileContext(AVX2)
    mod = run_pipeline(import_to_relax(model, resolve_inputs(model)), ctx, GRAPH_REWRITES)
    chunk_major = [shape for shape in _layouts(mod["main"]) if len(shape) == 4 and shape[-1] == PIXEL_CHUNK]
    assert sorted(chunk_major) == sorted([chunk_major_shape((1, 32, 55, 55))] * 6 + [
        chunk_major_shape((1, 64, 28, 28))] * 5 + [chunk_major_shape((1, 128, 14, 14))] * 7)
    assert ctx.notes["chunk_major_tensors"] == [
        "18 tensors between pixel-chunk kernels made chunk-major: 55x55: 6, 28x28: 5, 14x14: 7"]
    kernels = [func for func in mod.functions.values() if isinstance(func, tirx.PrimFunc)]
    assert not any(func.attrs is not None and CHAIN_SPEC_ATTR in func.attrs for func in kernels)
    assert [int(d) for d in mod["main"].ret_ty.shape.values] == [1, 1000]

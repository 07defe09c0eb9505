"""PairPixelChunks and the paired register tiles: two chunks a tile where a vector holds a chunk; numbers stay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from chunk_layouts import chain_arrays, from_chunk_major, run_scheduled, stage, to_chunk_major
from tvm import relax, tirx

from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.kernels import pointwise_chain_kernel
from sqnxt_compiler.kernels.pixel_chunks import PIXEL_CHUNK, chunk_major_shape, image_chunks, pairs_pay
from sqnxt_compiler.models import build_model
from sqnxt_compiler.pipeline import GRAPH_REWRITES, CompileContext, run_pipeline
from sqnxt_compiler.target import TargetSpec, load_target

AVX2 = load_target("x86-avx2")


def _with_cpu(spec: TargetSpec, **cpu) -> TargetSpec:
    return dataclasses.replace(spec, cpu={**spec.cpu, **cpu})


# The schedules of a 16-lane target on AVX2 code (LLVM splits each 16-lane vector in two): paired tiles run on
# every machine; the x86-avx512 build itself only where the CPU has AVX-512.
SIXTEEN_LANES = _with_cpu(AVX2, vector_bits=512, vector_registers=32, cores=2)
RUNNABLE = [SIXTEEN_LANES] + ([_with_cpu(load_target("x86-avx512"), cores=2)]
                              if " avx512f" in Path("/proc/cpuinfo").read_text() else [])


@pytest.mark.parametrize("batch, paired, single, cores, pays", [
    (1, 50, 49, 2, True),    # 28x28: 25 pairs, 13 on one core (26 chunks' work at 0.9) against 25 chunks
    (1, 14, 13, 2, False),   # 14x14: 7 pairs, 4 on one core (8 chunks' work) against 7
    (8, 14, 13, 2, True),
    (1, 14, 14, 1, True),    # one core: pairs always pay on an even count
    (1, 2, 2, 2, False),     # one pair cannot be split between the cores
])
def test_pairs_pay_when_the_busiest_core_gets_less_work(batch, paired, single, cores, pays):
    assert pairs_pay(batch, paired, single, cores) == pays


def test_chunk_group_rounds_the_chunks_up():
    assert [image_chunks(pixels, 2) for pixels in (3025, 784, 196, 49)] == [190, 50, 14, 4]
    assert [image_chunks(pixels) for pixels in (3025, 784, 196, 49)] == [190, 49, 13, 4]


@pytest.mark.parametrize("spec", RUNNABLE, ids=lambda spec: spec.name + f"-{spec.vector_lanes}-lanes")
@pytest.mark.parametrize("height, width, batch", [(13, 11, 2), (28, 28, 1), (8, 8, 1)])  # 9 -> 10 chunks, 49 -> 50, 4
@pytest.mark.parametrize("stages, residual, chunk_major", [
    ([stage(32, relu=False)], True, ()),
    ([stage(32, relu=False)], True, ("data", "residual", "output")),
    ([stage(32), stage(16)], False, ("data",)),
    ([stage(160), stage(8)], False, ("output",)),  # long reduction: the NCHW input is packed per pair
])
def test_paired_tiles_compute_what_single_chunks_compute(spec, height, width, batch, stages, residual, chunk_major):
    """The kernel over paired chunks (one more chunk on an odd image, the last one again) against the kernel over
    single chunks on AVX2, bit for bit; chunk-major tensors hold the extra chunk as well."""
    channels = 16 if stages[0].out_channels != 160 else 8
    shape = (batch, channels, height, width)
    arrays = chain_arrays(shape, stages, residual)
    expected, _ = run_scheduled(pointwise_chain_kernel(shape, stages, residual, True, "p"), AVX2, arrays)

    group = 2
    images = {0: "data", **({len(arrays) - 2: "residual"} if residual else {})}
    laid_out = [to_chunk_major(a, group) if images.get(i) in chunk_major else a for i, a in enumerate(arrays[:-1])]
    out_shape = arrays[-1].shape
    output = np.zeros(chunk_major_shape(out_shape, group), "float32") if "output" in chunk_major else arrays[-1]
    kernel = pointwise_chain_kernel(shape, stages, residual, True, "p", chunk_major, chunk_group=group)
    result, description = run_scheduled(kernel, spec, [*laid_out, output])
    assert ", two a tile" in description
    if "output" in chunk_major:
        result = from_chunk_major(result, height, width, group)
    np.testing.assert_array_equal(result, expected)


def test_single_chunks_where_pairs_would_unbalance_the_cores():
    """14x14 at batch 1 on 2 cores: 13 chunks stay 13, in tiles of one."""
    shape, stages = (1, 64, 14, 14), [stage(128, relu=False)]
    arrays = chain_arrays(shape, stages, True)
    _, description = run_scheduled(pointwise_chain_kernel(shape, stages, True, True, "p"), SIXTEEN_LANES, arrays)
    assert "two a tile" not in description


def _rewritten(spec: TargetSpec) -> tuple[CompileContext, list[tuple[int, ...]]]:
    model = build_model("1.0-SqNxt-23")
    ctx = CompileContext(spec)
    mod = run_pipeline(import_to_relax(model, resolve_inputs(model)), ctx, GRAPH_REWRITES)
    shapes = [tuple(int(d) for d in binding.var.ty.shape.values) for block in mod["main"].body.blocks
              for binding in block.bindings if isinstance(binding.var.ty, relax.TensorType)]
    assert not any(func.attrs is not None and "sqnxt.chain_spec" in func.attrs
                   for func in mod.functions.values() if isinstance(func, tirx.PrimFunc))
    return ctx, [shape for shape in shapes if len(shape) == 4 and shape[-1] == PIXEL_CHUNK]


def test_squeezenext_28x28_kernels_get_an_even_number_of_chunks_on_avx512():
    """1.0-SqNxt-23 at batch 1 on a 2-core AVX-512 target: the 28x28 reduce pairs, expands and projection walk 50
    chunks (4 distinct kernels: the first block's on the subsampled input, the others), and their chunk-major
    tensors hold 50; 14x14 keeps 13 (`pairs_pay`), 55x55 has 190 already."""
    ctx, chunk_major = _rewritten(_with_cpu(load_target("x86-avx512"), cores=2))
    assert ctx.notes["pair_pixel_chunks"] == ["4 pixel-chunk kernels given one more chunk, for pairs: 28x28: 4"]
    assert sorted(chunk_major) == sorted([chunk_major_shape((1, 32, 55, 55))] * 6 + [
        chunk_major_shape((1, 64, 28, 28), 2)] * 6 + [chunk_major_shape((1, 128, 14, 14))] * 8)


def test_targets_with_chunks_of_several_vectors_are_left_alone():
    ctx, chunk_major = _rewritten(AVX2)
    assert ctx.notes["pair_pixel_chunks"] == ["a chunk of 16 pixels is several vectors here; module unchanged"]
    assert chunk_major_shape((1, 64, 28, 28)) in chunk_major

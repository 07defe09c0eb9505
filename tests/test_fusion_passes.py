"""Property tests: FuseLowRankConv and FuseBottleneck change which tensors reach memory, never the numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tvm import relax

from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
from sqnxt_compiler.models import build_model
from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from sqnxt_compiler.passes import FuseBottleneck, FuseLowRankConv
from sqnxt_compiler.passes.fuse_low_rank_conv import fills_its_vectors
from sqnxt_compiler.pipeline import PHASES, CompileContext, run_pipeline
from sqnxt_compiler.target import load_target
from sqnxt_compiler.verify import relative_error
from utils import runs_here

FUSION_PHASES = {"fuse_low_rank", "fuse_bottleneck", "pointwise_conv"}
BOUND = 1e-5
SPEC = load_target("host")
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _unit(g: GraphBuilder, x: Tensor, channels: int, kernel, stride=1, pad=(0, 0), groups=1, relu=True,
          bias=False) -> Tensor:
    """Third-party form (conv with bias, BN already folded) or official form (bias-free conv + BatchNorm)."""
    if bias:
        y = g.conv(x, channels, kernel, stride, pad, groups, bias=True)
    else:
        y = g.batch_norm(g.conv(x, channels, kernel, stride, pad, groups))
    return g.relu(y) if relu else y


@st.composite
def blocks(draw):
    """A random SqueezeNext block: sizes, channels, stride, pair order, biases, groups, shortcut kind."""
    groups = draw(st.sampled_from([1, 2]))
    channels = 4 * groups * draw(st.integers(1, 5))
    projection = draw(st.booleans())
    stride = draw(st.sampled_from([1, 2])) if projection else 1
    cin = groups * draw(st.integers(1, 12)) if projection else channels
    return dict(cin=cin, channels=channels, height=draw(st.integers(3, 20)), width=draw(st.integers(3, 20)),
                stride=stride, vertical_first=draw(st.booleans()), bias=draw(st.booleans()), groups=groups,
                projection=projection, seed=draw(st.integers(0, 2**16)))


def block_model(cin, channels, height, width, stride, vertical_first, bias, groups, projection, seed):
    g = GraphBuilder(seed=seed)
    x = Tensor("data", (1, cin, height, width))
    half, quarter = channels // 2, channels // 4
    y = _unit(g, x, half, (1, 1), stride, groups=groups, bias=bias)
    y = _unit(g, y, quarter, (1, 1), bias=bias)
    pair = [((3, 1), (1, 0)), ((1, 3), (0, 1))]
    for kernel, pad in pair if vertical_first else reversed(pair):
        y = _unit(g, y, half, kernel, pad=pad, groups=groups, bias=bias)
    y = _unit(g, y, channels, (1, 1), relu=bias, bias=bias)  # the third-party expand has its own ReLU
    shortcut = _unit(g, x, channels, (1, 1), stride, bias=bias) if projection else x
    return g.finish("block", x, g.relu(g.add(y, shortcut)))


def compile_and_run(model, fused: bool, data: np.ndarray, spec=None) -> tuple[np.ndarray, dict]:
    """Run `model` built for `spec` (default: this host) with or without the fusion phases; returns its output
    and the phases' notes."""
    spec = spec or SPEC
    phases = PHASES if fused else [p for p in PHASES if p.name not in FUSION_PHASES]
    ctx = CompileContext(spec)
    mod = run_pipeline(import_to_relax(model, resolve_inputs(model)), ctx, phases)
    vm = relax.VirtualMachine(tvm.compile(mod, spec.tvm_target(), relax_pipeline=None), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(data)).numpy(), ctx.notes


def _seeded_input(model) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(resolve_inputs(model)[0].shape).astype("float32")


@SETTINGS
@given(blocks())
def test_fused_block_equals_unfused(block):
    model = block_model(**block)
    data = _seeded_input(model)
    fused, notes = compile_and_run(model, True, data)
    unfused, _ = compile_and_run(model, False, data)
    assert relative_error(fused, unfused) <= BOUND
    out_width = -(-block["width"] // block["stride"])
    assert notes["fuse_low_rank"][0].startswith("low_rank: 1 fused") == fills_its_vectors(out_width, SPEC.vector_lanes)
    assert [line.split(" (")[0] for line in notes["fuse_bottleneck"]] == [
        "expand_epilogue: 1 fused", "reduce_chain: 1 fused"]


@pytest.mark.parametrize("height, width", [(1, 5), (2, 2), (2, 9), (4, 7), (9, 16)])
def test_strided_reduce_chain_on_small_images(height, width):
    """The 1x1 stride-2 stage reads a subsampled copy of its input (`subsample_pointwise`), then the pair runs in
    row tiles (fewer pixels than a chunk) or over chunks; images with one output row or column included."""
    model = block_model(cin=8, channels=16, height=height, width=width, stride=2, vertical_first=True, bias=False,
                        groups=1, projection=True, seed=height * width)
    data = _seeded_input(model)
    fused, _ = compile_and_run(model, True, data)
    unfused, _ = compile_and_run(model, False, data)
    assert relative_error(fused, unfused) <= BOUND


@settings(SETTINGS, max_examples=30)
@given(st.integers(1, 24), st.integers(1, 24), st.integers(2, 40), st.integers(1, 40), st.booleans(),
       st.booleans(), st.booleans())
def test_low_rank_pair_alone(cin, mid, height, width, vertical_first, bias, second_relu):
    """A bare pair, odd channel counts and widths included, the second conv with or without ReLU."""
    g = GraphBuilder(seed=cin * mid)
    x = Tensor("data", (1, cin, height, width))
    pair = [((3, 1), (1, 0)), ((1, 3), (0, 1))]
    (k1, p1), (k2, p2) = pair if vertical_first else pair[::-1]
    y = _unit(g, _unit(g, x, mid, k1, pad=p1, bias=bias), mid + 1, k2, pad=p2, relu=second_relu, bias=bias)
    model = g.finish("pair", x, y)
    data = _seeded_input(model)
    fused, notes = compile_and_run(model, True, data)
    unfused, _ = compile_and_run(model, False, data)
    assert relative_error(fused, unfused) <= BOUND
    assert notes["fuse_low_rank"][0].startswith("low_rank: 1 fused") == fills_its_vectors(width, SPEC.vector_lanes)


def test_low_rank_pairs_fuse_where_their_rows_fill_half_their_vectors():
    """7x7 fills 7 of 16 lanes (AVX-512): two convs; 7 of 8 (AVX2): fused; exactly half: two convs; no target: fused."""
    assert not fills_its_vectors(7, 16) and fills_its_vectors(9, 16) and fills_its_vectors(7, 8)
    assert not fills_its_vectors(8, 16) and not fills_its_vectors(4, 8) and fills_its_vectors(3, 4)
    assert fills_its_vectors(1, None)
    mod = _folded(build_model("1.0-SqNxt-23"))
    fused = {lanes: FuseLowRankConv(vector_lanes=lanes)(mod).script(show_meta=False).count("fused_low_rank")
             for lanes in (8, 16)}
    assert fused[8] > fused[16] > 0


def _folded(model) -> tvm.IRModule:
    return run_pipeline(import_to_relax(model, resolve_inputs(model)), CompileContext(SPEC),
                        [phase for phase in PHASES if phase.name == "fold_batchnorm"])


@pytest.mark.parametrize("height, width, stride, chunked", [(55, 55, 1, True), (8, 16, 1, True), (7, 7, 1, False),
                                                            (9, 14, 1, False), (28, 28, 2, True),
                                                            (14, 14, 2, False)])
@pytest.mark.parametrize("bias", [True, False])
def test_lone_pointwise_conv_over_chunks(height, width, stride, chunked, bias):
    """A 1x1 conv left alone by the bottleneck fusions runs over pixel chunks when the image has at least
    MIN_CHUNKS of them (a strided one: on its subsampled image); either way it computes what the unfused graph does."""
    g = GraphBuilder(seed=height * width)
    x = Tensor("data", (1, 24, height, width))
    model = g.finish("lone", x, _unit(g, x, 40, (1, 1), stride, bias=bias))
    data = _seeded_input(model)
    fused, notes = compile_and_run(model, True, data)
    unfused, _ = compile_and_run(model, False, data)
    assert relative_error(fused, unfused) <= BOUND
    assert notes["pointwise_conv"][0].startswith("pointwise: 1 fused") == chunked


@pytest.mark.parametrize("target_name, shape, out_channels, chunked", [
    ("x86-avx2", (1, 256, 7, 7), 640, True), ("x86-avx512", (1, 256, 7, 7), 640, False),  # weights dominate
    ("x86-avx2", (8, 32, 7, 7), 48, True), ("x86-avx2", (2, 32, 7, 7), 48, False),  # a batch's chunks together
    ("x86-avx512", (8, 32, 7, 7), 48, False)])
def test_small_image_pointwise_conv_over_chunks_with_16_registers_only(target_name, shape, out_channels, chunked):
    """A 1x1 on 7x7 images runs over pixel chunks with 16 vector registers (AVX2) when its weights outgrow half of L2
    (256 -> 640: 655 KB, like MobileNetV2's 7x7 1x1s; the cores then split its output channels) or when the batch's
    images have MIN_CHUNKS chunks together (8 x 49 pixels; 2 x 49 have not); with 32 (AVX-512) the generic conv
    schedules take it either way. Either way it computes what the unfused graph does (run where this CPU has the
    target's instructions)."""
    spec = load_target(target_name)
    g = GraphBuilder(seed=shape[0] * shape[1])
    x = Tensor("data", shape)
    model = g.finish("small_images", x, _unit(g, x, out_channels, (1, 1), bias=True))
    ctx = CompileContext(spec)
    run_pipeline(import_to_relax(model, resolve_inputs(model)), ctx, PHASES)
    assert ctx.notes["pointwise_conv"][0].startswith("pointwise: 1 fused") == chunked
    if runs_here(target_name):
        data = _seeded_input(model)
        fused, _ = compile_and_run(model, True, data, spec)
        unfused, _ = compile_and_run(model, False, data, spec)
        assert relative_error(fused, unfused) <= BOUND


@pytest.mark.parametrize("target_name, fused", [("x86-avx2", True), ("x86-avx512", False)])
def test_weight_bound_expand_epilogue_fused_with_16_registers_only(target_name, fused):
    """A 1x1 + residual add on a 7x7 image whose weights outgrow half of L2 (640 -> 256: 655 KB, like MobileNetV2's
    7x7 960 -> 160 + residual) is fused into an expand epilogue with 16 vector registers (AVX2); with 32 (AVX-512)
    the generic conv takes it, the add as its epilogue. Either way it computes what the unfused graph does (run
    where this CPU has the target's instructions)."""
    spec = load_target(target_name)
    g = GraphBuilder(seed=11)
    x = Tensor("data", (1, 256, 7, 7))
    expand = _unit(g, _unit(g, x, 640, (1, 1), bias=True), 256, (1, 1), bias=True, relu=False)
    model = g.finish("weight_bound_residual", x, g.add(expand, x))
    ctx = CompileContext(spec)
    run_pipeline(import_to_relax(model, resolve_inputs(model)), ctx, PHASES)
    assert any("expand_epilogue" in line for line in ctx.notes.get("fuse_bottleneck", [])) == fused
    if runs_here(target_name):
        data = _seeded_input(model)
        result, _ = compile_and_run(model, True, data, spec)
        unfused, _ = compile_and_run(model, False, data, spec)
        assert relative_error(result, unfused) <= BOUND


@pytest.mark.parametrize("name", ["alexnet", "squeezenet1.0"])
def test_nothing_to_fuse_leaves_module_unchanged(name):
    mod = _folded(build_model(name, resolution=64))
    assert FuseLowRankConv()(mod).same_as(mod)
    assert FuseBottleneck()(mod).same_as(mod)


def test_shared_intermediate_is_not_fused():
    """When the first conv's output has another reader it must be written anyway: no fusion."""
    g = GraphBuilder(seed=3)
    x = Tensor("data", (1, 8, 12, 12))
    first = _unit(g, x, 8, (3, 1), pad=(1, 0))
    second = _unit(g, first, 8, (1, 3), pad=(0, 1))
    model = g.finish("shared", x, g.add(first, second))
    mod = _folded(model)
    assert FuseLowRankConv()(mod).same_as(mod)


def test_fused_kernel_is_called_once_per_pair():
    mod = FuseLowRankConv()(_folded(build_model("1.0-SqNxt-23", resolution=64)))
    text = mod.script(show_meta=False)
    assert len(re.findall(r"R\.call_tir\(cls\.fused_low_rank\d*,", text)) == 21
    assert text.count("R.nn.conv2d(") == 21 * 3 + 4 + 2  # reduce1, reduce2, expand; projections; stem, tail


@pytest.mark.parametrize("vertical_first", [True, False])
@pytest.mark.parametrize("pattern", ["low_rank", "reduce_chain"])
def test_intermediates_live_only_as_row_tiles(pattern, vertical_first):
    """After scheduling and TIR's buffer compaction, no buffer inside a fused kernel spans the full height."""
    from tvm import s_tir

    from sqnxt_compiler.kernels.conv_chain import ChainStage, conv_chain_kernel
    from sqnxt_compiler.schedules.fused_conv_chain import schedule_conv_chain

    def stage(out, kernel, pad, stride=1):
        return ChainStage(out, kernel, (stride, stride), pad, 1, True, True)

    # a 32-channel intermediate at 55 (or 28) rows x 64 columns is larger than one tile's budget
    if pattern == "low_rank":
        pair = [stage(32, (3, 1), (1, 0, 1, 0)), stage(32, (1, 3), (0, 1, 0, 1))]
        stages = pair if vertical_first else pair[::-1]
    else:
        stages = [stage(64, (1, 1), (0, 0, 0, 0), 2 if vertical_first else 1), stage(8, (1, 1), (0, 0, 0, 0))]
    func = conv_chain_kernel((1, 8, 55, 55), stages, residual=False, final_relu=False, pattern=pattern)
    sch = s_tir.Schedule(func)
    schedule_conv_chain(sch, SPEC)
    lowered = tvm.transform.Sequential([
        s_tir.transform.LowerInitBlock(), s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir.transform.ConvertBlocksToOpaque(), s_tir.transform.CompactBufferAllocation()])(sch.mod)
    shapes = re.findall(r"sblock_alloc_buffer\(\((\d+), (\d+), (\d+), (\d+)\)", lowered.script())
    full_rows = 28 if pattern == "reduce_chain" and vertical_first else 55
    assert shapes and all(int(rows) < full_rows for _, _, rows, _ in shapes), shapes


def _chain_stage(out, kernel=(1, 1), stride=1, groups=1, bias=True, relu=True):
    from sqnxt_compiler.kernels.conv_chain import ChainStage

    pad = tuple(k // 2 for k in kernel) * 2
    return ChainStage(out, kernel, (stride, stride), (pad[0], pad[1], pad[2], pad[3]), groups, bias, relu)


@pytest.mark.parametrize("data_shape, stages, residual", [
    ((1, 16, 55, 55), [_chain_stage(32, relu=False)], True),  # 3025 pixels: the last chunk overlaps
    ((1, 64, 28, 28), [_chain_stage(32), _chain_stage(16)], False),  # 784 = 49 whole chunks
    ((2, 32, 7, 7), [_chain_stage(64, groups=2, bias=False), _chain_stage(16, relu=False)], True),  # packed
    ((1, 128, 15, 15), [_chain_stage(24, relu=False)], True),  # 225 pixels, 128 channels: packed
    ((1, 8, 4, 4), [_chain_stage(8)], False),  # exactly one chunk
])
# None: the target's default tile; 16: AVX-512's widest; 1: the tile's channel loop has extent 1
@pytest.mark.parametrize("channels_per_tile", [None, 16, 1])
def test_pointwise_chain_equals_row_kernel(data_shape, stages, residual, channels_per_tile, monkeypatch):
    """The pixel-chunk kernel computes what the row kernel computes, scheduled by default and as sampled
    by its design space; its loads and stores stay contiguous vectors (no gathers), which is its point."""
    from tvm import s_tir
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from sqnxt_compiler.kernels.conv_chain import conv_chain_kernel
    from sqnxt_compiler.kernels.contract import PACK_BLOCK
    from sqnxt_compiler.kernels.pixel_chunks import is_pointwise_chain, packs_input, pointwise_chain_kernel
    from sqnxt_compiler.schedules import fused_pixel_chunks
    from sqnxt_compiler.schedules._common import largest_divisor_at_most
    from sqnxt_compiler.schedules.fused_pixel_chunks import pixel_chunks_design_space, schedule_pixel_chunks

    if channels_per_tile is not None:
        monkeypatch.setattr(fused_pixel_chunks, "_default_channel_tile",
                            lambda out, _in, _spec, _chunks: largest_divisor_at_most(out, channels_per_tile))
    assert is_pointwise_chain(data_shape, stages)
    rows = conv_chain_kernel(data_shape, stages, residual, final_relu=True, pattern="p")
    chunks = pointwise_chain_kernel(data_shape, stages, residual, final_relu=True, pattern="p")
    assert (PACK_BLOCK in chunks.script()) == packs_input(data_shape[1], data_shape[2] * data_shape[3])
    rng = np.random.default_rng(0)
    args = [rng.standard_normal([int(d) for d in a.shape]).astype("float32") for a in ArgInfo.from_prim_func(rows)]
    target = SPEC.tvm_target()

    def run(func):
        tensors = [tvm.runtime.tensor(a) for a in args[:-1]] + [tvm.runtime.tensor(np.full_like(args[-1], np.nan))]
        library = tvm.compile(tvm.IRModule({"main": func}), target)
        library(*tensors)
        return tensors[-1].numpy(), library

    expected, _ = run(rows)
    sch = s_tir.Schedule(chunks)
    schedule_pixel_chunks(sch, SPEC)
    actual, library = run(sch.mod["main"])
    assert np.abs(actual - expected).max() <= 1e-5 * np.abs(expected).max()  # NaN (a pixel never written) fails
    assembly = library.mod.inspect_source("asm")
    assert "main" in assembly and "gather" not in assembly
    with target:
        spaces = pixel_chunks_design_space(s_tir.Schedule(chunks, seed=5 + (channels_per_tile or 0)))
    for space in spaces:
        assert np.abs(run(space.mod["main"])[0] - expected).max() <= 1e-5 * np.abs(expected).max()


def test_only_pointwise_stride_1_chains_over_a_chunk_use_pixel_chunks():
    from sqnxt_compiler.kernels.pixel_chunks import is_pointwise_chain

    assert not is_pointwise_chain((1, 8, 55, 55), [_chain_stage(16, stride=2), _chain_stage(8)])
    assert not is_pointwise_chain((1, 8, 55, 55), [_chain_stage(16, kernel=(3, 1))])
    assert not is_pointwise_chain((1, 8, 3, 5), [_chain_stage(16)])  # 15 pixels: less than one chunk


@pytest.mark.parametrize("relu_reads_the_sum", [False, True])
def test_residual_add_without_relu_is_an_expand_epilogue(relu_reads_the_sum):
    """MobileNetV2's linear bottleneck ends in conv1x1 + shortcut with no ReLU after the add: the add is the
    1x1's epilogue too (and with a ReLU after it, the ReLU's binding takes both along, as before)."""
    g = GraphBuilder(seed=7)
    x = Tensor("data", (1, 16, 14, 14))
    y = _unit(g, _unit(g, x, 48, (1, 1)), 16, (1, 1), relu=False)
    out = g.add(y, x)
    model = g.finish("linear_bottleneck", x, g.relu(out) if relu_reads_the_sum else out)
    data = _seeded_input(model)
    fused, notes = compile_and_run(model, True, data)
    unfused, _ = compile_and_run(model, False, data)
    assert relative_error(fused, unfused) <= BOUND
    kind = "1x1+identity+relu" if relu_reads_the_sum else "1x1+identity"
    assert notes["fuse_bottleneck"][0].startswith(f"expand_epilogue: 1 fused ({kind}: 1)")


@pytest.mark.parametrize("target_name", ["x86-avx2", "x86-avx512"])
@pytest.mark.parametrize("out_channels, chunk_group, split", [(1000, 1, True), (1000, 2, True), (64, 1, False)])
def test_pixel_chunks_read_dominant_weights_once_per_core(target_name, out_channels, chunk_group, split):
    """SqueezeNet 1.1's classifier conv (512->1000 at 13x13: 2 MB of weights for a 346 KB input) splits its
    output channels between the cores, its register tiles over 1 chunk or, with 12 chunks for pairs, 4 on
    AVX-512, its reduction in blocks, its weights laid out per tile at compile time; a 1x1 with small weights
    keeps its chunk-outer order. Both compute what the unscheduled kernel does (run where this CPU has the target's
    instructions)."""
    from schedule_helpers import check_schedule
    from tvm import s_tir

    from sqnxt_compiler.kernels import ChainStage, pointwise_chain_kernel
    from sqnxt_compiler.schedules.fused_pixel_chunks import schedule_pixel_chunks

    spec = load_target(target_name)
    func = pointwise_chain_kernel([1, 512, 13, 13], [ChainStage(out_channels, (1, 1), (1, 1), (0, 0, 0, 0), 1, True,
                                                                True)], False, False, "pointwise",
                                  chunk_group=chunk_group)
    sch = s_tir.Schedule(func)
    description = schedule_pixel_chunks(sch, spec)
    assert ("the cores on output channels" in description) == split
    if split:  # its NCHW input copied chunk-major once, ahead of the cores' channel tiles; its weights per tile
        chunks = 11 if chunk_group == 1 else 12
        script = sch.mod["main"].script()
        assert f"packed = T.sblock_alloc_buffer((1, {chunks}, 512, 16))" in script
        tile = int(description.split("register tiles of ")[1].split()[0])
        assert f"w0_global = T.sblock_alloc_buffer(({1000 // tile}, 1, 1, 512, {tile}))" in script
        assert '"meta_schedule.layout_rewrite_preproc": True' in script  # packed at compile time
    if runs_here(target_name):
        check_schedule(func, sch.mod["main"], spec.tvm_target())


@pytest.mark.parametrize("seed", [1, 4])
def test_split_channel_space_matches_the_unscheduled_kernel(seed):
    """The classifier's design spaces: one core, chunks in parallel, and the cores on sampled channel tiles."""
    from schedule_helpers import check_schedule
    from tvm import s_tir

    from sqnxt_compiler.kernels import ChainStage, pointwise_chain_kernel
    from sqnxt_compiler.schedules.fused_pixel_chunks import pixel_chunks_design_space

    spec = load_target("x86-avx2")  # its code runs on every machine that runs these tests
    func = pointwise_chain_kernel([1, 512, 13, 13], [ChainStage(1000, (1, 1), (1, 1), (0, 0, 0, 0), 1, True, True)],
                                  False, False, "pointwise", chunk_group=2)
    with spec.tvm_target(), spec.scope():
        spaces = pixel_chunks_design_space(s_tir.Schedule(func, seed=seed))
    assert len(spaces) == 3
    assert any(inst.kind.name == "SamplePerfectTile" for inst in spaces[-1].trace.insts)
    check_schedule(func, spaces[-1].mod["main"], spec.tvm_target())


@pytest.mark.parametrize("target_name, chunks, tile", [("x86-avx512", 12, (5, 4)), ("x86-avx512", 11, (20, 1)),
                                                       ("x86-avx2", 11, (5, 1)), ("x86-avx2", 12, (5, 1)),
                                                       ("arm", 11, (5, 1))])
def test_split_channel_tiles_load_least_per_multiply_add(target_name, chunks, tile):
    """(channels, chunks) of the classifier's register tile: 20 accumulators of 32 registers, 10 of 16; 4 chunks
    of one vector each on AVX-512 beat 2 or 1 (more multiply-adds per vector loaded; 11 chunks allow only 1),
    one chunk of two vectors on AVX2 beats two."""
    from sqnxt_compiler.schedules.fused_pixel_chunks import _split_tile

    assert _split_tile(1000, chunks, load_target(target_name)) == tile


@pytest.mark.parametrize("target_name, packed", [("x86-avx2", True), ("x86-avx512", True), ("arm", False)])
def test_one_stage_pixel_chunks_read_weights_per_tile(target_name, packed):
    """A one-stage pixel-chunk kernel's default schedule reads its weights laid out [out / tile, in, tile], packed at
    compile time, on x86 (NEON reads them in place); it computes what the unscheduled kernel does (run where this CPU
    has the target's instructions)."""
    from schedule_helpers import check_schedule
    from tvm import s_tir

    from sqnxt_compiler.kernels import ChainStage, pointwise_chain_kernel
    from sqnxt_compiler.schedules.fused_pixel_chunks import _default_channel_tile, schedule_pixel_chunks

    spec = load_target(target_name)
    func = pointwise_chain_kernel([1, 96, 14, 14], [ChainStage(48, (1, 1), (1, 1), (0, 0, 0, 0), 1, True, True)],
                                  False, False, "pointwise")
    sch = s_tir.Schedule(func)
    schedule_pixel_chunks(sch, spec)
    tile = _default_channel_tile(48, 96, spec, 1)
    script = sch.mod["main"].script()
    assert (f"w0_global = T.sblock_alloc_buffer(({48 // tile}, 1, 1, 96, {tile}))" in script) == packed
    if runs_here(target_name):
        check_schedule(func, sch.mod["main"], spec.tvm_target())


@pytest.mark.parametrize("target_name, out_channels, tile", [
    ("x86-avx2", 144, 6), ("x86-avx2", 96, 6), ("x86-avx2", 64, 4), ("x86-avx2", 160, 5),  # 12 accumulators of 16
    ("x86-avx512", 144, 8), ("x86-avx512", 64, 8),  # a pair of one-vector chunks: 16 of 32
    ("arm", 144, 4), ("arm", 64, 4)])  # four vectors a chunk: 16 of 32
def test_pixel_chunk_tiles_sized_for_the_register_file(target_name, out_channels, tile):
    """Output channels of a default pixel-chunk register tile over a long reduction: on 16 registers the tile takes
    12 accumulators (a chunk's two vectors x 6 channels, where 6 divide them), on 32 registers half the file."""
    from sqnxt_compiler.schedules.fused_pixel_chunks import _default_channel_tile

    chunks = 2 if target_name == "x86-avx512" else 1
    assert _default_channel_tile(out_channels, 576, load_target(target_name), chunks) == tile

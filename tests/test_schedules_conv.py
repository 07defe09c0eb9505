"""The conv schedule families (output-stationary, weight-stationary, the per-layer choice) on random
shapes: 1x1, 3x1, 1x3, kxk, strided, padded, grouped, residual epilogue; defaults and design spaces."""

import pytest
import tvm

from schedule_helpers import check_schedule, conv_graph, fused_primfuncs, schedule_with
from sqnxt_compiler.schedules import conv2d_output_stationary, conv2d_weight_stationary, dataflow_choice, find_rule
from sqnxt_compiler.schedules._common import find_conv, machine_knobs
from sqnxt_compiler.target import load_target

SHAPES = {
    "1x1": dict(shape=(1, 16, 13, 13), out_channels=32, kernel=(1, 1)),
    "1x1-stride2-batch2": dict(shape=(2, 24, 14, 14), out_channels=48, kernel=(1, 1), stride=(2, 2)),
    "3x1-pad": dict(shape=(1, 8, 11, 9), out_channels=16, kernel=(3, 1), padding=(1, 0)),
    "1x3-pad-residual": dict(shape=(1, 16, 10, 12), out_channels=16, kernel=(1, 3), padding=(0, 1), residual=True),
    "7x7-stride2-stem": dict(shape=(1, 3, 31, 31), out_channels=64, kernel=(7, 7), stride=(2, 2)),
    "3x3-pad-odd-channels": dict(shape=(1, 5, 9, 9), out_channels=24, kernel=(3, 3), padding=(1, 1)),
    "grouped-3x1": dict(shape=(1, 16, 8, 8), out_channels=32, kernel=(3, 1), padding=(1, 0), groups=2),
    # ResNet's last stage in small: 2.4 MB of weights for a 50 KB input, the cores on channel tiles
    "3x3-weights-bound-residual": dict(shape=(1, 256, 7, 7), out_channels=256, kernel=(3, 3), padding=(1, 1),
                                       residual=True),
}


@pytest.fixture(scope="module")
def host():
    return load_target("host")


def conv_func(name, target):
    funcs = fused_primfuncs(conv_graph(**SHAPES[name]), target)
    convs = [f for f in funcs.values() if find_conv(f) is not None]
    assert len(convs) == 1, list(funcs)
    return convs[0]


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("family", [conv2d_output_stationary, conv2d_weight_stationary, dataflow_choice])
def test_default_schedule_matches_unscheduled(name, family, host):
    func = conv_func(name, host.tvm_target())
    check_schedule(func, schedule_with(func, family.apply, host), host.tvm_target())


@pytest.mark.parametrize("name", ["1x3-pad-residual", "7x7-stride2-stem", "1x1-stride2-batch2"])
def test_design_spaces_sample_and_match(name, host):
    target = host.tvm_target()
    func = conv_func(name, target)
    with target:
        spaces = dataflow_choice.design_space(tvm.s_tir.Schedule(func))
    assert len(spaces) == 4  # OS channel-outer, OS column-outer, WS on row blocks or channel tiles
    for space in spaces:
        samples = [inst for inst in space.trace.insts if inst.kind.name.startswith("Sample")]
        assert samples, "the design space samples nothing"
        check_schedule(func, space.mod["main"], target)


def test_design_space_works_as_schedule_fn(host):
    """The tuner's space generator (rule.design_space in a ScheduleFn) yields one space per loop order, with
    vectors as wide as the target's: meta_schedule generates spaces outside any target scope, and the
    spaces once fell back to 4-lane vectors on this AVX-512 host."""
    from tvm.s_tir import meta_schedule as ms

    from sqnxt_compiler.schedules._common import machine_knobs
    from sqnxt_compiler.tuning.tasks import TuningTask
    from sqnxt_compiler.tuning.tuner import _design_space

    target = host.tvm_target()
    func = conv_func("3x1-pad", target)
    task = TuningTask("conv", tvm.IRModule({"main": func}), occurrences=1, macs=find_conv(func).macs)
    generator, space_name = _design_space(task, host, "ours")
    assert space_name == find_rule(func, host).name
    context = ms.TuneContext(mod=task.mod, target=target, space_generator=generator, task_name="conv")
    spaces = context.generate_design_space()
    assert len(spaces) == 4
    lanes = machine_knobs(host).lanes
    for space in spaces:
        splits = [inst for inst in space.trace.insts if inst.kind.name == "Split"]
        assert any(int(factor) == lanes for inst in splits for factor in inst.inputs[1:] if factor is not None
                   and isinstance(factor, tvm.tirx.IntImm)), f"no {lanes}-lane split in {space.trace}"


def test_design_space_without_a_target_refuses_to_guess(host):
    """Outside any target scope a design space cannot know the vector width: it raises rather than fall
    back to 128-bit vectors (the fallback that once made every tuning space SSE-wide on AVX-512)."""
    func = conv_func("3x1-pad", host.tvm_target())
    with pytest.raises(ValueError, match="needs its target"):
        dataflow_choice.design_space(tvm.s_tir.Schedule(func))


def test_rule_explains_its_choice(host):
    func = conv_func("7x7-stride2-stem", host.tvm_target())
    sch = tvm.s_tir.Schedule(func)
    description = dataflow_choice.apply(sch, host)
    assert ("OS chosen" in description or "WS chosen" in description) and "7x7/2 3->64" in description


@pytest.mark.parametrize("target_name", ["x86-avx2", "x86-avx512", "arm"])
def test_weights_bound_convs_put_the_cores_on_channel_tiles(target_name):
    """Where the weights outweigh the input and half of L2, each core streams its share of them once (WS over
    the whole image, channel tiles in parallel, a whole number of tiles per core); SqueezeNext's generic convs
    (at most 128 KB of weights) keep the per-layer choice."""
    spec = load_target(target_name)
    func = conv_func("3x3-weights-bound-residual", spec.tvm_target())
    description = dataflow_choice.apply(tvm.s_tir.Schedule(func), spec)
    assert description.startswith("WS chosen") and "7 rows/task" in description
    assert description.endswith("parallel channel tiles")
    knobs = conv2d_weight_stationary.default_knobs(find_conv(func), machine_knobs(spec))
    assert (256 // (knobs.f_vectors * knobs.lanes)) % machine_knobs(spec).cores == 0
    small = find_conv(conv_func("1x3-pad-residual", spec.tvm_target()))
    assert not conv2d_weight_stationary.weights_bound(small, machine_knobs(spec))


def test_register_tile_follows_the_target():
    """AVX-512 gets 16-lane vectors, NEON 4-lane; the tile never exceeds the register budget."""
    from sqnxt_compiler.schedules._common import machine_knobs, register_tile

    shape = find_conv(conv_func("7x7-stride2-stem", load_target("host").tvm_target()))
    for target_name, lanes in (("arm", 4), ("host", machine_knobs(load_target("host")).lanes)):
        machine = machine_knobs(load_target(target_name))
        got_lanes, vectors, columns = register_tile(machine, shape.out_channels, shape.out_width)
        assert got_lanes == lanes and vectors * columns <= machine.accumulator_budget


@pytest.mark.parametrize("target_name, out_channels, width, tile", [
    ("x86-avx512", 512, 7, (16, 2, 7)),   # 4 x 4 would leave a 3-column tail
    ("arm", 128, 7, (4, 2, 7)),
    ("x86-avx512", 512, 28, (16, 4, 4)),  # no tail: the best FMAs per load
    ("x86-avx2", 512, 7, (8, 4, 2)),      # 16 registers: exact tiles (7 x 1) load too much per FMA
])
def test_register_tile_weighs_the_tail(target_name, out_channels, width, tile):
    """A predicated tail tile costs 1.5 whole ones: on 32 registers a 7-wide image takes a 7-column tile."""
    from sqnxt_compiler.schedules._common import register_tile

    assert register_tile(machine_knobs(load_target(target_name)), out_channels, width) == tile


def test_weights_are_packed_at_compile_time(host):
    """The packing block leaves the kernel: it becomes a separate PrimFunc folded on the constant weights,
    which the kernel reads as [F / lanes, C, KH, KW, lanes]: one sequential stream per channel vector."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from sqnxt_compiler.pipeline import LOWERING, SCHEDULING, CompileContext, run_pipeline

    phases = LOWERING + SCHEDULING
    ctx = CompileContext(host)
    mod = run_pipeline(conv_graph(**SHAPES["3x1-pad"])(), ctx, phases)
    text = mod.script()
    assert "layout_rewrite_preproc" not in text
    assert "_prepacked" in mod["main"].script()
    assert any("conv2d-dataflow-choice" in line for line in ctx.notes["schedule"])
    kernel = next(func for gvar, func in mod.functions.items() if gvar.name_hint.endswith("_prepacked"))
    lanes = min(16, machine_knobs(host).lanes)  # 16 output channels
    packed = [[int(d) for d in arg.shape] for arg in ArgInfo.from_prim_func(kernel)]
    assert [16 // lanes, 8, 3, 1, lanes] in packed, packed

"""Dense and the pooling/elementwise fallback on random shapes, vs the unscheduled PrimFunc."""

import numpy as np
import pytest
import tvm
from tvm import relax

from schedule_helpers import check_schedule, fused_primfuncs, schedule_with
from sqnxt_compiler.schedules import dense, find_rule, pooling
from sqnxt_compiler.target import load_target


def graph(make, shape):
    def build():
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType(shape, "float32"))
        with bb.function("main", [x]):
            with bb.dataflow():
                out = bb.emit_output(make(bb, x))
            bb.emit_func_output(out)
        return bb.get()

    return build


def weights(*shape):
    return relax.const(np.random.default_rng(1).standard_normal(shape).astype("float32"))


CASES = {
    "dense-1000": (lambda bb, x: bb.emit(relax.op.matmul(x, weights(128, 1000))), (1, 128), "dense"),
    "dense-batch3-odd": (lambda bb, x: bb.emit(relax.op.matmul(x, weights(40, 72))), (3, 40), "dense"),
    # 8 rows x one vector of 8 in the register tile (1000 = 8 x 125)
    "dense-batch8-1000": (lambda bb, x: bb.emit(relax.op.matmul(x, weights(64, 1000))), (8, 64), "dense"),
    "maxpool-ceil": (lambda bb, x: bb.emit(relax.op.nn.max_pool2d(x, (3, 3), (2, 2), ceil_mode=True)),
                     (1, 32, 27, 27), "pooling-elementwise"),
    # the last output row and column read the ceil-mode padding (the 1.0-SqNxt-23v5 case): rows apart
    "maxpool-ceil-padding-read": (lambda bb, x: bb.emit(relax.op.nn.max_pool2d(x, (3, 3), (2, 2), ceil_mode=True)),
                                  (1, 16, 28, 28), "pooling-elementwise"),
    "maxpool-pad-first-row": (lambda bb, x: bb.emit(relax.op.nn.max_pool2d(x, (3, 3), (2, 2), padding=(1, 1))),
                              (1, 16, 21, 21), "pooling-elementwise"),
    "avgpool": (lambda bb, x: bb.emit(relax.op.nn.avg_pool2d(x, (3, 3), (1, 1), padding=(1, 1))),
                (2, 8, 20, 20), "pooling-elementwise"),
    "mean": (lambda bb, x: bb.emit(relax.op.mean(x, axis=[2, 3], keepdims=True)), (2, 64, 33, 33),
             "pooling-elementwise"),
    "relu-add": (lambda bb, x: bb.emit(relax.op.nn.relu(bb.emit(relax.op.add(x, x)))), (1, 32, 40, 40),
                 "pooling-elementwise"),
}


@pytest.mark.parametrize("name", CASES)
def test_rule_applies_and_matches(name):
    spec = load_target("host")
    make, shape, rule_name = CASES[name]
    funcs = fused_primfuncs(graph(make, shape), spec.tvm_target())
    assert len(funcs) == 1, list(funcs)
    func = next(iter(funcs.values()))
    rule = find_rule(func, spec)
    assert rule is not None and rule.name == rule_name
    check_schedule(func, schedule_with(func, rule.apply, spec), spec.tvm_target())


def test_dense_design_space_samples():
    spec = load_target("host")
    target = spec.tvm_target()
    func = next(iter(fused_primfuncs(graph(*CASES["dense-1000"][:2]), target).values()))
    with target:
        space = dense.design_space(tvm.s_tir.Schedule(func))
    assert any(inst.kind.name == "SamplePerfectTile" for inst in space.trace.insts)
    check_schedule(func, space.mod["main"], target)


def test_fallback_leaves_tiny_kernels_alone():
    spec = load_target("host")
    func = next(iter(fused_primfuncs(graph(lambda bb, x: bb.emit(relax.op.nn.relu(x)), (1, 8)),
                                     spec.tvm_target()).values()))
    assert not pooling.applies(func, spec)

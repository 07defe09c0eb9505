"""The fused kernels' design spaces: every sampled row tile / pixel chunk / channel tile computes the same result."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import s_tir
from tvm.s_tir.meta_schedule.arg_info import ArgInfo

from sqnxt_compiler.models import build_model
from sqnxt_compiler.schedules import find_rule
from sqnxt_compiler.target import load_target
from sqnxt_compiler.tuning.tasks import extract_tuning_tasks


def _run(mod: tvm.IRModule, target, args: list[np.ndarray]) -> np.ndarray:
    tensors = [tvm.runtime.tensor(a) for a in args[:-1]] + [tvm.runtime.tensor(np.zeros_like(args[-1]))]
    tvm.compile(mod, target)(*tensors)
    return tensors[-1].numpy()


@pytest.fixture(scope="module")
def fused_tasks():
    spec = load_target("host")
    # one kernel of each fused family, grouped (G-SqNxt) convs included; the digits model's 4x4 and 2x2 stages
    # have fewer pixels than a chunk, so their 1x1 chains run in row tiles (`fused_bottleneck`)
    tasks = [task for name in ("1.0-G-SqNxt-23", "1.0-SqNxt-23-digits")
             for task in extract_tuning_tasks(build_model(name), spec)]
    by_rule = {}
    for task in tasks:
        rule = find_rule(task.mod["main"], spec)
        if rule is not None and rule.name.startswith("fused") and rule.design_space is not None:
            by_rule.setdefault(rule.name, (task, rule))
    return spec, list(by_rule.values())


def test_sampled_fused_schedules_match_the_unscheduled_kernel(fused_tasks) -> None:
    spec, tasks = fused_tasks
    assert {rule.name for _, rule in tasks} == {"fused_low_rank", "fused_bottleneck", "fused_pixel_chunks"}
    target = spec.tvm_target()
    for task, rule in tasks:
        rng = np.random.default_rng(0)
        args = [rng.standard_normal([int(d) for d in a.shape]).astype("float32")
                for a in ArgInfo.from_prim_func(task.mod["main"])]
        expected = _run(task.mod, target, args)
        for seed in (1, 7):
            with target:
                spaces = rule.design_space(s_tir.Schedule(task.mod, seed=seed))
            assert len(spaces) == 2  # one core / in parallel
            for space in spaces:
                assert any(inst.kind.name == "SamplePerfectTile" for inst in space.trace.insts)
                actual = _run(space.mod, target, args)
                error = np.abs(actual - expected).max() / np.abs(expected).max()
                assert error <= 1e-5, f"{task.name} seed {seed}: {error:.2e}"

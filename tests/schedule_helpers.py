"""Helpers for the schedule tests: one fused conv/dense/pool PrimFunc from a tiny Relax graph, built
unscheduled (the reference) and scheduled, run on the same random inputs."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, s_tir


def fused_primfuncs(build, target) -> dict[str, "tvm.tirx.PrimFunc"]:
    """Lower a Relax graph made by `build(bb, x)` the way our pipeline does (LegalizeOps, FuseOps, FuseTIR)."""
    mod = build()
    with target:
        mod = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                        relax.transform.FuseOps(), relax.transform.FuseTIR()])(mod)
    return {gv.name_hint: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}


def conv_graph(shape, out_channels, kernel, stride=(1, 1), padding=(0, 0), groups=1, residual=False, seed=0):
    rng = np.random.default_rng(seed)
    n, c, h, w = shape

    def build():
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType(shape, "float32"))
        with bb.function("main", [x]):
            with bb.dataflow():
                weight = rng.standard_normal((out_channels, c // groups, *kernel)).astype("float32")
                y = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), strides=stride, padding=padding,
                                               groups=groups))
                y = bb.emit(relax.op.add(y, relax.const(rng.standard_normal((1, out_channels, 1, 1))
                                                        .astype("float32"))))
                if residual:
                    y = bb.emit(relax.op.add(y, y))
                out = bb.emit_output(bb.emit(relax.op.nn.relu(y)))
            bb.emit_func_output(out)
        return bb.get()

    return build


def run_primfunc(func, target, inputs: list[np.ndarray]) -> np.ndarray:
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    device = tvm.cpu()
    args = [tvm.runtime.tensor(a, device) for a in inputs]
    lib["main"](*args)
    return args[-1].numpy()


def random_inputs(func, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in func.params[:-1]] + \
        [np.zeros([int(d) for d in func.params[-1].ty.shape], "float32")]


def check_schedule(func, scheduled, target, rtol: float = 1e-5) -> None:
    inputs = random_inputs(func)
    expected = run_primfunc(func, target, inputs)
    actual = run_primfunc(scheduled, target, [a.copy() for a in inputs])
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def schedule_with(func, apply, *args):
    sch = s_tir.Schedule(func)
    apply(sch, *args)
    return sch.mod["main"]

"""Compile each `sqnxt_accel.*` composite function for the accelerator and call it through the TVM runtime.

For every composite function `PartitionAccel` made, the layer's numbers are read back from its constants
(the same pattern parts), turned into the integer layer by `accel.int8.graph.quantized_layer` (shared with
the ONNX-level executor, so both produce the same integers) and compiled by the accelerator's compiler into
an instruction stream. Each call of the composite in `main` becomes, on the host, a layout change to the
accelerator's NHWC, then

    R.call_dps_packed("sqnxt.accel.run_layer", (x_nhwc_int8, weights_ohwi, bias_int32, program_uint8), out)

then back to NCHW. Weights, bias and program are constants, so the exported library is self-contained and
loads with the stock TVM runtime; the function itself is registered at load time (accel/runtime_functions.py).
Why `call_dps_packed` and not a BYOC codegen: a codegen must produce a runtime module that `export_library`
can serialize, i.e. C++; the simulator is Python.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import DFPattern, is_op, rewrite_call, wildcard
from tvm.relax.expr_functor import PyExprMutator, mutator

from ..accel.machine.config import AccelConfig
from ..accel.int8.graph import QuantizedLayer, quantized_layer
from ..accel.machine.layer import LayerSpec
from ..accel.runtime_functions import RUN_LAYER, encode_program
from ..accel.machine.tiling import Tiling
from ..errors import SqnxtError
from .partition_accel import PREFIX, composite_functions, constant_value, layer_patterns, supported

_TO_NHWC, _TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]   # the accelerator's activations are NHWC, the host's NCHW


def _shape(expr: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape.values)


def layer_of(name: str, func: relax.Function) -> QuantizedLayer:
    """The integer layer a composite function computes."""
    kind = str(func.attrs["Composite"])[len(PREFIX):]
    pattern, parts = next((p, parts) for n, p, parts in layer_patterns() if n == PREFIX + kind)
    values = relax.analysis.get_var2val(func)
    matched = pattern.extract_matched_expr(values[func.body.body], values)
    if matched is None:
        raise SqnxtError(f"internal: composite {name} no longer matches its pattern")
    named = {part: matched[pattern_part] for part, pattern_part in parts.items() if pattern_part in matched}
    if not supported(kind, named):   # PartitionAccel only makes supported composites
        raise SqnxtError(f"internal: composite {name} is not a layer the accelerator supports")
    x_dq, w_dq, out_q = named["input_dq"], named["weight_dq"], named["output_q"]
    scalar = lambda expr: float(constant_value(expr).reshape(-1)[0])  # noqa: E731
    bias = None
    if "bias" in named:
        b_int, (_, b_scale, b_zero) = constant_value(named["bias"]), named["bias_dq"].args
        bias = (b_int.astype(np.float64) - constant_value(b_zero)) * constant_value(b_scale)
    common = dict(weight_scale=constant_value(w_dq.args[1]), input_scale=scalar(x_dq.args[1]), bias=bias,
                  output_scale=scalar(out_q.args[1]), output_zero=0, relu=kind.endswith("_relu"))
    weights = constant_value(named["weight"])
    if kind.startswith("conv2d"):
        a = named["core"].attrs
        return quantized_layer(name, weights, kind="conv", stride=tuple(a.strides), pad=tuple(a.padding),
                               groups=int(a.groups), **common)
    # dense: the weight is (out, in) under permute_dims (Gemm transB=1), else (in, out)
    return quantized_layer(name, weights if "weight_t" in named else weights.T, kind="dense", **common)


def _call_order(main: relax.Function, names: dict) -> list[str]:
    """Names of the composites `main` calls, in the order it calls them."""
    return [b.value.op.name_hint for block in main.body.blocks for b in block.bindings
            if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.GlobalVar)
            and b.value.op.name_hint in names]


@mutator
class _ReplaceCalls(PyExprMutator):
    """Calls of lowered composites -> NHWC layout, `call_dps_packed` to the accelerator, layout back."""

    def __init__(self, mod: tvm.IRModule, lowered: dict[str, tuple[QuantizedLayer, np.ndarray]]):
        super().__init__(mod)
        self.mod_, self.lowered = mod, lowered

    def transform(self) -> tvm.IRModule:
        for gvar, func in self.mod_.functions.items():
            if isinstance(func, relax.Function) and gvar.name_hint not in self.lowered:
                self.builder_.update_func(gvar, self.visit_expr(func))
        return self.builder_.get()

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.GlobalVar) or call.op.name_hint not in self.lowered:
            return call
        layer, program = self.lowered[call.op.name_hint]
        x = call.args[0]
        shape = _shape(x)
        spec = layer.spec(shape)
        if layer.kind == "conv":
            x = self.builder_.emit(relax.op.permute_dims(x, _TO_NHWC))
        else:
            x = self.builder_.emit(relax.op.reshape(x, (shape[0], 1, 1, shape[1])))
        y = self.builder_.emit(relax.call_dps_packed(
            RUN_LAYER, relax.Tuple([x, relax.const(layer.weights), relax.const(layer.bias), relax.const(program)]),
            relax.TensorType(spec.output_shape, "int8")))
        if layer.kind == "conv":
            return relax.op.permute_dims(y, _TO_NCHW)
        return relax.op.reshape(y, (shape[0], spec.cout))


@tvm.transform.module_pass(opt_level=0, name="LowerAccel")
class LowerAccel:
    """Every `sqnxt_accel.*` composite -> an accelerator program called from `main` (see the module docstring).
    `tilings(spec)` gives a layer's tuned tiling or None (then: the default tiling of `dataflow`);
    `report(layer, program)` is called once per layer, in the order `main` calls them."""

    def __init__(self, config: AccelConfig, dataflow: str = "ws", report: Callable | None = None,
                 tilings: Callable[[LayerSpec], Tiling | None] | None = None):
        self.config, self.dataflow, self.report, self.tilings = config, dataflow, report, tilings

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        composites = {gvar.name_hint: func for gvar, func in composite_functions(mod).items()}
        lowered = {}
        for index, name in enumerate(_call_order(mod["main"], composites)):   # layers numbered as the model runs
            func = composites[name]
            layer = layer_of(f"accel{index:03d}_{str(func.attrs['Composite'])[len(PREFIX):]}", func)
            shape = _shape(func.params[0])
            tiling = self.tilings(layer.spec(shape)) if self.tilings is not None else None
            program = layer.program(shape, self.config, self.dataflow, tiling)
            lowered[name] = (layer, encode_program(program))
            if self.report is not None:
                self.report(layer, program)
        mod = _ReplaceCalls(mod, lowered).transform()
        mod["main"] = rewrite_call(*_transpose_pair(), mod["main"])
        return relax.transform.DeadCodeElimination(["main"])(mod)


def _transpose_pair() -> tuple[DFPattern, Callable]:
    """Back-to-back accelerator layers would go NHWC -> NCHW -> NHWC through the host: read the NHWC tensor
    directly (the NCHW one stays where the host reads it, e.g. a merge)."""
    nhwc = wildcard()
    to_nchw = is_op("relax.permute_dims")(nhwc)
    pattern = is_op("relax.permute_dims")(to_nchw)

    def rewrite(expr: relax.Expr, matches: dict) -> relax.Expr:
        inner, outer = matches[to_nchw], matches[pattern]
        axes = lambda call: [int(a) for a in call.attrs.axes] if call.attrs.axes is not None else None  # noqa: E731
        return matches[nhwc] if (axes(inner), axes(outer)) == (_TO_NCHW, _TO_NHWC) else expr

    return pattern, rewrite

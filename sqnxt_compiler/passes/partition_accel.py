"""Group every quantized conv2d / dense of an imported QDQ int8 model into a composite function for the accelerator.

TVM 0.27's Relax ONNX importer turns a QDQ graph (ONNX Runtime's `quantize_static`, see accel/int8/quantize.py)
into plain `R.quantize` / `R.dequantize` around float ops, so the accelerator's layers are Relax patterns:

    quantize(add(conv2d(dequantize(x_int8), dequantize(W_int8)), reshape(dequantize(b_int32))))   [conv]
    quantize(add(matmul(dequantize(x_int8), permute_dims(dequantize(W_int8))), dequantize(b)))     [dense]

bias optional, optionally followed by `dequantize -> relu -> quantize` (ONNX Runtime keeps Relu as a node with
symmetric activations), which the layer's epilogue folds like accel/int8/graph.py does. `FuseOpsByPattern`
makes each match a function with attribute `Composite` = `sqnxt_accel.<conv2d|dense>[_relu]` holding its
constants; `LowerAccel` (lower_accel.py) then compiles them for the accelerator. Everything else (quantize
of the input, pooling, merges, ReLUs after merges) stays in `main` for the host.

A dequantized activation read by two layers (a stage's first block: conv a and the shortcut conv; or a conv
and the merge Add) would be an intermediate leaking out of one group, which FuseOpsByPattern must refuse;
so each consumer first gets its own copy of such a `dequantize` (what ONNX Runtime's "dedicated QDQ pair"
option does); the original, then unread, is removed afterwards.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np
import tvm
from tvm import relax
from tvm.relax.backend.utils import has_leaking_intermediate_variables
from tvm.relax.dpl import DFPattern, is_const, is_op, wildcard
from tvm.relax.expr_functor import PyExprMutator, mutator
from tvm.relax.transform import FusionPattern, PatternCheckContext

PREFIX = "sqnxt_accel."


def _dequantized(data: DFPattern) -> DFPattern:
    return is_op("relax.dequantize")(data, is_const(), is_const())


def _layer_pattern(kind: str, relu: bool) -> tuple[DFPattern, dict[str, DFPattern]]:
    """The pattern of one layer and its named parts (LowerAccel reads the layer's numbers from them)."""
    parts = {"input": wildcard(), "weight": is_const(), "bias": is_const()}
    parts["input_dq"] = _dequantized(parts["input"])
    parts["weight_dq"] = _dequantized(parts["weight"])
    parts["bias_dq"] = _dequantized(parts["bias"])
    if kind == "conv2d":
        parts["core"] = is_op("relax.nn.conv2d")(parts["input_dq"], parts["weight_dq"])
        bias = is_op("relax.reshape")(parts["bias_dq"], wildcard())
    else:   # Gemm arrives as matmul with the weight transposed (transB=1) or not
        parts["weight_t"] = is_op("relax.permute_dims")(parts["weight_dq"])
        parts["core"] = is_op("relax.matmul")(parts["input_dq"], parts["weight_t"] | parts["weight_dq"])
        bias = parts["bias_dq"]
    biased = is_op("relax.add")(parts["core"], bias) | parts["core"]
    parts["output_q"] = is_op("relax.quantize")(biased, is_const(), is_const())
    if relu:
        relu_in = is_op("relax.nn.relu")(_dequantized(parts["output_q"]))
        parts["output_q"] = is_op("relax.quantize")(relu_in, is_const(), is_const())
    return parts["output_q"], parts


def layer_patterns() -> list[tuple[str, DFPattern, dict[str, DFPattern]]]:
    """(composite name, pattern, named parts), the ReLU variants first (FuseOpsByPattern takes the first match)."""
    return [(f"{PREFIX}{kind}{'_relu' if relu else ''}", *_layer_pattern(kind, relu))
            for relu in (True, False) for kind in ("conv2d", "dense")]


def constant_value(expr: relax.Expr) -> np.ndarray:
    return expr.value.numpy()


def supported(kind: str, matched: dict[str, relax.Expr]) -> bool:
    """Whether the accelerator's int8 layer model covers a match (named parts -> expressions): int8 tensors
    with zero point 0 (the array has no zero-point correction), one input scale, weight scales per output
    channel, a plain NCHW/OIHW conv without dilation or a 2-D dense. Anything else stays on the host."""
    x_dq, w_dq, out_q = matched["input_dq"], matched["weight_dq"], matched["output_q"]
    zeros = [constant_value(x_dq.args[2]), constant_value(w_dq.args[2]), constant_value(out_q.args[2])]
    if any(z.dtype != np.int8 or np.any(z != 0) for z in zeros) or constant_value(x_dq.args[1]).size != 1:
        return False
    if constant_value(out_q.args[1]).size != 1 or str(out_q.attrs.out_dtype) != "int8":
        return False
    per_channel_axis = 0 if kind.startswith("conv2d") or "weight_t" in matched else 1
    if constant_value(w_dq.args[1]).size > 1 and int(w_dq.attrs.axis) != per_channel_axis:
        return False
    core = matched["core"]
    if kind.startswith("conv2d"):
        a = core.attrs
        return ((str(a.data_layout), str(a.kernel_layout), str(a.out_layout)) == ("NCHW", "OIHW", "NCHW")
                and all(int(d) == 1 for d in a.dilation) and len(core.args[0].ty.shape.values) == 4)
    return len(core.args[0].ty.shape.values) == 2 and len(matched["weight"].value.shape) == 2


def _check(kind: str) -> Callable[[PatternCheckContext], bool]:
    def check(context: PatternCheckContext) -> bool:
        # no intermediate value may be read outside the layer (e.g. a conv output the host also uses)
        if has_leaking_intermediate_variables(context):
            return False
        return supported(kind, dict(context.annotated_expr.items()))

    return check


@mutator
class _DedicateDequantize(PyExprMutator):
    """Give every reader of a shared `dequantize` its own copy (see the module docstring)."""

    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.mod_ = mod
        self.shared: set[relax.Var] = set()
        self.values: dict[relax.Var, relax.Expr] = {}

    def transform(self) -> tvm.IRModule:
        for gvar, func in self.mod_.functions.items():
            if not isinstance(func, relax.Function):
                continue
            self.values = relax.analysis.get_var2val(func)
            uses = Counter(arg for value in self.values.values() if isinstance(value, relax.Call)
                           for arg in value.args if isinstance(arg, relax.Var))
            self.shared = {var for var, value in self.values.items() if _is_op(value, "relax.dequantize")
                           and uses[var] > 1}
            if self.shared:
                self.builder_.update_func(gvar, self.visit_expr(func))
        return self.builder_.get()

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or _is_op(call, "relax.dequantize"):
            return call
        args = [self.builder_.emit(self.visit_expr(self.values[a])) if a in self.shared else a for a in call.args]
        return relax.Call(call.op, args, call.attrs, call.ty_args, call.span)


def _is_op(expr: relax.Expr, name: str) -> bool:
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name


@tvm.transform.module_pass(opt_level=0, name="PartitionAccel")
class PartitionAccel:
    """Quantized conv2d/dense layers of `main` -> composite functions `sqnxt_accel.*` (see the module
    docstring). `report(name, count)` is called once per composite kind that was created."""

    def __init__(self, report: Callable[[str, int], None] | None = None):
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        # ONNX Runtime interleaves parallel branches (a stage's conv a and shortcut conv, node by node);
        # FuseOpsByPattern then leaves a chain whose bindings interleave with another layer's without its
        # ReLU tail. A depth-first order makes every layer's chain contiguous.
        mod = relax.transform.TopologicalSort(order="depth-first", direction="from-inputs")(mod)
        mod = _DedicateDequantize(mod).transform()
        patterns = [FusionPattern(name, pattern, parts, _check(name[len(PREFIX):]))
                    for name, pattern, parts in layer_patterns()]
        mod = relax.transform.FuseOpsByPattern(patterns, bind_constants=True, annotate_codegen=False)(mod)
        mod = relax.transform.DeadCodeElimination(["main"])(mod)   # the dequantize copies left unused
        if self.report is not None:
            kinds = Counter(str(f.attrs["Composite"]) for f in composite_functions(mod).values())
            for name, count in sorted(kinds.items()):
                self.report(name, count)
        return mod


def composite_functions(mod: tvm.IRModule) -> dict[tvm.ir.GlobalVar, relax.Function]:
    """The accelerator's composite functions of `mod`."""
    return {gv: f for gv, f in mod.functions.items() if isinstance(f, relax.Function) and f.attrs is not None
            and "Composite" in f.attrs and str(f.attrs["Composite"]).startswith(PREFIX)}

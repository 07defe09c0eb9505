"""Turn the ONNX importer's Clip (an elementwise maximum, then minimum, against constant bounds) into one
`relax.clip`, so that a conv's ReLU6 is found as its epilogue the way a ReLU is (`ConvGraph.unit_at`)."""

from __future__ import annotations

import math

import tvm
from tvm import relax, s_tir, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from ._conv_graph import ConvGraph

_CALL_TIR, _WHERE, _ISNAN = (tvm.ir.Op.get(name) for name in ("relax.call_tir", "relax.where", "relax.isnan"))


def _scalar(expr: relax.Expr, bindings: dict) -> float | None:
    """A constant scalar, also through the importer's NaN guard `where(isnan(c), +-inf, c)` on a constant c."""
    expr = bindings.get(expr, expr) if isinstance(expr, relax.Var) else expr
    if isinstance(expr, tvm.ir.Constant) and hasattr(expr.value, "numpy"):
        value = expr.value.numpy()
        return float(value) if value.ndim == 0 else None
    if isinstance(expr, relax.Call) and expr.op == _WHERE:
        condition, if_nan, bound = expr.args
        condition = bindings.get(condition, condition) if isinstance(condition, relax.Var) else condition
        if isinstance(condition, relax.Call) and condition.op == _ISNAN:
            tested = _scalar(condition.args[0], bindings)
            if tested is not None:
                return _scalar(if_nan if math.isnan(tested) else bound, bindings)
    return None


def _elementwise_kind(mod: tvm.IRModule, call: relax.Expr) -> type | None:
    """tirx.Max or tirx.Min for a call_tir of a PrimFunc whose only store is the max / min of two loads."""
    if not (isinstance(call, relax.Call) and call.op == _CALL_TIR and call.args[0] in mod.functions):
        return None
    try:
        sch = s_tir.Schedule(mod[call.args[0]])
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except (tvm.error.TVMError, ValueError):
        return None
    body = sch.get(blocks[0]).body if len(blocks) == 1 else None
    if not (isinstance(body, tirx.BufferStore) and isinstance(body.value, (tirx.Max, tirx.Min))):
        return None
    return type(body.value)


@mutator
class _ClipRewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, graph: ConvGraph) -> None:
        super().__init__(mod)
        self.mod, self.graph = mod, graph

    def _clip_of(self, call: relax.Call) -> relax.Expr | None:
        """clip(x, lo, hi) for `minimum(maximum(x, lo), hi)` whose maximum has no other reader."""
        if _elementwise_kind(self.mod, call) is not tirx.Min:
            return None
        inner, upper = call.args[1].fields
        lower_call = self.graph.bindings.get(inner)
        if not self.graph.is_private(inner) or _elementwise_kind(self.mod, lower_call) is not tirx.Max:
            return None
        data, lower = lower_call.args[1].fields
        lo, hi = _scalar(lower, self.graph.bindings), _scalar(upper, self.graph.bindings)
        shape = [int(d) for d in call.ty.shape]
        if lo is None or hi is None or [int(d) for d in data.ty.shape] != shape or data.ty.dtype != "float32":
            return None
        return relax.op.clip(self.visit_expr(data), relax.prim_value(tirx.const(lo, "float32")),
                             relax.prim_value(tirx.const(hi, "float32")))

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        clip = self._clip_of(call)
        return super().visit_call_(call) if clip is None else clip


@tvm.transform.module_pass(opt_level=0, name="CanonicalizeClip")
class CanonicalizeClip:
    """`minimum(maximum(x, lo), hi)` (the importer's Clip, with constant bounds) becomes `clip(x, lo, hi)`."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        for gvar, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                rewriter = _ClipRewriter(mod, ConvGraph(func))
                mod[gvar] = relax.analysis.remove_all_unused(rewriter.visit_expr(func))
        return relax.transform.DeadCodeElimination()(mod)  # the bypassed maximum / minimum PrimFuncs

"""Remove Dropout, the identity at inference. The ONNX importer keeps it as `relax.nn.dropout`, which returns the
data and a mask; lowered, it copies the data and fills the mask on every run (SqueezeNet's classifier input)."""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

_DROPOUT = tvm.ir.Op.get("relax.nn.dropout")


@mutator
class _DropoutRemover(PyExprMutator):
    def visit_tuple_getitem_(self, item: relax.TupleGetItem) -> relax.Expr:
        tuple_value = item.tuple_value
        producer = self.lookup_binding(tuple_value) if isinstance(tuple_value, relax.Var) else tuple_value
        if item.index == 0 and isinstance(producer, relax.Call) and producer.op == _DROPOUT:
            return self.visit_expr(producer.args[0])
        return super().visit_tuple_getitem_(item)


@tvm.transform.module_pass(opt_level=0, name="RemoveDropout")
class RemoveDropout:
    """Each read of a dropout's output reads its input; a dropout whose mask nothing reads goes."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = mod.clone()
        for gvar, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                remover = _DropoutRemover(mod)
                mod[gvar] = relax.analysis.remove_all_unused(remover.visit_expr(func))
        return mod

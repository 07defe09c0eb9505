"""What the passes that replace kernels by variants share."""

from __future__ import annotations

from typing import Callable

import tvm
from tvm import relax, s_tir, tirx

from ..kernels.contract import CHAIN_SPEC_ATTR
from ..kernels.pixel_chunks import chain_from_spec

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def kernel_callee(expr: relax.Expr) -> tvm.ir.GlobalVar | None:
    """The module function a call_tir calls, else None."""
    if isinstance(expr, relax.Call) and expr.op == _CALL_TIR and isinstance(expr.args[0], tvm.ir.GlobalVar):
        return expr.args[0]
    return None


def chain_kernels(mod: tvm.IRModule) -> dict[tvm.ir.GlobalVar, dict]:
    """The pixel-chunk kernels of `mod` that carry their builder's arguments (CHAIN_SPEC_ATTR), with them."""
    return {gvar: chain_from_spec(func) for gvar, func in mod.functions.items()
            if isinstance(func, tirx.PrimFunc) and func.attrs is not None and CHAIN_SPEC_ATTR in func.attrs}


def rewrite_functions(mod: tvm.IRModule, rewriter_for: Callable[[tvm.IRModule, relax.Function], object | None]
                      ) -> tuple[tvm.IRModule, list]:
    """Each Relax function of `mod` rewritten by the expression mutator `rewriter_for(mod, func)` gives for it
    (None: the function stays); returns the module, with the functions the mutators added through their block
    builders, and the mutators used, for what they recorded."""
    rewriters = []
    for gvar, func in list(mod.functions.items()):
        if not isinstance(func, relax.Function) or not isinstance(func.body, relax.SeqExpr):
            continue
        rewriter = rewriter_for(mod, func)
        if rewriter is None:
            continue
        rewritten = rewriter.visit_expr(func)
        mod = rewriter.builder_.get()  # the kernels the mutator added, then the rewritten function
        mod[gvar] = rewritten
        rewriters.append(rewriter)
    return mod, rewriters


def declared_in_root(realize: s_tir.SBlockRealize, declarations: list[tirx.DeclBuffer]) -> s_tir.SBlockRealize:
    """A PrimFunc body with `declarations` (views of its parameters) first thing in its root block, where relax's
    analyses expect them."""
    root = realize.block
    root = s_tir.SBlock(root.iter_vars, root.reads, root.writes, root.name_hint,
                        tirx.SeqStmt([*declarations, root.body]), root.init, root.alloc_buffers, root.match_buffers,
                        root.annotations)
    return s_tir.SBlockRealize(realize.iter_values, realize.predicate, root)

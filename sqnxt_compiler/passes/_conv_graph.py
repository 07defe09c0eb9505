"""Shared by the fusion passes: find conv units (conv2d [+bias] [+ReLU]) in Relax and rewrite them into calls
of fused kernels (`sqnxt_compiler.kernels`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ..kernels import ChainStage, chain_kernel
from ..kernels.column_conv import column_conv_kernel
from ..kernels.contract import WINOGRAD_STEM_TILES
from ..kernels.winograd import MaxPoolWindow, transform_weights, winograd_rows_kernel
from ..kernels.winograd_tiles import transform_weights_2d, winograd_tiles_kernel
from ._fusion_report import FusionRecord, Reporter


@dataclass(frozen=True)
class ConvUnit:
    """`output = [relu | clip(0, relu_max)]([add](conv2d(data, weight), bias))` with constant weight and bias."""

    output: relax.Var
    data: relax.Expr
    weight: np.ndarray  # OIHW
    bias: np.ndarray | None  # (O,)
    relu: bool
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, left, bottom, right
    groups: int
    internal: tuple[relax.Var, ...]  # the vars between conv2d and `output`, used only inside the unit
    relu_max: float | None = None  # a ReLU that also clips at this value (ReLU6), None for a plain ReLU

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    def describe(self) -> str:
        kh, kw = self.kernel
        return f"{kh}x{kw}" + (f"/g{self.groups}" if self.groups > 1 else "")

    def stage(self) -> ChainStage:
        """This conv as a stage of a fused kernel (its arrays become kernel arguments)."""
        return ChainStage(int(self.weight.shape[0]), self.kernel, self.strides, self.padding, self.groups,
                          self.bias is not None, self.relu, self.relu_max)


def _constant(expr: relax.Expr, bindings: dict) -> np.ndarray | None:
    """The value of a constant, also through the reshape/expand_dims that ONNX importers put on biases."""
    if isinstance(expr, tvm.ir.Constant):
        return expr.value.numpy()
    value = bindings.get(expr) if isinstance(expr, relax.Var) else None
    if isinstance(value, relax.Call) and value.op.name in ("relax.reshape", "relax.expand_dims"):
        inner = _constant(value.args[0], bindings)
        return None if inner is None else inner.reshape([int(d) for d in expr.ty.shape])
    return None


def _relu_clip(call: relax.Call) -> float | None:
    """The upper bound of a `clip(x, 0, upper)` with upper > 0 (a ReLU that clips: ReLU6), else None."""
    bounds = [arg.value for arg in call.args[1:] if isinstance(arg, (tvm.tirx.FloatImm, tvm.tirx.IntImm))]
    if len(bounds) != 2:
        return None
    lower, upper = (float(bound) for bound in bounds)
    return upper if lower == 0.0 and upper > 0.0 else None


class ConvGraph:
    """Bindings and uses of a Relax function's dataflow blocks, and the conv units found in them."""

    def __init__(self, func: relax.Function) -> None:
        self.bindings: dict[relax.Var, relax.Expr] = {}
        self.users: dict[relax.Var, list[relax.Var]] = {}
        self.order: list[relax.Var] = []
        for block in func.body.blocks:
            if not isinstance(block, relax.DataflowBlock):
                continue
            for binding in block.bindings:
                if isinstance(binding, relax.VarBinding):
                    self.bindings[binding.var] = binding.value
                    self.order.append(binding.var)
            self.users.update(relax.analysis.udchain(block))

    def is_private(self, var: relax.Expr) -> bool:
        """True for a dataflow var read exactly once (so fusing its producer into its reader loses nothing)."""
        return isinstance(var, relax.DataflowVar) and len(self.users.get(var, ())) == 1

    def call(self, var: relax.Expr, op: str) -> relax.Call | None:
        value = self.bindings.get(var) if isinstance(var, relax.Var) else None
        return value if isinstance(value, relax.Call) and value.op == tvm.ir.Op.get(op) else None

    def unit_at(self, var: relax.Var) -> ConvUnit | None:
        """The conv unit whose result is `var`, or None."""
        cursor, relu, relu_max, bias, internal = var, False, None, None, []
        if (call := self.call(cursor, "relax.nn.relu")) is not None:
            relu, cursor = True, call.args[0]
            internal.append(cursor)
        elif (call := self.call(cursor, "relax.clip")) is not None and (bounds := _relu_clip(call)) is not None:
            relu, relu_max, cursor = True, bounds, call.args[0]
            internal.append(cursor)
        if (call := self.call(cursor, "relax.add")) is not None:
            for conv_side, bias_side in ((0, 1), (1, 0)):
                bias = _constant(call.args[bias_side], self.bindings)
                if bias is not None and self.call(call.args[conv_side], "relax.nn.conv2d") is not None:
                    cursor = call.args[conv_side]
                    internal.append(cursor)
                    break
                bias = None
            if bias is None:
                return None
        conv = self.call(cursor, "relax.nn.conv2d")
        if conv is None or not all(self.is_private(v) for v in internal):
            return None
        weight = _constant(conv.args[1], self.bindings)
        attrs = conv.attrs
        out_channels = int(cursor.ty.shape[1])
        if (weight is None or attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW"
                or attrs.out_layout != "NCHW" or any(int(d) != 1 for d in attrs.dilation)
                or cursor.ty.dtype != "float32" or conv.args[0].ty.dtype != "float32" or weight.dtype != np.float32
                or not all(isinstance(d, tvm.tirx.IntImm) for d in cursor.ty.shape)):
            return None
        if bias is not None:
            # only a per-channel bias broadcasts like a conv bias (a (C,) vector would broadcast along W)
            if bias.shape not in ((1, out_channels, 1, 1), (out_channels, 1, 1)):
                return None
            bias = bias.reshape(-1).astype(np.float32)
        return ConvUnit(output=var, data=conv.args[0], weight=weight, bias=bias, relu=relu,
                        strides=tuple(int(s) for s in attrs.strides),
                        padding=tuple(int(p) for p in attrs.padding), groups=int(attrs.groups),
                        internal=tuple(internal), relu_max=relu_max)

    def outermost_units(self) -> list[ConvUnit]:
        """Every conv unit that is not the inside of a larger one (conv+bias inside conv+bias+ReLU)."""
        units = [u for v in self.order if (u := self.unit_at(v)) is not None]
        inner = {var for unit in units for var in unit.internal}
        return [u for u in units if u.output not in inner]

    def producer_unit(self, unit: ConvUnit) -> ConvUnit | None:
        """The unit that computes `unit`'s input, when nothing else reads that input."""
        data = unit.data
        if not isinstance(data, relax.Var) or not self.is_private(data):
            return None
        return self.unit_at(data)


def emit_chain(builder: relax.BlockBuilder, remap: Callable[[relax.Expr], relax.Expr], units: Sequence[ConvUnit],
               pattern: str, residual: relax.Expr | None = None, final_relu: bool = False) -> relax.Expr:
    """A call_tir of the fused kernel for `units` (first to last), added to `builder`'s module; `remap`
    maps the caller's original vars to the rewritten ones."""
    data = remap(units[0].data)
    data_shape = [int(d) for d in data.ty.shape]
    func = chain_kernel(data_shape, [unit.stage() for unit in units], residual is not None, final_relu, pattern)
    gvar = builder.add_func(func, f"fused_{pattern}")
    args = [data]
    for unit in units:
        args.append(relax.const(unit.weight))
        if unit.bias is not None:
            args.append(relax.const(unit.bias))
    if residual is not None:
        args.append(remap(residual))
    return relax.call_tir(gvar, args, units[-1].output.ty)


def emit_winograd_rows(rewriter: "ChainRewriter", unit: ConvUnit, stride: int, pattern: str,
                       pool: tuple[relax.Var, MaxPoolWindow] | None = None) -> relax.Expr:
    """A call_tir of `kernels.winograd.winograd_rows_kernel` for `unit` (its weights transformed at compile time),
    named after `pattern` (the stems, the 3x1 convs); with `pool` (the pool's var and window), of the unit and
    that max pool of its result."""
    data = rewriter.visit_expr(unit.data)
    func = winograd_rows_kernel([int(d) for d in data.ty.shape], int(unit.weight.shape[0]), unit.kernel, stride,
                                unit.padding, unit.bias is not None, unit.relu, pattern,
                                None if pool is None else pool[1], unit.relu_max)
    return call_with_weights(rewriter, func, pattern, data, transform_weights(unit.weight, stride), unit,
                             unit.output if pool is None else pool[0])


def column_conv_rewrite(unit: ConvUnit, pattern: str, pool: tuple[relax.Var, MaxPoolWindow] | None = None,
                        vector_registers: int | None = None) -> UnitRewrite:
    """Compute `unit` (a depthwise or few-channel conv) [and the max `pool` (its var and window) of its result] as
    a call_tir of `kernels.column_conv.column_conv_kernel` named after `pattern` (a few-channel conv's tiles sized
    for the target's `vector_registers`); reported by its kernel, stride, input channels per group and pool."""

    def emit(rewriter: "ChainRewriter") -> relax.Expr:
        data = rewriter.visit_expr(unit.data)
        func = column_conv_kernel([int(d) for d in data.ty.shape], int(unit.weight.shape[0]), unit.groups,
                                  unit.kernel, unit.strides[0], unit.padding, unit.bias is not None, unit.relu,
                                  unit.relu_max, pattern, None if pool is None else pool[1], vector_registers)
        return call_with_weights(rewriter, func, pattern, data, unit.weight, unit,
                                 unit.output if pool is None else pool[0])

    (kh, kw), inputs = unit.kernel, int(unit.weight.shape[1])
    detail = f"{kh}x{kw}/s{unit.strides[0]}" + (f", {inputs} channels" if inputs > 1 else "")
    if pool is not None:
        detail += f" + max pool {pool[1].kernel}x{pool[1].kernel}/{pool[1].stride}"
    return UnitRewrite(unit.output if pool is None else pool[0], emit, detail)


def following_max_pool(graph: ConvGraph, unit: ConvUnit) -> tuple[relax.Var, MaxPoolWindow] | None:
    """The max pool that alone reads `unit`'s result, when a stem kernel can take it: square window and
    strides, no padding or dilation, NCHW, windows that fit its row tiles; its var and window."""
    users = graph.users.get(unit.output, ())
    if not graph.is_private(unit.output) or len(users) != 1:
        return None
    pool = graph.call(users[0], "relax.nn.max_pool2d")
    if pool is None:
        return None
    attrs = pool.attrs
    window, strides = [int(k) for k in attrs.pool_size], [int(s) for s in attrs.strides]
    if (len(set(window)) != 1 or len(set(strides)) != 1 or any(int(p) for p in attrs.padding)
            or any(int(d) != 1 for d in attrs.dilation) or attrs.layout != "NCHW" or attrs.out_layout != "NCHW"):
        return None
    out_h, out_w = (int(users[0].ty.shape[axis]) for axis in (2, 3))
    pool_window = MaxPoolWindow(window[0], strides[0], out_h, out_w)
    return (users[0], pool_window) if pool_window.fits_row_tiles() else None


def emit_winograd_tiles(rewriter: "ChainRewriter", unit: ConvUnit,
                        pool: tuple[relax.Var, MaxPoolWindow]) -> relax.Expr:
    """A call_tir of `kernels.winograd_tiles.winograd_tiles_kernel` for the stem `unit` and the max `pool` (its var
    and window) of its result, the weights transformed at compile time."""
    data = rewriter.visit_expr(unit.data)
    func = winograd_tiles_kernel([int(d) for d in data.ty.shape], int(unit.weight.shape[0]), unit.kernel[0],
                                 unit.padding, unit.bias is not None, unit.relu, pool[1], unit.relu_max)
    return call_with_weights(rewriter, func, WINOGRAD_STEM_TILES, data, transform_weights_2d(unit.weight), unit,
                             pool[0])


def call_with_weights(rewriter: "ChainRewriter", func, pattern: str, data: relax.Expr, weights: np.ndarray,
                      unit: ConvUnit, result: relax.Var) -> relax.Expr:
    """call_tir of a single-conv kernel `func` (added as fused_<pattern>) on data, its weights (as the kernel
    wants them: Winograd kernels, transformed) and the unit's bias, typed as `result` (the unit's output, or the
    pool's that a stem kernel also computes)."""
    gvar = rewriter.builder_.add_func(func, f"fused_{pattern}")
    args = [data, relax.const(weights)]
    if unit.bias is not None:
        args.append(relax.const(unit.bias))
    return relax.call_tir(gvar, args, result.ty)


@mutator
class ChainRewriter(PyExprMutator):
    """Replaces the binding of each planned var by a fused kernel call; the bypassed bindings die."""

    def __init__(self, mod: tvm.IRModule, plans: dict[relax.Var, Callable[["ChainRewriter"], relax.Expr]]):
        super().__init__(mod)
        self.plans = plans

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        plan = self.plans.get(binding.var)
        if plan is None:
            super().visit_var_binding_(binding)
            return
        value = self.builder_.normalize(plan(self))
        self.builder_.emit_normalized(relax.VarBinding(binding.var, value))

    def emit_chain(self, units: Sequence[ConvUnit], pattern: str, residual: relax.Expr | None = None,
                   final_relu: bool = False) -> relax.Expr:
        return emit_chain(self.builder_, self.visit_expr, units, pattern, residual, final_relu)


def rewrite_module(mod: tvm.IRModule, plan_function: Callable[[ConvGraph], dict]) -> tvm.IRModule:
    """Apply `plan_function` (graph -> {var: plan}) to every Relax function; unchanged when nothing is planned."""
    changed = False
    rewriter = None
    for gvar, func in list(mod.functions.items()):
        if not isinstance(func, relax.Function):
            continue
        plans = plan_function(ConvGraph(func))
        if not plans:
            continue
        rewriter = rewriter or ChainRewriter(mod, plans)
        rewriter.plans = plans
        new_func = relax.analysis.remove_all_unused(rewriter.visit_expr(func))
        rewriter.builder_.update_func(gvar, new_func)
        changed = True
    return rewriter.builder_.get() if changed else mod


@dataclass(frozen=True)
class UnitRewrite:
    """What a single-unit rewrite makes of one conv unit: the var whose binding it replaces (the unit's own, or
    that of a consumer the kernel takes along), the call that replaces it, and its detail for --explain."""

    result: relax.Var
    emit: Callable[["ChainRewriter"], relax.Expr]
    detail: str


def rewrite_units(mod: tvm.IRModule, rewrite: Callable[[ConvGraph, ConvUnit], UnitRewrite | None], pattern: str,
                  report: Reporter | None) -> tvm.IRModule:
    """The single-unit rewrites (`winograd_stem`, `winograd_rows`, `pointwise_conv`): every outermost conv unit
    for which `rewrite(graph, unit)` says what to do, reported as `pattern`."""

    def plan(graph: ConvGraph) -> dict:
        plans = {}
        for unit in graph.outermost_units():
            found = rewrite(graph, unit)
            if found is None:
                continue
            plans[found.result] = found.emit
            if report is not None:
                shape = found.result.ty.shape
                report(FusionRecord(pattern, found.detail, (int(shape[2]), int(shape[3]))))
        return plans

    return rewrite_module(mod, plan)

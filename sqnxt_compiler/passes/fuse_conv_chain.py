"""Shared by the fusion passes: find conv units (conv2d [+bias] [+ReLU]) in Relax and emit a fused TE kernel."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import tvm
from tvm import relax, te, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

# Every fused kernel carries this PrimFunc attribute (its value names the pattern) so the schedule rules in
# `schedules/fused_*.py` recognise it; its blocks are named `<prefix><stage>` (see `conv_chain_kernel`).
FUSION_ATTR = "sqnxt.fusion"
MACS_ATTR = "sqnxt.macs"  # multiply-accumulates of the real convolutions (not the padded columns/margins)
CONV_BLOCK = "sqnxt_conv"
OUTPUT_BLOCK = "sqnxt_out"
OPAQUE_PATTERN = 8  # relax OpPatternKind::kOpaque: FuseOps must leave the kernel alone (it is already fused)


@dataclass(frozen=True)
class ConvUnit:
    """`output = [relu]([add](conv2d(data, weight), bias))` with constant weight and bias."""

    output: relax.Var
    data: relax.Expr
    weight: np.ndarray  # OIHW
    bias: np.ndarray | None  # (O,)
    relu: bool
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, left, bottom, right
    groups: int
    internal: tuple[relax.Var, ...]  # the vars between conv2d and `output`, used only inside the unit

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    def describe(self) -> str:
        kh, kw = self.kernel
        return f"{kh}x{kw}" + (f"/g{self.groups}" if self.groups > 1 else "")


def _constant(expr: relax.Expr, bindings: dict) -> np.ndarray | None:
    """The value of a constant, also through the reshape/expand_dims that ONNX importers put on biases."""
    if isinstance(expr, tvm.ir.Constant):
        return expr.value.numpy()
    value = bindings.get(expr) if isinstance(expr, relax.Var) else None
    if isinstance(value, relax.Call) and value.op.name in ("relax.reshape", "relax.expand_dims"):
        inner = _constant(value.args[0], bindings)
        return None if inner is None else inner.reshape([int(d) for d in expr.ty.shape])
    return None


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
        cursor, relu, bias, internal = var, False, None, []
        if (call := self.call(cursor, "relax.nn.relu")) is not None:
            relu, cursor = True, call.args[0]
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
                        internal=tuple(internal))

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


@dataclass(frozen=True)
class ChainStage:
    """One conv of a fused chain, without its arrays (the arrays become kernel arguments)."""

    out_channels: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    groups: int
    has_bias: bool
    relu: bool

    @staticmethod
    def of(unit: ConvUnit) -> "ChainStage":
        return ChainStage(int(unit.weight.shape[0]), unit.kernel, unit.strides, unit.padding, unit.groups,
                          unit.bias is not None, unit.relu)


def padded_width(width: int) -> int:
    """The width a stage is computed at inside the kernel: whole vectors of 16 floats (8 for narrow rows),
    so the schedule vectorizes rows without a ragged tail; the extra columns are never read as data."""
    multiple = 16 if width > 8 else 8
    return -(-width // multiple) * multiple


def _row_margins(data_height: int, stages: Sequence[ChainStage]) -> list[tuple[int, int]]:
    """Per stage, the rows computed above and below its real output so that the next stage reads it
    without clipping at the image border (those rows are zero: they are the next stage's padding).
    Unclipped reads keep each row tile's intermediate region a constant size, which is what lets TIR
    shrink the intermediate buffers to one tile (clipped, they stay full-size).

    With a halo (a later stage is 3 rows tall), row tiles must divide the rows the last stage computes,
    so an odd height gets one extra row at the bottom of the last stage (never written out): 55 rows
    allow tiles of 1, 5 or 11 rows, i.e. 5 tiles on 2 cores (3:2); 56 allow 4 tiles of 14. The 1x3->3x1
    pair at 55x55 of 1.0-SqNxt-23 went from 57.6 to 47.5 us, like its 3x1->1x3 twin (no halo)."""
    heights = [data_height]
    for stage in stages:
        kh, sh = stage.kernel[0], stage.strides[0]
        heights.append((heights[-1] + stage.padding[0] + stage.padding[2] - kh) // sh + 1)
    halo = sum(stage.kernel[0] - 1 for stage in stages[1:])
    margins = [(0, 0)] * (len(stages) - 1) + [(0, heights[-1] % 2 if halo else 0)]
    for i in range(len(stages) - 1, 0, -1):
        (top, bottom), stage = margins[i], stages[i]
        kh, sh = stage.kernel[0], stage.strides[0]
        margins[i - 1] = (top * sh + stage.padding[0],
                          max(0, (heights[i + 1] + bottom - 1) * sh + kh - stage.padding[0] - heights[i]))
    return margins


def _conv_te(data: te.Tensor, width: int, height: int, weight: te.Tensor, stage: ChainStage,
             margins: tuple[int, int], input_offset: int | None, name: str) -> tuple[te.Tensor, int, int]:
    """The conv of `data` over its real rows plus `margins`, at `padded_width` columns; returns it with
    its real output height and width. `data`'s first `width` columns and `height` rows are real: all its rows
    (`input_offset` None: the kernel's input, padded here) or already hold this stage's vertical padding
    as margin rows (`input_offset` rows above the real ones). A `<name>_pad` stage supplies zeros for the
    horizontal padding and the extra columns (and the vertical padding of the kernel's input)."""
    n, cin, _, _ = (int(d) for d in data.shape)
    top, left, bottom, right = stage.padding
    kh, kw = stage.kernel
    sh, sw = stage.strides
    out_h = (height + top + bottom - kh) // sh + 1
    out_w = (width + left + right - kw) // sw + 1
    computed_w = padded_width(out_w)
    above, below = margins
    computed_h = out_h + above + below
    offset = above * sh + top  # padded-input row of computed output row 0 is (0 - above) * sh - top
    source = data

    def pad_value(b, c, y, x):
        inside_columns = tvm.tirx.all(x >= left, x < width + left)
        if input_offset is None:
            inside = tvm.tirx.all(y >= offset, y < height + offset, inside_columns)
            return te.if_then_else(inside, source[b, c, y - offset, x - left], tvm.tirx.const(0.0, "float32"))
        return te.if_then_else(inside_columns, source[b, c, y + input_offset - offset, x - left],
                               tvm.tirx.const(0.0, "float32"))

    padded = te.compute((n, cin, (computed_h - 1) * sh + kh, (computed_w - 1) * sw + kw), pad_value,
                        name=f"{name}_pad")
    cin_per_group = cin // stage.groups
    out_per_group = stage.out_channels // stage.groups
    rc = te.reduce_axis((0, cin_per_group), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def channel(o):
        return rc if stage.groups == 1 else o // out_per_group * cin_per_group + rc

    conv = te.compute(
        (n, stage.out_channels, computed_h, computed_w),
        lambda b, o, y, x: te.sum(padded[b, channel(o), y * sh + ry, x * sw + rx] * weight[o, rc, ry, rx],
                                  axis=[rc, ry, rx]),
        name=name)
    return conv, out_h, out_w


def epilogue_value(value, bias, channel, relu: bool, residual=None, final_relu: bool = False):
    """[final_relu]([relu](value + bias[channel]) [+ residual]): what every fused kernel applies to a conv
    result, in TE (`_epilogue`) and in the pixel-chunk kernels (`pointwise_chain`)."""
    zero = tvm.tirx.const(0.0, "float32")
    if bias is not None:
        value = value + bias[channel]
    if relu:
        value = tvm.tirx.max(value, zero)
    if residual is not None:
        value = value + residual
    return tvm.tirx.max(value, zero) if final_relu else value


def _epilogue(conv: te.Tensor, bias: te.Tensor | None, relu: bool, name: str, width: int,
              residual: te.Tensor | None = None, final_relu: bool = False,
              rows: tuple[int, int] | None = None, height: int | None = None) -> te.Tensor:
    """[final_relu]([relu](conv + bias) [+ residual]) over the first `width` columns (and the first
    `height` rows, default all); with `rows` (first real row, real row count) the margin rows outside them
    are zero."""

    def value(b, o, y, x):
        v = epilogue_value(conv[b, o, y, x], bias, o, relu, None if residual is None else residual[b, o, y, x],
                           final_relu)
        if rows is not None and int(conv.shape[2]) != rows[1]:
            v = te.if_then_else(tvm.tirx.all(y >= rows[0], y < rows[0] + rows[1]), v,
                                tvm.tirx.const(0.0, "float32"))
        return v

    return te.compute((*conv.shape[:2], conv.shape[2] if height is None else height, width), value, name=name)


def conv_chain_kernel(data_shape: Sequence[int], stages: Sequence[ChainStage], residual: bool,
                      final_relu: bool, pattern: str) -> tirx.PrimFunc:
    """One PrimFunc computing conv stage after stage; arguments: data, then per stage weight [and bias],
    then the residual when `residual` (added after the last stage's own ReLU, before `final_relu`).
    Blocks: `sqnxt_conv<i>` (reduction, at `padded_width` columns and with `_row_margins`),
    `sqnxt_conv<i>_pad`, `sqnxt_conv<i>_epilogue` between stages, `sqnxt_out` last. Nothing between the
    stages leaves the kernel; the schedule decides how much of each intermediate is live at once."""
    x = te.placeholder(tuple(data_shape), "float32", name="data")
    args, current, width, input_offset = [x], x, int(data_shape[3]), None
    height = int(data_shape[2])
    margins = _row_margins(height, stages)
    macs = 0
    for index, stage in enumerate(stages):
        cin_per_group = int(current.shape[1]) // stage.groups
        weight = te.placeholder((stage.out_channels, cin_per_group, *stage.kernel), "float32", name=f"w{index}")
        bias = te.placeholder((stage.out_channels,), "float32", name=f"b{index}") if stage.has_bias else None
        args += [weight] + ([bias] if bias is not None else [])
        conv, height, width = _conv_te(current, width, height, weight, stage, margins[index], input_offset,
                                       f"{CONV_BLOCK}{index}")
        macs += int(data_shape[0]) * stage.out_channels * height * width * cin_per_group * math.prod(stage.kernel)
        if index + 1 < len(stages):
            above = margins[index][0]
            current = _epilogue(conv, bias, stage.relu, f"{CONV_BLOCK}{index}_epilogue", int(conv.shape[3]),
                                rows=(above, height))
            input_offset = above
            continue
        out_shape = (*conv.shape[:2], height, width)
        shortcut = te.placeholder(out_shape, "float32", name="residual") if residual else None
        args += [shortcut] if shortcut is not None else []
        current = _epilogue(conv, bias, stage.relu, OUTPUT_BLOCK, width, shortcut, final_relu, height=height)
    func = te.create_prim_func([*args, current])
    return func.with_attrs({FUSION_ATTR: pattern, MACS_ATTR: macs, "op_pattern": OPAQUE_PATTERN})


def emit_chain(builder: relax.BlockBuilder, remap: Callable[[relax.Expr], relax.Expr], units: Sequence[ConvUnit],
               pattern: str, residual: relax.Expr | None = None, final_relu: bool = False) -> relax.Expr:
    """A call_tir of the fused kernel for `units` (first to last), added to `builder`'s module; `remap`
    maps the caller's original vars to the rewritten ones."""
    from .pointwise_chain import is_pointwise_chain, pointwise_chain_kernel  # here: it imports this module

    data = remap(units[0].data)
    data_shape = [int(d) for d in data.ty.shape]
    stages = [ChainStage.of(u) for u in units]
    build = pointwise_chain_kernel if is_pointwise_chain(data_shape, stages) else conv_chain_kernel
    func = build(data_shape, stages, residual is not None, final_relu, pattern)
    gvar = builder.add_func(func, f"fused_{pattern}")
    args = [data]
    for unit in units:
        args.append(relax.const(unit.weight))
        if unit.bias is not None:
            args.append(relax.const(unit.bias))
    if residual is not None:
        args.append(remap(residual))
    return relax.call_tir(gvar, args, units[-1].output.ty)


@dataclass(frozen=True)
class FusionRecord:
    """What a fusion pass did once, for `--explain`: the pattern, its shape, and where in the network."""

    pattern: str
    detail: str  # e.g. "3x1->1x3"
    resolution: tuple[int, int]  # output height, width: SqueezeNext's stages differ by resolution

    def stage_label(self) -> str:
        return f"{self.resolution[0]}x{self.resolution[1]}"


Reporter = Callable[[FusionRecord], None]


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


def rewrite_units(mod: tvm.IRModule, applies: Callable[[ConvUnit], bool],
                  emit: Callable[["ChainRewriter", ConvUnit], relax.Expr], pattern: str,
                  describe: Callable[[ConvUnit], str], report: Reporter | None) -> tvm.IRModule:
    """The single-unit rewrites (`winograd_stem`, `pointwise_conv`): every outermost conv unit for which
    `applies` holds becomes `emit(rewriter, unit)`, reported as `pattern` with `describe(unit)`."""

    def plan(graph: ConvGraph) -> dict:
        plans = {}
        for unit in graph.outermost_units():
            if not applies(unit):
                continue
            plans[unit.output] = lambda rw, unit=unit: emit(rw, unit)
            if report is not None:
                shape = unit.output.ty.shape
                report(FusionRecord(pattern, describe(unit), (int(shape[2]), int(shape[3]))))
        return plans

    return rewrite_module(mod, plan)


def summarize(records: Sequence[FusionRecord]) -> list[str]:
    """`--explain` lines: per pattern, the total, the count per variant and per stage (output resolution)."""
    lines = []
    for pattern in dict.fromkeys(r.pattern for r in records):
        mine = [r for r in records if r.pattern == pattern]
        details = Counter(r.detail for r in mine)
        stages = Counter(r.stage_label() for r in mine)
        lines.append(f"{pattern}: {len(mine)} fused ("
                     + ", ".join(f"{k}: {v}" for k, v in details.items()) + "); per stage: "
                     + ", ".join(f"{k}: {v}" for k, v in stages.items()))
    return lines or ["nothing to fuse; module unchanged"]

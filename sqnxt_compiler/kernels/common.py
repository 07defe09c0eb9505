"""Building blocks shared by the kernel builders: the fused epilogue expression and IR-builder grid blocks."""

from __future__ import annotations

from typing import Callable, Sequence

import tvm
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

ZERO = tvm.tirx.const(0.0, "float32")


def epilogue_value(value, bias, channel, relu: bool, residual=None, final_relu: bool = False,
                   relu_max: float | None = None):
    """[final_relu]([relu](value + bias[channel]) [+ residual]): what every fused kernel applies to a conv
    result; the ReLU clips at `relu_max` too when given (ReLU6)."""
    if bias is not None:
        value = value + bias[channel]
    if relu:
        value = tvm.tirx.max(value, ZERO)
        if relu_max is not None:
            value = tvm.tirx.min(value, tvm.tirx.const(relu_max, "float32"))
    if residual is not None:
        value = value + residual
    return tvm.tirx.max(value, ZERO) if final_relu else value


def weights_dominate(weight_bytes: int, input_bytes: int, l2_bytes: int) -> bool:
    """Whether a kernel's weights outgrow half of L2 and its input: split by pixels or rows, every core then
    streams all of them from the last-level cache or memory, so the cores should split the weights instead."""
    return weight_bytes > max(l2_bytes // 2, input_bytes)


def grid_block(name: str, extents: Sequence[int], kinds: str, names: Sequence[str], emit: Callable[..., None],
               outer: Sequence[tuple[str, "tvm.tirx.Var"]] = ()) -> None:
    """In an IR-builder kernel: a block `name` over loops of these extents and `names` (`kinds`: S or R per
    loop), nested in the spatial loops `outer` ((name, loop var) pairs) when given; `emit(*block_vars)` writes its
    body, the outer loops' block vars first."""
    with T.grid(*extents) as loops:
        IRBuilder.name_many(list(names), loops)
        with T.sblock(name):
            all_names = [n for n, _ in outer] + list(names)
            all_loops = [loop for _, loop in outer] + list(loops)
            emit(*IRBuilder.name_many([f"v{n}" for n in all_names], T.axis.remap("S" * len(outer) + kinds, all_loops)))

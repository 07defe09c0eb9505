"""Functional execution of a program: what the buffers and DRAM hold after each instruction.

Instructions run in program order, which is a legal interleaving of the three queues: the dependency
tokens guarantee no LOAD overwrites a slot still being read and no GEMM reuses an accumulator slot
before its STORE. GEMM tiles are one vectorized matrix product each (sliding windows over the input tile);
it runs in float64, which is exact here: |sum| <= 128 * 128 * kh * kw * cin < 2**53.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import SqnxtError
from .isa import Alu, AluOp, Buffer, Finish, Gemm, Load, Program, Store
from .layer import LayerSpec, Requant

_INT8 = (-128, 127)


class _Machine:
    def __init__(self, layer: LayerSpec, inputs: np.ndarray, weights: np.ndarray, bias: np.ndarray,
                 multipliers: np.ndarray, residual: np.ndarray | None) -> None:
        self.layer = layer
        self.inputs, self.weights, self.bias, self.multipliers = inputs, weights, bias, multipliers
        self.residual = residual
        self.output = np.zeros(layer.output_shape, dtype=np.int8)
        self.slots: dict[tuple, np.ndarray] = {}

    def load(self, inst: Load) -> None:
        if inst.buffer is Buffer.INPUT:
            tile = np.zeros((inst.rows, inst.cols, inst.channels), dtype=np.int8)
            r_lo, c_lo = max(inst.row0, 0), max(inst.col0, 0)
            r_hi, c_hi = min(inst.row0 + inst.rows, self.layer.h), min(inst.col0 + inst.cols, self.layer.w)
            if r_hi > r_lo and c_hi > c_lo:
                tile[r_lo - inst.row0:r_hi - inst.row0, c_lo - inst.col0:c_hi - inst.col0] = \
                    self.inputs[inst.image, r_lo:r_hi, c_lo:c_hi, inst.c0:inst.c0 + inst.channels]
        elif inst.buffer is Buffer.WEIGHT:
            tile = self.weights[inst.c0:inst.c0 + inst.channels, :, :, inst.cin0:inst.cin0 + inst.cin]
        elif inst.buffer is Buffer.RESIDUAL:
            tile = self.residual[inst.image, inst.row0:inst.row0 + inst.rows, inst.col0:inst.col0 + inst.cols,
                                 inst.c0:inst.c0 + inst.channels].astype(np.int64)
        else:
            tile = np.stack([self.bias[inst.c0:inst.c0 + inst.channels].astype(np.int64),
                             self.multipliers[inst.c0:inst.c0 + inst.channels]])
        self.slots[(inst.buffer, inst.slot)] = tile

    def gemm(self, inst: Gemm) -> None:
        x = self.slots[(Buffer.INPUT, inst.input_slot)]
        w = self.slots[(Buffer.WEIGHT, inst.weight_slot)]
        sh, sw = inst.stride
        # (rows, cols, cin, kh, kw) windows -> (pixels, cin * kh * kw) patches
        windows = sliding_window_view(x, (inst.kh, inst.kw), axis=(0, 1))[::sh, ::sw][:inst.out_rows, :inst.out_cols]
        patches = windows.reshape(inst.out_rows * inst.out_cols, -1).astype(np.float64)
        kernel = w.transpose(3, 1, 2, 0).reshape(-1, inst.cout).astype(np.float64)
        product = (patches @ kernel).astype(np.int64).reshape(inst.out_rows, inst.out_cols, inst.cout)
        key = ("acc", inst.acc_slot)
        self.slots[key] = product if inst.reset else self.slots[key] + product

    def alu(self, inst: Alu) -> None:
        acc = self.slots[("acc", inst.acc_slot)]
        bias, multiplier = self.slots[(Buffer.PARAM, inst.param_slot)]
        for op, imm in inst.ops:
            if op is AluOp.ADD_CHANNEL:
                acc = acc + bias
            elif op is AluOp.MUL_CHANNEL:
                acc = acc * multiplier
            elif op is AluOp.ADD_RESIDUAL:
                acc = acc + self.slots[(Buffer.RESIDUAL, inst.residual_slot)] * imm
            elif op is AluOp.ADD_IMM:
                acc = acc + imm
            elif op is AluOp.SHR_IMM:
                acc = acc >> imm
            elif op is AluOp.MIN_IMM:
                acc = np.minimum(acc, imm)
            elif op is AluOp.MAX_IMM:
                acc = np.maximum(acc, imm)
        self.slots[("acc", inst.acc_slot)] = acc

    def store(self, inst: Store) -> None:
        acc = self.slots[("acc", inst.acc_slot)]
        if acc.min(initial=0) < _INT8[0] or acc.max(initial=0) > _INT8[1]:
            raise SqnxtError("STORE of an accumulator tile outside int8 range: the program lacks a "
                             "saturating ALU pass")
        self.output[inst.image, inst.row0:inst.row0 + inst.rows, inst.col0:inst.col0 + inst.cols,
                    inst.c0:inst.c0 + inst.channels] = acc


def execute(program: Program, inputs: np.ndarray, weights: np.ndarray, bias: np.ndarray,
            requant: Requant, residual: np.ndarray | None = None) -> np.ndarray:
    """Run `program` on int8 inputs/weights, int32 bias (and the int8 residual of a layer with a fused
    merge); return the int8 output (n, out_h, out_w, cout)."""
    layer = program.layer
    _check_operand("inputs", inputs, layer.input_shape, np.int8)
    _check_operand("weights", weights, layer.weight_shape, np.int8)
    _check_operand("bias", bias, (layer.cout,), np.int32)
    if layer.residual:
        if residual is None:
            raise SqnxtError(f"layer '{layer.name}' adds a residual: pass residual=int8{list(layer.output_shape)}")
        _check_operand("residual", residual, layer.output_shape, np.int8)
    machine = _Machine(layer, inputs, weights, bias, requant.multipliers(layer.cout), residual)
    handlers = {Load: machine.load, Gemm: machine.gemm, Alu: machine.alu, Store: machine.store,
                Finish: lambda inst: None}
    for inst in program.instructions:
        handlers[type(inst)](inst)
    return machine.output


def _check_operand(name: str, array: np.ndarray, shape: tuple[int, ...], dtype: type) -> None:
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape) or array.dtype != dtype:
        got = f"{array.dtype}{list(array.shape)}" if isinstance(array, np.ndarray) else type(array).__name__
        raise SqnxtError(f"{name} must be {np.dtype(dtype).name}{list(shape)}, got {got}")

"""Fold inference-mode BatchNorm into the preceding convolution's weights and bias, in numpy."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, is_tuple_get_item, rewrite_call, wildcard


def _const_array(expr: relax.Expr) -> np.ndarray:
    return expr.value.numpy()


def _pattern():
    data, weight = wildcard(), is_const()
    conv = is_op("relax.nn.conv2d")(data, weight)
    bias = is_const()
    conv_or_biased = conv | is_op("relax.add")(conv, bias)
    stats = [is_const() for _ in range(4)]
    batch_norm = is_op("relax.nn.batch_norm")(conv_or_biased, *stats)
    return is_tuple_get_item(batch_norm, 0), data, weight, bias, conv, batch_norm, stats


def _fold(expr: relax.Expr, matches, pattern) -> relax.Expr:
    _, data, weight, bias, conv, batch_norm, stats = pattern
    conv_call, bn_call = matches[conv], matches[batch_norm]
    attrs = conv_call.attrs
    if attrs.kernel_layout != "OIHW" or attrs.data_layout != "NCHW" or int(bn_call.attrs.axis) != 1:
        return expr
    gamma, beta, mean, var = (_const_array(matches[s]).astype(np.float64) for s in stats)
    if not bn_call.attrs.center:
        beta = np.zeros_like(beta)
    if not bn_call.attrs.scale:
        gamma = np.ones_like(gamma)
    scale = gamma / np.sqrt(var + float(bn_call.attrs.epsilon))
    w = _const_array(matches[weight])
    old_bias = _const_array(matches[bias]).reshape(-1) if bias in matches else np.zeros(w.shape[0])
    new_weight = (w * scale.reshape(-1, 1, 1, 1)).astype(w.dtype)
    new_bias = ((old_bias - mean) * scale + beta).astype(w.dtype).reshape(1, -1, 1, 1)
    folded = relax.Call(conv_call.op, [matches[data], relax.const(new_weight)], attrs)
    return relax.op.add(folded, relax.const(new_bias))


@tvm.transform.module_pass(opt_level=0, name="FoldBatchNorm")
class FoldBatchNorm:
    """conv2d [-> add(bias)] -> batch_norm becomes conv2d -> add with rescaled constant weights.

    The arithmetic is done once in numpy (TVM's FoldConstant would JIT-compile a kernel per constant,
    ~30 s for one SqueezeNext). Other BatchNorms are decomposed into an elementwise scale and shift,
    which FuseOps fuses into their producer later."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        pattern = _pattern()
        for gvar, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                mod[gvar] = rewrite_call(pattern[0], lambda e, m: _fold(e, m, pattern), func)
        return tvm.transform.Sequential([
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
        ])(mod)

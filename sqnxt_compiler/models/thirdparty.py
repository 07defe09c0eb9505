"""SqueezeNext as the widely used third-party family (pytorchcv `sqnxt23_w1`, ...) exports it to ONNX.

Differences from the official definition (DESIGN.md section 3): 7x7 stem with pad 1 and bias at 224x224,
biases on every conv with BatchNorm already folded, always 1x3 then 3x1, the width multiplier also scales
stem and tail, a fixed 7x7 AveragePool, Reshape + Gemm with bias, and v5 without the chained entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from .graph_builder import GraphBuilder, Tensor


@dataclass(frozen=True)
class ThirdPartySpec:
    width: float
    blocks_per_stage: tuple[int, int, int, int]


THIRD_PARTY_SPECS: dict[str, ThirdPartySpec] = {
    "sqnxt23_w1": ThirdPartySpec(1.0, (6, 6, 8, 1)),
    "sqnxt23_w3d2": ThirdPartySpec(1.5, (6, 6, 8, 1)),
    "sqnxt23_w2": ThirdPartySpec(2.0, (6, 6, 8, 1)),
    "sqnxt23v5_w1": ThirdPartySpec(1.0, (2, 4, 14, 1)),
    "sqnxt23v5_w2": ThirdPartySpec(2.0, (2, 4, 14, 1)),
}


def _conv_relu(g: GraphBuilder, x: Tensor, channels: int, kernel: tuple[int, int], stride: int = 1,
               pad: tuple[int, int] = (0, 0), name: str = "conv") -> Tensor:
    return g.relu(g.conv(x, channels, kernel, stride, pad, bias=True, name=name))


def _unit(g: GraphBuilder, x: Tensor, out_channels: int, stride: int, name: str) -> Tensor:
    cin = x.channels
    if stride == 2:
        reduction, project = 1, True
    elif cin > out_channels:
        reduction, project = 4, True
    else:
        reduction, project = 2, False
    mid = cin // reduction
    y = _conv_relu(g, x, mid, (1, 1), stride, name=f"{name}_conv1")
    y = _conv_relu(g, y, cin // (2 * reduction), (1, 1), name=f"{name}_conv2")
    y = _conv_relu(g, y, mid, (1, 3), pad=(0, 1), name=f"{name}_conv3")
    y = _conv_relu(g, y, mid, (3, 1), pad=(1, 0), name=f"{name}_conv4")
    y = _conv_relu(g, y, out_channels, (1, 1), name=f"{name}_conv5")
    shortcut = _conv_relu(g, x, out_channels, (1, 1), stride, name=f"{name}_identity") if project else x
    return g.relu(g.add(y, shortcut))


def build_third_party_squeezenext(name: str, batch: int = 1, resolution: int = 224,
                                  seed: int = 0) -> onnx.ModelProto:
    spec = THIRD_PARTY_SPECS[name]
    g = GraphBuilder(seed=seed)
    data = Tensor("data", (batch, 3, resolution, resolution))
    scale = spec.width if spec.width > 1.0 else 1.0
    x = _conv_relu(g, data, int(64 * scale), (7, 7), stride=2, pad=(1, 1), name="init_conv")
    x = g.pool("MaxPool", x, kernel=3, stride=2, ceil=True)
    for stage, (channels, blocks) in enumerate(zip((32, 64, 128, 256), spec.blocks_per_stage)):
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            x = _unit(g, x, int(channels * spec.width), stride, f"stage{stage + 1}_unit{index + 1}")
    x = _conv_relu(g, x, int(128 * scale), (1, 1), name="final_block")
    x = g.pool("AveragePool", x, kernel=x.shape[2], stride=1)
    logits = g.gemm(g.reshape_flat(x), 1000, bias=True, name="output")
    return g.finish(name, data, logits, doc=f"{name} (third-party pytorchcv-style export), random weights")

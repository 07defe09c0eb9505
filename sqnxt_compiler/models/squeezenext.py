"""The official SqueezeNext family (Gholami et al. 2018, the authors' Caffe prototxts) as ONNX graphs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from .graph_builder import GraphBuilder, Tensor

STAGE_CHANNELS = (32, 64, 128, 256)
STEM_CHANNELS = 64
TAIL_CHANNELS = 128


@dataclass(frozen=True)
class SqueezeNextSpec:
    """One member of the family. Width scales block channels only (not stem, tail or FC)."""

    width: float
    stem_kernel: int
    blocks_per_stage: tuple[int, int, int, int]
    groups: int = 1
    chained_entry: bool = False  # the v5 variants: y = ReLU(BN(conv1x1_s(x))); out = ReLU(y + F(y))

    def stage_channels(self) -> list[int]:
        return [int(c * self.width) for c in STAGE_CHANNELS]


SQUEEZENEXT_SPECS: dict[str, SqueezeNextSpec] = {
    "1.0-SqNxt-23": SqueezeNextSpec(1.0, 7, (6, 6, 8, 1)),
    "1.0-G-SqNxt-23": SqueezeNextSpec(1.0, 7, (6, 6, 8, 1), groups=2),
    "1.0-SqNxt-23v5": SqueezeNextSpec(1.0, 5, (2, 4, 14, 1), chained_entry=True),
    "1.5-SqNxt-23": SqueezeNextSpec(1.5, 7, (6, 6, 8, 1)),
    "2.0-SqNxt-23": SqueezeNextSpec(2.0, 7, (6, 6, 8, 1)),
    "2.0-SqNxt-23v5": SqueezeNextSpec(2.0, 5, (2, 4, 14, 1), chained_entry=True),
    "2.0-SqNxt-44": SqueezeNextSpec(2.0, 7, (12, 12, 16, 2)),
}


def _residual_branch(g: GraphBuilder, x: Tensor, channels: int, stride: int, vertical_first: bool,
                     groups: int, name: str) -> Tensor:
    """The two-stage 1x1 bottleneck, the low-rank 3x1/1x3 pair and the 1x1 expansion (no final ReLU)."""
    half, quarter = channels // 2, channels // 4
    y = g.conv_bn_relu(x, half, (1, 1), stride, groups=groups, name=f"{name}_reduce1")
    y = g.conv_bn_relu(y, quarter, (1, 1), name=f"{name}_reduce2")
    low_rank = [((3, 1), (1, 0)), ((1, 3), (0, 1))]
    if not vertical_first:
        low_rank.reverse()
    for kernel, pad in low_rank:
        y = g.conv_bn_relu(y, half, kernel, pad=pad, groups=groups, name=f"{name}_{kernel[0]}x{kernel[1]}")
    return g.conv_bn_relu(y, channels, (1, 1), relu=False, name=f"{name}_expand")


def _block(g: GraphBuilder, x: Tensor, spec: SqueezeNextSpec, channels: int, stride: int, first: bool,
           index: int, name: str) -> Tensor:
    vertical_first = index % 2 == 0  # even blocks of a stage: 3x1 first; odd blocks: 1x3 first
    if first and spec.chained_entry:
        y = g.conv_bn_relu(x, channels, (1, 1), stride, name=f"{name}_entry")
        return g.relu(g.add(y, _residual_branch(g, y, channels, 1, vertical_first, spec.groups, name)))
    shortcut = g.conv_bn_relu(x, channels, (1, 1), stride, name=f"{name}_shortcut") if first else x
    branch = _residual_branch(g, x, channels, stride, vertical_first, spec.groups, name)
    return g.relu(g.add(branch, shortcut))


def build_squeezenext(name: str, batch: int = 1, resolution: int = 227, seed: int = 0, classes: int = 1000,
                      weights: Mapping[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """Build `name` (a key of SQUEEZENEXT_SPECS) with seeded random weights and BN statistics, or with `weights`
    (initializer name -> array: those of a trained export of the same variant and class count)."""
    spec = SQUEEZENEXT_SPECS[name]
    g = GraphBuilder(seed=seed, weights=weights)
    data = Tensor("data", (batch, 3, resolution, resolution))
    x = g.conv_bn_relu(data, STEM_CHANNELS, (spec.stem_kernel, spec.stem_kernel), stride=2, name="stem")
    x = g.pool("MaxPool", x, kernel=3, stride=2, ceil=True)
    for stage, (channels, blocks) in enumerate(zip(spec.stage_channels(), spec.blocks_per_stage)):
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            x = _block(g, x, spec, channels, stride, index == 0, index, f"s{stage + 1}b{index + 1}")
    x = g.conv_bn_relu(x, TAIL_CHANNELS, (1, 1), name="tail")
    logits = g.gemm(g.flatten(g.global_avg_pool(x)), classes, bias=False)
    trained = "given weights" if weights is not None else "random weights"
    return g.finish(name, data, logits, doc=f"{name} (official SqueezeNext definition), {trained}")

"""Schedule rule for FuseBottleneck's kernels: the 1x1 reduce pair, and the 1x1 expand with its epilogue."""

from __future__ import annotations

from . import ScheduleRule
from .fused_conv_chain import conv_chain_design_space, fusion_pattern, schedule_conv_chain

RULE = ScheduleRule(
    name="fused_bottleneck",
    applies=lambda func, _spec: fusion_pattern(func) in ("reduce_chain", "expand_epilogue"),
    apply=schedule_conv_chain,
    design_space=conv_chain_design_space,
)

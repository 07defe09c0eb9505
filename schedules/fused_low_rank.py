"""Schedule rule for FuseLowRankConv's kernels: the 3x1/1x3 pair computed row tile by row tile."""

from __future__ import annotations

from . import ScheduleRule
from .fused_conv_chain import conv_chain_design_space, fusion_pattern, schedule_conv_chain

RULE = ScheduleRule(
    name="fused_low_rank",
    applies=lambda func, _spec: fusion_pattern(func) == "low_rank",
    apply=schedule_conv_chain,
    design_space=conv_chain_design_space,
)

"""Schedule rule for FuseLowRankConv's kernels: the 3x1/1x3 pair computed row tile by row tile."""

from __future__ import annotations

from ..kernels.contract import LOW_RANK, fusion_pattern
from .fused_conv_chain import conv_chain_design_space, schedule_conv_chain
from .rule import ScheduleRule

RULE = ScheduleRule(
    name="fused_low_rank",
    applies=lambda func, _spec: fusion_pattern(func) == LOW_RANK,
    apply=schedule_conv_chain,
    design_space=conv_chain_design_space,
)

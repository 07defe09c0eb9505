"""Schedule rule for FuseBottleneck's row kernels: the 1x1 reduce pair, and the 1x1 expand with its epilogue,
when they are not pointwise chains over pixel chunks (`fused_pixel_chunks`): an image smaller than one chunk,
or a strided first conv that `subsample_pointwise` did not take (a pipeline without that phase)."""

from __future__ import annotations

from ..kernels.contract import EXPAND_EPILOGUE, REDUCE_CHAIN, fusion_pattern, pixel_chunked
from .fused_conv_chain import conv_chain_design_space, schedule_conv_chain
from .rule import ScheduleRule

RULE = ScheduleRule(
    name="fused_bottleneck",
    applies=lambda func, _spec: fusion_pattern(func) in (REDUCE_CHAIN, EXPAND_EPILOGUE) and not pixel_chunked(func),
    apply=schedule_conv_chain,
    design_space=conv_chain_design_space,
)

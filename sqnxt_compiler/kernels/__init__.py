"""The kernel builders of the fused patterns (TE / TVMScript IR builder): the passes emit them, the schedule
rules and the tuner recognise them through `contract`."""

from __future__ import annotations

from typing import Sequence

from tvm import tirx

from .conv_chain import ChainStage, conv_chain_kernel
from .pixel_chunks import is_pointwise_chain, pointwise_chain_kernel


def chain_kernel(data_shape: Sequence[int], stages: Sequence[ChainStage], residual: bool, final_relu: bool,
                 pattern: str) -> tirx.PrimFunc:
    """The kernel of a conv chain: over pixel chunks when every stage is a 1x1 stride-1 conv, else in rows."""
    build = pointwise_chain_kernel if is_pointwise_chain(data_shape, stages) else conv_chain_kernel
    return build(data_shape, stages, residual, final_relu, pattern)


__all__ = ["ChainStage", "chain_kernel", "conv_chain_kernel", "is_pointwise_chain", "pointwise_chain_kernel"]

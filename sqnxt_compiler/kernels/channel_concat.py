"""A concat of NCHW tensors along channels as a kernel of its own, so that the phases after scheduling can find
it (`passes/concat_in_place.py`); its body is TOPI's concatenate."""

from __future__ import annotations

from typing import Sequence

from tvm import te, tirx, topi

from .contract import CHANNEL_CONCAT_ATTR, OPAQUE_PATTERN


def channel_concat_kernel(shapes: Sequence[Sequence[int]], dtype: str) -> tirx.PrimFunc:
    """A PrimFunc (parts..., output) concatenating NCHW tensors of these `shapes` along channels."""
    parts = [te.placeholder([int(d) for d in shape], dtype, name=f"part{i}") for i, shape in enumerate(shapes)]
    output = topi.concatenate(parts, axis=1)
    return te.create_prim_func([*parts, output]).with_attrs(
        {CHANNEL_CONCAT_ATTR: True, "op_pattern": OPAQUE_PATTERN, "tirx.noalias": True})

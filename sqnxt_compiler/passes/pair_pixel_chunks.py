"""Give the pixel-chunk kernels an even number of chunks on targets whose vector holds a whole chunk.

A pixel-chunk kernel's register tile holds, per output channel, the chunk's PIXEL_CHUNK pixels: two vectors on
AVX2, four on NEON, but one on AVX-512, where each weight broadcast then feeds a single multiply-add. With two
chunks in the tile it feeds two, and the 1x1 kernels ran 10-20% faster alone (docs/performance.md).
A schedule can only pair chunks that come in pairs: the kernels over an odd number of chunks per image (28x28: 49)
are rebuilt with one more, the last chunk computed again (`pointwise_chain_kernel(chunk_group=2)`), where the pairs
still shorten the busiest core's work (`pairs_pay`: not 14x14 at batch 1 on 2 cores). Kernels over an even number
are unchanged; the pipeline runs the pass only where a chunk is one vector."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import tvm

from ..kernels.pixel_chunks import CHUNK_PAIR, image_chunks, pairs_pay, pointwise_chain_kernel
from ._kernels import chain_kernels


def summarize(shapes: list[tuple[int, int]]) -> list[str]:
    """`--explain` lines from the (height, width) of each regrouped kernel's image."""
    if not shapes:
        return ["no pixel-chunk kernel takes another chunk for pairs; the kernels are unchanged"]
    return [f"{len(shapes)} pixel-chunk kernels given one more chunk, for pairs: " + ", ".join(
        f"{h}x{w}: {n}" for (h, w), n in Counter(shapes).items())]


@tvm.transform.module_pass(opt_level=0, name="PairPixelChunks")
class PairPixelChunks:
    """The pixel-chunk kernels over an odd number of chunks per image get one more where pairs pay on `cores`
    (module docstring); `report` gets the (height, width) of each."""

    def __init__(self, report: Callable[[tuple[int, int]], None] | None = None, cores: int = 1) -> None:
        self.report, self.cores = report, cores

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = mod.clone()
        for gvar, spec in chain_kernels(mod).items():
            batch, _, height, width = spec["data_shape"]
            single, paired = (image_chunks(height * width, group) for group in (1, CHUNK_PAIR))
            if single == paired or not pairs_pay(batch, paired, single, self.cores):
                continue
            mod[gvar] = pointwise_chain_kernel(**{**spec, "chunk_group": CHUNK_PAIR})
            if self.report is not None:
                self.report((height, width))
        return mod

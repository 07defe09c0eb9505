"""What the fusion passes report for `--explain`: one record per rewrite, summarised per pattern and stage."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class FusionRecord:
    """What a fusion pass did once, for `--explain`: the pattern, its shape, and where in the network."""

    pattern: str
    detail: str  # e.g. "3x1->1x3"
    resolution: tuple[int, int]  # output height, width: SqueezeNext's stages differ by resolution

    def stage_label(self) -> str:
        return f"{self.resolution[0]}x{self.resolution[1]}"


Reporter = Callable[[FusionRecord], None]


def summarize(records: Sequence[FusionRecord]) -> list[str]:
    """`--explain` lines: per pattern, the total, the count per variant and per stage (output resolution)."""
    lines = []
    for pattern in dict.fromkeys(r.pattern for r in records):
        mine = [r for r in records if r.pattern == pattern]
        details = Counter(r.detail for r in mine)
        stages = Counter(r.stage_label() for r in mine)
        lines.append(f"{pattern}: {len(mine)} fused ("
                     + ", ".join(f"{k}: {v}" for k, v in details.items()) + "); per stage: "
                     + ", ".join(f"{k}: {v}" for k, v in stages.items()))
    return lines or ["nothing to fuse; module unchanged"]

"""The memory side: DMA transfer time between DRAM and the on-chip buffers.

One AXI-like port with independent read and write channels, each `bytes_per_cycle` wide; every transfer
(one LOAD or STORE instruction) pays a fixed `latency_cycles` before its bytes stream at full width.
Padding of input tiles is synthesised by the DMA engine and costs no DRAM bytes (VTA's LOAD does the same).
"""

from __future__ import annotations

import math

from .config import AccelConfig


def dma_cycles(dram_bytes: int, config: AccelConfig) -> int:
    if dram_bytes <= 0:
        return 0
    return config.dram_latency_cycles + math.ceil(dram_bytes / config.dram_bytes_per_cycle)

"""The compute side: cycles and on-chip accesses of one GEMM tile on the systolic array, per dataflow.

The array is `rows x cols` PEs. A tile multiplies P output pixels by a reduction of R = kh*kw*cin
terms into C output channels. As in SCALE-Sim, the work is cut into folds that each fit the array:

- weight-stationary (WS): a fold pins an R_f x C_f block of weights (R_f <= rows, C_f <= cols) in the
  PEs. Preloading it takes `rows` cycles (one weight row per cycle), then the P input vectors stream
  through; the first result leaves the array after the skew fill (rows - 1) and the last after the
  drain (cols - 1). Folds: ceil(R/rows) * ceil(C/cols); cycles per fold: rows + P + rows + cols - 2.
- output-stationary (OS): a fold pins P_f x C_f outputs (P_f <= rows, C_f <= cols) and streams the R
  reduction terms through both edges; the skew adds rows - 1 + cols - 1 before the last PE is done.
  Folds: ceil(P/rows) * ceil(C/cols); cycles per fold: R + rows + cols - 2.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .config import AccelConfig
from .isa import Gemm
from .tiling import ACC_BYTES, ceil_div

# Register-file accesses per MAC in a PE: the input operand latch, the weight (or stationary) register
# and the partial-sum register (Eyeriss counts the same three operands per MAC).
RF_ACCESSES_PER_MAC = 3


@dataclass(frozen=True)
class GemmCost:
    cycles: int
    macs: int
    folds: int
    input_buffer_bytes: int     # bytes read from the input buffer into the array
    weight_buffer_bytes: int    # bytes read from the weight buffer into the array
    acc_buffer_bytes: int       # int32 partial sums read and written
    rf_accesses: int


@functools.lru_cache(maxsize=4096)   # a layer has only a handful of distinct tile shapes
def gemm_cost(dataflow: str, pixels: int, reduction: int, cout: int, rows: int, cols: int,
              reset: bool) -> GemmCost:
    """Cycles and buffer traffic of one GEMM tile (no memory stalls: the buffers hold the whole tile)."""
    macs = pixels * reduction * cout
    col_folds = ceil_div(cout, cols)
    if dataflow == "ws":
        red_folds = ceil_div(reduction, rows)
        folds = red_folds * col_folds
        cycles = folds * (rows + pixels + rows + cols - 2)
        input_bytes = pixels * reduction * col_folds          # inputs re-stream for every column fold
        weight_bytes = reduction * cout                       # each weight preloaded once
        # every reduction fold reads and writes the partial sums, except the first read after a reset
        acc_words = pixels * cout * (2 * red_folds - (1 if reset else 0))
    else:
        pix_folds = ceil_div(pixels, rows)
        folds = pix_folds * col_folds
        cycles = folds * (reduction + rows + cols - 2)
        input_bytes = pixels * reduction * col_folds
        weight_bytes = reduction * cout * pix_folds           # weights re-stream for every pixel fold
        acc_words = pixels * cout * (1 if reset else 2)       # outputs drained once (read back if partial)
    return GemmCost(cycles=cycles, macs=macs, folds=folds, input_buffer_bytes=input_bytes,
                    weight_buffer_bytes=weight_bytes, acc_buffer_bytes=acc_words * ACC_BYTES,
                    rf_accesses=RF_ACCESSES_PER_MAC * macs)


def gemm_instruction_cost(gemm: Gemm, config: AccelConfig) -> GemmCost:
    """`gemm_cost` of one GEMM instruction on `config`'s array: its duration (timing.py) and its MACs and
    buffer accesses (energy.py) come from this one call."""
    return gemm_cost(gemm.dataflow, gemm.out_rows * gemm.out_cols, gemm.kh * gemm.kw * gemm.cin, gemm.cout,
                     config.rows, config.cols, gemm.reset)


def alu_cycles(elements: int, lanes: int) -> int:
    """One pipelined pass of the vector ALU over `elements` accumulators (the op list is fused)."""
    return ceil_div(elements, lanes)

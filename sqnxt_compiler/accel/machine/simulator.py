"""The simulator's entry points: `simulate` (functional + timing) and `estimate` (timing only, for tuning)."""

from __future__ import annotations

import numpy as np

from .compiler import compile_layer
from .config import AccelConfig
from .functional import execute
from .isa import Program
from .layer import LayerSpec, Requant
from .report import Report, build_report
from .tiling import Tiling
from .timing import schedule


def simulate(program: Program, inputs: np.ndarray, weights: np.ndarray, bias: np.ndarray | None = None,
             requant: Requant | None = None, residual: np.ndarray | None = None) -> tuple[np.ndarray, Report]:
    """Run a compiled layer on data: int8 inputs (n, h, w, cin), int8 weights (cout, kh, kw, cin/groups),
    int32 bias (cout,) (default zeros). Returns the int8 output (n, out_h, out_w, cout) and the Report.
    A `requant` other than the program's recompiles the ALU immediates (timing is unaffected). Layers with
    `residual=True` also take the int8 residual (n, out_h, out_w, cout) their epilogue adds."""
    if requant is not None and requant != program.requant:
        program = compile_layer(program.layer, program.config, program.tiling, requant)
    if bias is None:
        bias = np.zeros(program.layer.cout, dtype=np.int32)
    output = execute(program, inputs, weights, bias, program.requant, residual)
    return output, build_report(program, schedule(program))


def estimate(layer: LayerSpec, config: AccelConfig, tiling: Tiling | None = None) -> Report:
    """Timing, traffic and energy without data: what a tuner calls for every candidate tiling."""
    program = compile_layer(layer, config, tiling)
    return build_report(program, schedule(program))

"""A VTA-style int8 accelerator: configuration, ISA, per-layer compiler and cycle/energy simulator.

    config = AccelConfig.load("accel-16x16")
    layer = LayerSpec.conv2d(cin=64, cout=64, hw=56, kernel=3)
    program = compile_layer(layer, config, default_tiling(layer, config, "ws"), Requant(shift=8, relu=True))
    output, report = simulate(program, x_int8, w_int8, bias_int32)
    fastest = min(tiling_space(layer, config), key=lambda t: estimate(layer, config, t).cycles)
"""

from .compiler import compile_layer
from .config import AccelConfig, EnergyTable, known_accelerators
from .isa import Program
from .layer import LayerSpec, Requant
from .reference import reference_layer
from .report import Report
from .simulator import estimate, simulate
from .planner import analytic_cycles, default_tiling
from .tiling import DATAFLOWS, Tiling, check_tiling, footprint, greedy_tiling, knob_candidates, tiling_space

__all__ = [
    "AccelConfig", "EnergyTable", "known_accelerators", "LayerSpec", "Requant", "Tiling", "DATAFLOWS",
    "default_tiling", "greedy_tiling", "analytic_cycles", "tiling_space", "knob_candidates", "check_tiling",
    "footprint", "compile_layer", "Program", "simulate", "estimate", "Report", "reference_layer",
]

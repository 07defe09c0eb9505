"""A VTA-style int8 accelerator: configuration, ISA, per-layer compiler and cycle/energy simulator.

    config = AccelConfig.load("accel-16x16")
    layer = LayerSpec.conv2d(cin=64, cout=64, hw=56, kernel=3)
    program = compile_layer(layer, config, default_tiling(layer, config, "ws"), Requant(shift=8, relu=True))
    output, report = simulate(program, x_int8, w_int8, bias_int32)
    fastest = min(tiling_space(layer, config), key=lambda t: estimate(layer, config, t).cycles)

Layers, each importing only those before it: `machine/` (the accelerator: config, ISA, compiler, timing,
functional and energy models), `int8/` (post-training quantization and the int8 executor of a QDQ model,
on the machine) and `study/` (the co-design study and the SCALE-Sim comparison). `runtime_functions` is
the TVM runtime's entry into the machine for compiled libraries.
"""

from .machine.compiler import compile_layer
from .machine.config import AccelConfig, EnergyTable, known_accelerators
from .machine.isa import Program
from .machine.layer import LayerSpec, Requant
from .machine.reference import reference_layer
from .machine.report import Report
from .machine.simulator import estimate, simulate
from .machine.planner import analytic_cycles, default_tiling
from .machine.tiling import DATAFLOWS, Tiling, check_tiling, footprint, greedy_tiling, knob_candidates, tiling_space

__all__ = [
    "AccelConfig", "EnergyTable", "known_accelerators", "LayerSpec", "Requant", "Tiling", "DATAFLOWS",
    "default_tiling", "greedy_tiling", "analytic_cycles", "tiling_space", "knob_candidates", "check_tiling",
    "footprint", "compile_layer", "Program", "simulate", "estimate", "Report", "reference_layer",
]

"""SCALE-Sim (PyPI `scalesim`, Georgia Tech SynergyLab) as an independent reference for compute cycles.

We drive SCALE-Sim's own operand-matrix and systolic-compute classes for one layer and read its
stall-free compute cycle count: the length of its OFMAP demand matrix, one row per array cycle.
Its memory model (double-buffered scratchpads) is not used: in scalesim 3.0.0 it fails under NumPy 2.x
(`int(max(list of 1-element arrays))` in `service_memory_requests`), and its cycles equal the demand
length when the interface bandwidth is "CALC" (sized so that it never stalls) anyway.
SCALE-Sim has no padding and no groups: we give it the padded input (trimmed to the rows the output
reads, see below) and one group's channels.
"""

from __future__ import annotations

import contextlib
import io

from ..machine.config import AccelConfig
from ..machine.layer import LayerSpec
from ..machine.planner import default_tiling
from ..machine.simulator import estimate
from ..machine.tiling import Tiling


def scalesim_available() -> tuple[bool, str]:
    try:
        import scalesim.compute.systolic_compute_ws  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means "cannot compare here"
        return False, f"scalesim is not importable ({type(err).__name__}: {err}); pip install -e '.[dev]'"
    return True, ""


def scalesim_compute_cycles(layer: LayerSpec, rows: int, cols: int, dataflow: str) -> int:
    """SCALE-Sim's compute cycles for `layer` (one image, one group) on a rows x cols array."""
    from scalesim.compute.operand_matrix import operand_matrix
    from scalesim.compute.systolic_compute_os import systolic_compute_os
    from scalesim.compute.systolic_compute_ws import systolic_compute_ws
    from scalesim.layout_utils import layouts
    from scalesim.scale_config import scale_config
    from scalesim.topology_utils import topologies

    config = scale_config()
    # run name, array, SRAM KiB (unused by the compute model), address offsets, dataflow, CALC bandwidth
    config.update_from_list(["sqnxt", rows, cols, 1024, 1024, 1024, 0, 10_000_000, 20_000_000, dataflow,
                              "CALC", [10], 1, 1, ""])
    config.force_valid()
    topology = topologies()
    # SCALE-Sim computes ofmap = ceil((H - R + s) / s), one more than a conv's floor((H - R) / s) + 1
    # when (H - R) is not a multiple of s: give it exactly the padded input rows our output reads.
    padded_h = (layer.out_h - 1) * layer.stride[0] + layer.kh
    padded_w = (layer.out_w - 1) * layer.stride[1] + layer.kw
    if layer.stride[0] != layer.stride[1]:
        raise ValueError("SCALE-Sim's conv topology takes one stride for both axes")
    topology.load_layer_params_from_list(layer.name, [layer.name, padded_h, padded_w, layer.kh, layer.kw,
                                                      layer.cin_per_group, layer.cout_per_group,
                                                      layer.stride[0], layer.stride[1], 1, 1])
    topology.topo_calc_hyperparams()
    operands = operand_matrix()
    compute = systolic_compute_ws() if dataflow == "ws" else systolic_compute_os()
    with contextlib.redirect_stdout(io.StringIO()):
        operands.set_params(layer_id=0, config_obj=config, topoutil_obj=topology, layoututil_obj=layouts())
        _, ifmap = operands.get_ifmap_matrix()
        _, filters = operands.get_filter_matrix()
        _, ofmap = operands.get_ofmap_matrix()
        compute.set_params(config_obj=config, ifmap_op_mat=ifmap, filter_op_mat=filters, ofmap_op_mat=ofmap)
        _, _, ofmap_demand = compute.get_demand_matrices()
    return int(ofmap_demand.shape[0])


def compare_layer(layer: LayerSpec, config: AccelConfig, dataflow: str, tiling: Tiling | None = None) -> dict:
    """Our array (GEMM) cycles per image and group vs SCALE-Sim's compute cycles, same array and dataflow.
    The tiling defaults to the one with the fewest array cycles: SCALE-Sim's compute model has no buffer
    limit, so this is the like-for-like mapping (the latency-optimal tiling may trade array cycles for
    overlap; `total` reports that layer's latency)."""
    tiling = tiling or default_tiling(layer, config, dataflow, objective="gemm")
    report = estimate(layer, config, tiling)
    ours = report.gemm_cycles // (layer.n * layer.groups)
    theirs = scalesim_compute_cycles(layer, config.rows, config.cols, dataflow)
    return {"layer": layer.describe(), "array": f"{config.rows}x{config.cols}", "dataflow": dataflow,
            "ours": ours, "scalesim": theirs, "ratio": ours / theirs, "bound": report.bound,
            "total": report.cycles // (layer.n * layer.groups), "tiling": tiling}

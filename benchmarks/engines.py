"""The engines the benchmarks time, each built from the same ONNX model and returning its first output: the
peers (ONNX Runtime, and OpenVINO when installed: `pip install -e .[bench]`), stock TVM and sqnxt-compiler;
and the line that says which target our library is built for and which CPU it is measured on.

Every engine runs on the same number of threads, the cores this process may use (`engine_threads`): TVM's
pool through TVM_NUM_THREADS (set by `latency.restart_with_thread_settings`), ONNX Runtime through
intra_op_num_threads, OpenVINO through INFERENCE_NUM_THREADS. OpenVINO is compiled for fp32 inference
(INFERENCE_PRECISION_HINT f32: no bf16 on CPUs that have it) with the LATENCY performance hint, and its
output is checked against ONNX Runtime's before it is timed (`peer_runners`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

ORT, OPENVINO = "ONNX Runtime", "OpenVINO"
PEERS = (ORT, OPENVINO)
# OpenVINO vs ONNX Runtime, max |diff| / max |ORT| on the network's output: above this OpenVINO is not timed
PEER_TOLERANCE = 1e-3
# oneDNN's cap on the instruction set, which OpenVINO's CPU plugin honours: AVX2 on an AVX-512 machine times
# OpenVINO's AVX2 kernels beside an x86-avx2 build (benchmarks/avx2_peers.py sets it before openvino loads)
ONEDNN_ISA_LIMIT = "ONEDNN_MAX_CPU_ISA"


def model_input(proto, seed: int = 0) -> np.ndarray:
    """A seeded standard-normal batch shaped like the model's (static) first input, in a buffer aligned as TVM's
    tensors are, so every engine reads it in place (ONNX Runtime and OpenVINO read any buffer in place)."""
    from sqnxt_compiler.runtime import aligned_array

    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    return aligned_array(np.random.default_rng(seed).standard_normal(dims).astype("float32"))


def engine_threads() -> int:
    """The cores this process may use: every engine's thread count."""
    return len(os.sched_getaffinity(0))


def ort_runner(proto, data: np.ndarray, spin: bool = True) -> Callable[[], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = engine_threads()
    if not spin:  # the --no-spin protocol (benchmarks/latency.py)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: data})[0]


def openvino_runner(proto, data: np.ndarray) -> Callable[[], np.ndarray] | None:
    """OpenVINO's CPU plugin on the same ONNX model, or None when openvino is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(proto.SerializeToString()), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": engine_threads()})
    request = compiled.create_infer_request()
    return lambda: request.infer({0: data}, share_inputs=True)[0]


def openvino_note() -> str | None:
    """One line saying that the OpenVINO column is skipped, or None when openvino is installed."""
    from importlib import metadata

    try:
        import openvino  # noqa: F401
    except ImportError:
        return "OpenVINO: not installed (`pip install -e .[bench]`), its rows are skipped."
    isa = os.environ.get(ONEDNN_ISA_LIMIT)
    limited = f", kernels limited to {isa} ({ONEDNN_ISA_LIMIT})" if isa else ""
    return (f"OpenVINO {metadata.version('openvino')}, CPU plugin, fp32, LATENCY hint, {engine_threads()} threads"
            f"{limited}.")


def peer_runners(proto, data: np.ndarray, spin: bool, notes: list[str]) -> dict[str, Callable[[], np.ndarray]]:
    """ONNX Runtime first (the reference of "vs ORT"), then OpenVINO if installed and its output matches
    ONNX Runtime's; the outcome of that check is appended to `notes`."""
    from sqnxt_compiler.verify import relative_error

    runners = {ORT: ort_runner(proto, data, spin)}
    openvino = openvino_runner(proto, data)
    if openvino is not None:
        error = relative_error(openvino(), runners[ORT]())
        agrees = error <= PEER_TOLERANCE
        notes.append(f"{proto.graph.name} batch {data.shape[0]}: OpenVINO vs ONNX Runtime max relative error "
                     f"{error:.1e} ({'<=' if agrees else '>'} {PEER_TOLERANCE:g}"
                     f"{'' if agrees else ': OpenVINO not timed'})")
        if agrees:
            runners[OPENVINO] = openvino
    return runners


def _vm_runner(executable, data: np.ndarray) -> Callable[[], object]:
    import tvm
    from tvm import relax

    device = tvm.cpu()
    vm = relax.VirtualMachine(executable, device)
    arg = tvm.runtime.tensor(data, device)
    return lambda: vm["main"](arg)


def stock_tvm_runner(proto, data: np.ndarray, spec) -> Callable[[], object]:
    """`tvm.compile` untuned on the same Relax import, for the same LLVM target as ours."""
    import tvm

    from sqnxt_compiler.frontend import import_to_relax, resolve_inputs

    mod = import_to_relax(proto, resolve_inputs(proto))
    return _vm_runner(tvm.compile(mod, spec.tvm_target()), data)


def ours_runner(proto, data: np.ndarray, workdir: Path, spec, tuning_log: Path | None = None) -> Callable[[], object]:
    import sqnxt_compiler

    # one file per model and batch: a reused path would hand back the already-loaded library
    workdir.mkdir(parents=True, exist_ok=True)
    result = sqnxt_compiler.compile(proto, target=spec, output=workdir / f"{proto.graph.name}_b{data.shape[0]}.so",
                                    tuning_log=tuning_log)
    model = sqnxt_compiler.load(result.library)
    return lambda: model.run(data)


def _first_cpu_info() -> dict[str, str]:
    """The first CPU's /proc/cpuinfo entries (empty where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def cpu_flags() -> set[str]:
    """This machine's CPU feature flags as /proc/cpuinfo lists them."""
    return set(_first_cpu_info().get("flags", "").split())


def host_cpu() -> tuple[str, bool]:
    """(this machine's CPU model as /proc/cpuinfo names it, whether it has AVX-512 F)."""
    return _first_cpu_info().get("model name", "unknown CPU"), "avx512f" in cpu_flags()


def load_target_for_host(name: str):
    """The TargetSpec `name`; exits with a message if its code needs AVX-512 and this CPU has none."""
    from sqnxt_compiler.target import load_target

    spec = load_target(name)
    if "avx512" in cpu_class(spec) and not host_cpu()[1]:
        raise SystemExit(f"target '{name}' ({cpu_class(spec)}) needs AVX-512, which this CPU "
                         f"({host_cpu()[0]}) does not have")
    return spec


def cpu_class(spec) -> str:
    return getattr(spec, "cpu_class", "") or spec.name


def describe_target(spec) -> str:
    """Which target our library (and stock TVM) is built for, and which CPU the table was measured on."""
    model, avx512f = host_cpu()
    return (f"ours and stock TVM built for target {spec.name} (CPU class {cpu_class(spec)}, LLVM mcpu "
            f"{spec.llvm.get('mcpu', '-')}); measured on {model}, avx512f {'yes' if avx512f else 'no'}, "
            f"{engine_threads()} cores")

"""`compile()`: ONNX in, a deployable shared library (plus a JSON sidecar) out."""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ._version import __version__
from .accel.machine.config import AccelConfig
from .errors import SqnxtError
from .frontend import (ModelSource, TensorInfo, import_to_relax, load_onnx, output_infos, resolve_inputs,
                       with_input_shape)
from .outputs import atomic_write_files, check_output_dir, check_output_file, is_no_space
from .pipeline import CompileContext, run_pipeline
from .runtime import recommended_env
from .target import TargetSpec, load_target
from .toolchain import library_compiler


@dataclass
class CompileResult:
    library: Path
    sidecar: Path
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    target: TargetSpec
    notes: dict[str, list[str]] = field(default_factory=dict)
    accel: dict | None = None       # accelerator targets: what the sidecar's "accel" entry says
    quantized: onnx.ModelProto | None = None   # accelerator targets: the QDQ int8 model that was compiled


def sidecar_path(library: str | os.PathLike) -> Path:
    """`model.so` -> `model.so.json`: the metadata file that travels with the library."""
    return Path(f"{library}.json")


def _versions() -> dict[str, str]:
    import tvm

    return {"sqnxt_compiler": __version__, "tvm": tvm.__version__, "onnx": onnx.__version__,
            "python": platform.python_version()}


def compile(  # noqa: A001 - the package's verb, as in tvm.compile
    model: ModelSource,
    target: str | TargetSpec = "host",
    output: str | os.PathLike | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    tuning_log: str | os.PathLike | None = None,
    dump_ir: str | os.PathLike | None = None,
    calibration: str | os.PathLike | np.ndarray | None = None,
    dataflow: str = "ws",
) -> CompileResult:
    """Compile an ONNX model (path or ModelProto) for `target` (a name, a .toml path or a TargetSpec)
    into `output` (default: `<model>_<target>.so`). Returns where the library and its sidecar went.

    For an accelerator target (kind "accel") the model is first quantized to int8 (ONNX Runtime, QDQ),
    calibrated on `calibration` (a .npy of images stacked along the batch axis, or an array; default: a
    few synthetic inputs, noted in the result); its conv/dense layers run on the simulated accelerator
    (`dataflow` "ws" or "os"; with `tuning_log`, each layer the log has tuned uses its best logged tiling),
    the rest on this host's CPU."""
    spec = target if isinstance(target, TargetSpec) else load_target(target)
    proto = load_onnx(model)
    library = check_output_file(Path(output) if output else Path(f"{proto.graph.name or 'model'}_{spec.name}.so"),
                                "output library")
    if dump_ir:
        check_output_dir(dump_ir, "--dump-ir folder")
    inputs = resolve_inputs(proto, input_shapes)
    log = Path(tuning_log) if tuning_log else None
    if log is not None and not log.is_dir():
        raise SqnxtError(f"tuning log '{log}' is not a directory (expected a folder written by sqnxt-tune)")
    config = AccelConfig.load(spec.path) if spec.kind == "accel" else None
    if config is None and log is not None:
        from .records.accel_log import LOG_FILE
        from .records.database import WORKLOADS

        if (log / LOG_FILE).is_file() and not (log / WORKLOADS).is_file():
            raise SqnxtError(f"tuning log '{log}' holds accelerator tilings ({LOG_FILE}), not CPU schedules; "
                             "use it with an accelerator target")
    tuned = None
    if config is not None and log is not None:
        from .records.accel_log import TunedTilings

        tuned = TunedTilings(log, config)   # the log tunes the accelerator's layers, not the host's kernels
    accel = None
    if spec.kind == "accel":
        host = load_target("host")
        relax_source, accel, notes = _quantize_for_accel(proto, inputs, spec, calibration, dataflow)
    else:
        if calibration is not None:
            raise SqnxtError(f"--calibrate applies to accelerator targets only; '{spec.name}' runs in float32")
        host, relax_source, notes = spec, proto, {}
    fcompile = library_compiler(host)  # fail on a missing cross toolchain before the long build
    ctx = CompileContext(host, tuning_log=log if config is None else None, dump_dir=Path(dump_ir) if dump_ir else None,
                         notes=notes, accel=config, dataflow=dataflow, accel_tilings=tuned)
    executable = _build(run_pipeline(import_to_relax(relax_source, inputs), ctx), host)
    outputs = output_infos(proto, inputs)
    meta = {
        "model": proto.graph.name,
        "model_sha256": hashlib.sha256(proto.SerializeToString()).hexdigest(),
        "inputs": [i.as_dict() for i in inputs],
        "outputs": [o.as_dict() for o in outputs],
        "target": spec.summary(),
        "tuning_log": str(log) if log else None,
        "versions": _versions(),
        # plain tvm.runtime.load_module starts half the logical CPUs on x86 (it assumes SMT); load() sets these
        "runtime_env": recommended_env(host.cpu.get("cores")),
    }
    if accel is not None:
        accel.update(layers=len(ctx.accel_programs),
                     instructions=sum(len(program) for _, program in ctx.accel_programs),
                     tuned_layers=len(tuned.applied) if tuned is not None else 0)
        meta.update(host_target=host.summary(), accel=accel)
    sidecar = sidecar_path(library)
    _write_library(executable, fcompile, library, meta)
    return CompileResult(library, sidecar, inputs, outputs, spec, ctx.notes, accel,
                         relax_source if accel is not None else None)


def _write_library(executable, fcompile, library: Path, meta: dict) -> None:
    """The library and its sidecar, both or neither: each through a temporary file, renamed once both are
    complete. A full disk or a wrong path is a one-line error (with the library's size on a full disk)."""
    objects: list[int] = []   # bytes of the object files linked: about the library's size

    def export(tmp: str) -> None:
        try:
            executable.export_library(tmp, fcompile=_measuring(fcompile, objects))
        except (RuntimeError, SqnxtError) as err:   # the linker's failure, e.g. "No space left on device"
            if is_no_space(err) or _too_full(library, objects):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp) from None
            raise

    atomic_write_files([(library, export, "the library", lambda: sum(objects) or None),
                        (sidecar_path(library), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"),
                         "the library's sidecar")])


def _measuring(fcompile, sizes: list[int]):
    """`fcompile` (None: TVM's default linker) recording the total size of the objects it links into `sizes`."""
    from tvm.support import cc

    link = fcompile or cc.create_shared

    @functools.wraps(link)
    def measured(output, objects, *args, **kwargs):
        files = [objects] if isinstance(objects, str) else list(objects)
        sizes.append(sum(os.path.getsize(f) for f in files if os.path.isfile(f)))
        return link(output, objects, *args, **kwargs)

    return measured


def _too_full(library: Path, objects: list[int]) -> bool:
    """The link failed and the output's device has less room than the objects it was linking."""
    try:
        return bool(objects) and shutil.disk_usage(library.resolve().parent).free < sum(objects)
    except OSError:
        return False


def _quantize_for_accel(proto: onnx.ModelProto, inputs: list[TensorInfo], spec: TargetSpec,
                        calibration: str | os.PathLike | np.ndarray | None,
                        dataflow: str) -> tuple[onnx.ModelProto, dict, dict[str, list[str]]]:
    """The QDQ int8 model the accelerator pipeline imports, the sidecar's "accel" entry and a note."""
    from .accel.int8.quantize import (CALIBRATION_SEED, SYNTHETIC_CALIBRATION, load_calibration, quantize_qdq,
                                      synthetic_inputs)
    from .accel.runtime_functions import RUN_LAYER
    from .models.digits import DATASET, calibration_images, model_dataset

    if dataflow not in ("ws", "os"):
        raise SqnxtError(f"dataflow must be 'ws' or 'os', not '{dataflow}'")
    AccelConfig.load(spec.path)   # a broken accelerator file fails before the quantization
    if len(inputs) != 1:
        raise SqnxtError(f"accelerator targets take models with one input; '{proto.graph.name}' has {len(inputs)}")
    fixed = with_input_shape(proto, inputs[0])
    if calibration is None and model_dataset(proto) == DATASET:   # a trained model: its own training images
        calibration = calibration_images(resolution=inputs[0].shape[-1], batch=inputs[0].shape[0])
        source = f"{len(calibration)} training images of the digits split"
        samples, note = load_calibration(calibration, fixed), f"calibrated on {source}"
    elif calibration is None:
        samples = synthetic_inputs(fixed, SYNTHETIC_CALIBRATION, seed=CALIBRATION_SEED)
        source = f"{SYNTHETIC_CALIBRATION} synthetic inputs"
        note = (f"calibrated on {source} (no --calibrate given): int8 scales fit noise, not photos; pass "
                "--calibrate images.npy for real accuracy")
    else:
        samples = load_calibration(calibration, fixed)
        source = f"{len(samples) * inputs[0].shape[0]} images from " + (
            "an array" if isinstance(calibration, np.ndarray) else f"'{calibration}'")
        note = f"calibrated on {source}"
    qdq = quantize_qdq(fixed, samples)
    entry = {"config": spec.name, "dataflow": dataflow, "calibration": source, "runtime_function": RUN_LAYER}
    return qdq, entry, {"quantize": [note]}


def _build(mod, spec: TargetSpec):
    import tvm

    from .stack_buffers import tir_pipeline

    try:
        return tvm.compile(mod, spec.tvm_target(), relax_pipeline=None, tir_pipeline=tir_pipeline(spec))
    except Exception as err:  # noqa: BLE001 - TVM 0.27 maps C++ errors to several Python types
        raise SqnxtError(f"TVM failed to build for '{spec.name}': {str(err).strip().splitlines()[-1]}") from None

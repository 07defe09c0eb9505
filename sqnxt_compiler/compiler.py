"""`compile()`: ONNX in, a deployable shared library (plus a JSON sidecar) out."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from . import __version__
from .errors import SqnxtError
from .frontend import ModelSource, TensorInfo, import_to_relax, load_onnx, output_infos, resolve_inputs
from .pipeline import CompileContext, run_pipeline
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


def sidecar_path(library: str | os.PathLike) -> Path:
    """`model.so` -> `model.so.json`: the metadata file that travels with the library."""
    return Path(f"{library}.json")


def _versions() -> dict[str, str]:
    import tvm

    return {"sqnxt_compiler": __version__, "tvm": tvm.__version__, "onnx": onnx.__version__,
            "python": platform.python_version()}


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder and rename: never a partial file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def compile(  # noqa: A001 - the package's verb, as in tvm.compile
    model: ModelSource,
    target: str | TargetSpec = "host",
    output: str | os.PathLike | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    tuning_log: str | os.PathLike | None = None,
    dump_ir: str | os.PathLike | None = None,
) -> CompileResult:
    """Compile an ONNX model (path or ModelProto) for `target` (a name, a .toml path or a TargetSpec)
    into `output` (default: `<model>_<target>.so`). Returns where the library and its sidecar went."""
    spec = target if isinstance(target, TargetSpec) else load_target(target)
    if spec.kind != "cpu":
        raise SqnxtError(f"target '{spec.name}' is a {spec.kind} target; whole-network compilation for it "
                         "is not available yet (use `sqnxt-sim` for per-layer accelerator figures)")
    proto = load_onnx(model)
    inputs = resolve_inputs(proto, input_shapes)
    fcompile = library_compiler(spec)  # fail on a missing cross toolchain before the long build
    log = Path(tuning_log) if tuning_log else None
    if log is not None and not log.is_dir():
        raise SqnxtError(f"tuning log '{log}' is not a directory (expected a folder written by sqnxt-tune)")
    ctx = CompileContext(spec, tuning_log=log, dump_dir=Path(dump_ir) if dump_ir else None)
    executable = _build(run_pipeline(import_to_relax(proto, inputs), ctx), spec)
    library = Path(output) if output else Path(f"{proto.graph.name or 'model'}_{spec.name}.so")
    _atomic_write(library, lambda tmp: executable.export_library(tmp, fcompile=fcompile))
    outputs = output_infos(proto, inputs)
    meta = {
        "model": proto.graph.name,
        "model_sha256": hashlib.sha256(proto.SerializeToString()).hexdigest(),
        "inputs": [i.as_dict() for i in inputs],
        "outputs": [o.as_dict() for o in outputs],
        "target": spec.summary(),
        "tuning_log": str(log) if log else None,
        "versions": _versions(),
    }
    sidecar = sidecar_path(library)
    _atomic_write(sidecar, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return CompileResult(library, sidecar, inputs, outputs, spec, ctx.notes)


def _build(mod, spec: TargetSpec):
    import tvm

    try:
        return tvm.compile(mod, spec.tvm_target(), relax_pipeline=None)
    except Exception as err:  # noqa: BLE001 - TVM 0.27 maps C++ errors to several Python types
        raise SqnxtError(f"TVM failed to build for '{spec.name}': {str(err).strip().splitlines()[-1]}") from None

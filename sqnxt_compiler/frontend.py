"""Load and validate an ONNX model, then import it into Relax with weights embedded as constants."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from .errors import SqnxtError

MIN_OPSET, MAX_OPSET = 9, 18
ModelSource = str | os.PathLike | onnx.ModelProto


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def load_onnx(source: ModelSource) -> onnx.ModelProto:
    """Read and check an ONNX file (or pass a ModelProto through the same checks)."""
    if isinstance(source, onnx.ModelProto):
        model, label = source, source.graph.name or "<model>"
    else:
        path = Path(source)
        label = str(path)
        if path.is_dir():
            raise SqnxtError(f"model file '{path}' is a folder; give an .onnx file")
        if not path.is_file():
            raise SqnxtError(f"model file '{path}' does not exist")
        try:
            model = onnx.load(str(path))
        except (DecodeError, RuntimeError, ValueError, OSError) as err:
            raise SqnxtError(f"'{path}' is not a valid ONNX file (truncated or corrupt?): "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if not model.graph.node:
        raise SqnxtError(f"'{label}' is not a valid ONNX model: its graph has no nodes")
    model = with_inferred_output_types(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise SqnxtError(f"'{label}' fails the ONNX checker: {str(err).splitlines()[0]}") from None
    _check_opset(model, label)
    _check_operators(model, label)
    return model


def _lacks_type(value: onnx.ValueInfoProto) -> bool:
    """No type at all, or a tensor type without a shape: what the checker refuses and ONNX Runtime accepts."""
    kind = value.type.WhichOneof("value")
    return kind is None or (kind == "tensor_type" and not value.type.tensor_type.HasField("shape"))


def with_inferred_output_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, or a copy whose graph outputs lacking a type or shape have the ones ONNX shape inference finds
    (an exporter may leave them out: the ONNX checker then refuses the model, ONNX Runtime runs it).
    Intermediate value_info entries without a type are dropped (they are optional hints)."""
    if not any(_lacks_type(v) for v in [*model.graph.output, *model.graph.value_info]):
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    kept = [v for v in fixed.graph.value_info if not _lacks_type(v)]
    del fixed.graph.value_info[:]
    fixed.graph.value_info.extend(kept)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is a best effort; the checker reports what stays missing
        return fixed
    found = {v.name: v for v in [*inferred.graph.output, *inferred.graph.value_info]}
    for value in fixed.graph.output:
        if _lacks_type(value) and value.name in found and not _lacks_type(found[value.name]):
            value.type.CopyFrom(found[value.name].type)
    return fixed


def _check_opset(model: onnx.ModelProto, label: str) -> None:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not MIN_OPSET <= opset <= MAX_OPSET:
        raise SqnxtError(f"'{label}' uses ONNX opset {opset}; supported opsets are {MIN_OPSET}-{MAX_OPSET} "
                         f"(convert it with onnx.version_converter.convert_version(model, {MAX_OPSET}))")


def supported_operators() -> list[str]:
    """ONNX operators the importer converts (TVM's Relax ONNX frontend)."""
    from tvm.relax.frontend.onnx import onnx_frontend

    return sorted(onnx_frontend._get_convert_map())


def _check_operators(model: onnx.ModelProto, label: str) -> None:
    known = set(supported_operators())
    unknown: dict[str, str] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in known:
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            unknown.setdefault(op, node.name or node.output[0])
    if unknown:
        listed = ", ".join(f"{op} (node '{node}')" for op, node in unknown.items())
        raise SqnxtError(f"'{label}' uses unsupported ONNX operator(s): {listed}; "
                         "`sqnxt-compile --list-ops` shows the supported ones")


def _declared_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    weights = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights]


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse `name=1,3,224,224` strings (the --input-shape flag)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        name, _, dims = spec.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not name or not shape or any(d <= 0 for d in shape):
            raise SqnxtError(f"bad --input-shape '{spec}'; expected NAME=D0,D1,... with positive integers, "
                             "e.g. data=1,3,224,224")
        shapes[name] = shape
    return shapes


def resolve_inputs(model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]] | None = None) -> list[TensorInfo]:
    """Static shapes for every graph input: the model's own, or `overrides`; a dynamic dim is an error."""
    overrides = dict(overrides or {})
    inputs = []
    for value in _declared_inputs(model):
        tensor_type = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                for d in tensor_type.shape.dim]
        if value.name in overrides:
            shape = overrides.pop(value.name)
            if len(shape) != len(dims):
                raise SqnxtError(f"--input-shape {value.name} has {len(shape)} dims but the model's input has "
                                 f"{len(dims)} ({_format(dims)})")
        else:
            dynamic = [str(d) for d in dims if not isinstance(d, int)]
            if dynamic:
                example = ",".join(str(d) if isinstance(d, int) else "1" for d in dims)
                raise SqnxtError(f"input '{value.name}' has a dynamic shape ({_format(dims)}: "
                                 f"{', '.join(dynamic)} unknown); fix it with --input-shape {value.name}={example}")
            shape = tuple(dims)
        inputs.append(TensorInfo(value.name, shape, dtype))
    if overrides:
        raise SqnxtError(f"--input-shape names unknown input(s) {', '.join(overrides)}; the model's inputs are "
                         f"{', '.join(i.name for i in inputs)}")
    return inputs


def _format(dims: list) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def import_to_relax(model: onnx.ModelProto, inputs: list[TensorInfo]) -> "tvm.IRModule":  # noqa: F821
    """Relax module with weights as constants (so the exported library is self-contained)."""
    from tvm.relax.frontend.onnx import from_onnx

    from .capture import quietly

    try:   # quietly: TVM prints its own lines around a conversion error (SQNXT_DEBUG=1 shows them)
        return quietly(from_onnx, model, shape_dict={i.name: list(i.shape) for i in inputs},
                       dtype_dict={i.name: i.dtype for i in inputs}, keep_params_in_input=False)
    except Exception as err:  # the importer raises assorted types; say which model and why, in one line
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise SqnxtError(f"importing '{model.graph.name}' into TVM failed: {first}") from None


def output_infos(model: onnx.ModelProto, inputs: list[TensorInfo]) -> list[TensorInfo]:
    """Output names/shapes by ONNX shape inference on the fixed input shapes."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    by_name = {i.name: i for i in inputs}
    for value in fixed.graph.input:
        if value.name in by_name:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, by_name[value.name].shape):
                dim.Clear()
                dim.dim_value = size
    del fixed.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=False)
    outs = []
    for value in inferred.graph.output:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        outs.append(TensorInfo(value.name, shape, onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name))
    return outs


def with_input_shape(proto: onnx.ModelProto, info: TensorInfo) -> onnx.ModelProto:
    """A copy whose first input has the resolved static shape (the quantizer and calibration read it)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    value = next(v for v in fixed.graph.input if v.name == info.name)
    for dim, size in zip(value.type.tensor_type.shape.dim, info.shape):
        dim.Clear()
        dim.dim_value = size
    return fixed

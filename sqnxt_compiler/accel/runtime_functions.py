"""The TVM runtime side of accelerator layers: `sqnxt.accel.run_layer`, a global function the compiled library calls.

A library compiled for an accelerator target (`sqnxt-compile --target accel-16x16`) keeps every conv/dense
layer as `R.call_dps_packed("sqnxt.accel.run_layer", x_nhwc_int8, weights, bias, program, out)`: the
layer's int8 OHWI weights, int32 bias and its compiled instruction stream (`encode_program`, a uint8
constant) live in the library; the function runs that stream on the simulator. The stock TVM runtime loads
such a library (the call is resolved by name at run time); `sqnxt_compiler.load` registers the function
first. Only numpy and the simulator are imported here (no TVM compiler), as on a board.

The instruction stream is a pickle of the `Program` behind a format tag: the library is native code, so a
pickle adds no new trust boundary, and the tag turns a library from an incompatible version into a clear
error instead of a confusing one.
"""

from __future__ import annotations

import hashlib
import io
import pickle

import numpy as np

from ..errors import SqnxtError
from .machine.isa import Program
from .machine.report import Report
from .machine.simulator import simulate

RUN_LAYER = "sqnxt.accel.run_layer"
_FORMAT = b"sqnxt-accel-program/1\n"

_programs: dict[bytes, Program] = {}   # decoded once per distinct stream (keyed by its digest)
# A pickle names classes by module: libraries compiled before accel/ had subpackages name these.
_MOVED = {f"sqnxt_compiler.accel.{name}": f"sqnxt_compiler.accel.machine.{name}"
          for name in ("config", "isa", "layer", "tiling")}
reports: list[Report] = []              # one per layer call, in call order; cleared by `take_reports`


def encode_program(program: Program) -> np.ndarray:
    """The program as a uint8 array, for a constant in the compiled module."""
    return np.frombuffer(_FORMAT + pickle.dumps(program, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        return super().find_class(_MOVED.get(module, module), name)


def decode_program(blob: bytes) -> Program:
    key = hashlib.sha1(blob).digest()
    program = _programs.get(key)
    if program is None:
        if not blob.startswith(_FORMAT):
            raise SqnxtError("the accelerator program in this library has an unknown format; recompile the "
                             "model with this version of sqnxt-compiler")
        try:
            program = _Unpickler(io.BytesIO(blob[len(_FORMAT):])).load()
        except Exception as err:  # noqa: BLE001 - an older/newer package layout; say so in one line
            raise SqnxtError(f"cannot read the accelerator program in this library ({type(err).__name__}: "
                             f"{err}); recompile the model with this version of sqnxt-compiler") from None
        _programs[key] = program
    return program


def run_layer(x, weights, bias, program, out) -> None:
    """One layer on the simulator (destination-passing style: the result goes into `out`). x and out are
    int8 NHWC (dense: n x 1 x 1 x features), weights int8 OHWI, bias int32, program from `encode_program`."""
    prog = decode_program(program.numpy().tobytes())
    y, report = simulate(prog, x.numpy(), weights.numpy(), bias.numpy())
    out.copyfrom(np.ascontiguousarray(y))
    reports.append(report)


def take_reports() -> list[Report]:
    """The reports of the layer calls since the last call (the layers of one run), and forget them."""
    taken = list(reports)
    reports.clear()
    return taken


def register() -> None:
    """Register `sqnxt.accel.run_layer` with the TVM runtime (idempotent)."""
    import tvm

    tvm.register_global_func(RUN_LAYER, run_layer, override=True)

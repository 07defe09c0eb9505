"""Load a compiled library with the stock TVM runtime and run it (no compiler imports: works on boards)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import SqnxtError

TENSOR_ALIGNMENT = 64  # bytes: the data alignment TVM's runtime allocates with and its kernels assume


@dataclass
class LoadedModel:
    """A compiled model ready to run: `run(*inputs)` returns a list of numpy outputs."""

    path: Path
    meta: dict
    _vm: object
    _device: object
    accel_reports: list = field(default_factory=list)   # accelerator libraries: one Report per layer, last run
    # One device tensor per input, reused by every run that copies its input (not `_readable_in_place`): a fresh
    # tensor per run costs an allocation and first-touch page faults. Like the VM itself, a model is therefore not meant
    # to be run from two threads at once.
    _input_tensors: list = field(default_factory=list, repr=False)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(i["shape"]) for i in self.meta.get("inputs", [])]

    def _to_device(self, arrays: tuple[np.ndarray, ...]) -> list:
        import tvm

        expected = self.meta.get("inputs")
        if expected is not None:
            if len(arrays) != len(expected):
                raise SqnxtError(f"{self.path.name} takes {len(expected)} input(s), got {len(arrays)}")
            for array, info in zip(arrays, expected):
                if tuple(array.shape) != tuple(info["shape"]):
                    raise SqnxtError(f"input '{info['name']}' must have shape {tuple(info['shape'])}, "
                                     f"got {tuple(array.shape)}")
            arrays = tuple(np.ascontiguousarray(a, dtype=i["dtype"]) for a, i in zip(arrays, expected))
        else:
            arrays = tuple(np.ascontiguousarray(a) for a in arrays)
        tensors = self._input_tensors
        if len(tensors) != len(arrays) or any(tuple(t.shape) != a.shape or str(t.dtype) != str(a.dtype)
                                              for t, a in zip(tensors, arrays)):
            tensors[:] = [tvm.runtime.empty(a.shape, str(a.dtype), self._device) for a in arrays]
        args = []
        for tensor, array in zip(tensors, arrays):
            if not _in_this_process(tensor):  # a board's tensor, over RPC
                tensor.copyfrom(array)
            elif _readable_in_place(array):
                # like ORT: no copy. A copy also leaves the input dirty in this core's cache, and the other
                # cores' parts of the first kernel then wait on those lines (1.0-SqNxt-23: copy 23 us, run +97 us)
                tensor = tvm.runtime.from_dlpack(array)
            else:
                np.copyto(np.from_dlpack(tensor), array)  # a plain memcpy: copyfrom stages through a temporary
            args.append(tensor)
        return args

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        args = self._to_device(inputs)
        functions = _accel_functions()
        if functions is None:   # never registered in this process: no accelerator layer can run
            return _flatten(self._vm["main"](*args))
        functions.take_reports()   # drop what another library's or an interrupted run left behind
        result = _flatten(_call_accel(self._vm["main"], args))
        self.accel_reports = functions.take_reports()
        return result

    def accel_summary(self) -> str | None:
        """Simulated totals of the last run's accelerator layers (None for CPU-only libraries)."""
        reports = self.accel_reports
        if not reports:
            return None
        cycles, energy = sum(r.cycles for r in reports), sum(r.total_energy_pj for r in reports)
        macs, clock = sum(r.macs for r in reports), reports[0].clock_mhz
        return (f"accelerator ({reports[0].config}, simulated): {len(reports)} layers, {cycles:,} cycles = "
                f"{cycles / clock / 1e3:.3f} ms at {clock:g} MHz, {macs / 1e6:.1f}M MACs, "
                f"{energy / 1e6:,.1f} uJ (layers back to back, host part not included)")

    def benchmark(self, *inputs: np.ndarray, repeat: int = 20, warmup: int = 3) -> list[float]:
        """Per-run latencies in seconds (the caller takes the median)."""
        args = self._to_device(inputs)
        main = self._vm["main"]
        functions = _accel_functions()
        for _ in range(warmup):
            main(*args)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            main(*args)
            times.append(time.perf_counter() - start)
        if functions is not None:
            functions.take_reports()   # timing runs are not the run `accel_reports` describes
        return times


def _readable_in_place(array: np.ndarray) -> bool:
    """Whether the kernels can read `array` where it is: C-contiguous, in a buffer aligned as TVM's tensors are
    (which `tvm.runtime.from_dlpack` checks), and writeable (DLPack exports no read-only arrays)."""
    return (array.flags.c_contiguous and array.flags.writeable
            and array.ctypes.data % TENSOR_ALIGNMENT == 0)


def aligned_array(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `array` in a buffer aligned as TVM's tensors are: `LoadedModel.run` reads such an
    input in place instead of copying it into the library's own input tensor."""
    storage = np.empty(array.nbytes + TENSOR_ALIGNMENT, np.uint8)
    start = -storage.ctypes.data % TENSOR_ALIGNMENT
    aligned = storage[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    aligned[...] = array
    return aligned


def _in_this_process(tensor) -> bool:
    return int(tensor.device.dlpack_device_type()) == 1  # kDLCPU; over RPC the type carries the session's mask


def _flatten(result) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        # ~0.6 us for 1000 floats; .numpy() took 6-35 us
        return [np.from_dlpack(result).copy() if _in_this_process(result) else result.numpy()]
    return [array for item in result for array in _flatten(item)]


def _accel_functions():
    """The accelerator's runtime functions module if this process registered them, else None."""
    return sys.modules.get("sqnxt_compiler.accel.runtime_functions")


def _call_accel(function, args):
    """Run a function that may call accelerator layers; their errors come back through TVM: one line."""
    try:
        return function(*args)
    except SqnxtError:
        raise
    except Exception as err:  # noqa: BLE001 - TVM re-raises the packed function's error as its own type
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        raise SqnxtError(f"running the model failed: {lines[-1] if lines else type(err).__name__}") from None


def read_sidecar(library: str | os.PathLike) -> dict:
    path = Path(f"{library}.json")
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise SqnxtError(f"metadata file '{path}' is corrupt; recompile the model or delete it") from None


def use_all_cores(cores: int | None = None) -> None:
    """Give TVM's runtime thread pool every core this process may use, unpinned, unless the user chose.

    Left alone, TVM assumes hyper-threading on x86 and starts cores/2 threads (one on a 2-vCPU machine),
    pinned to cores (a pinned worker whose core is busy stalls every parallel loop). The pool reads these variables when it is first used."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for name, value in recommended_env(cores or available).items():
        os.environ.setdefault(name, value)


def recommended_env(cores: int | None) -> dict[str, str]:
    """The environment a library compiled for `cores` cores wants from the TVM runtime: all of them, unpinned
    (what `load` sets; the sidecar's "runtime_env" tells users of plain `tvm.runtime.load_module`)."""
    return {"TVM_NUM_THREADS": str(int(cores or 1)), "TVM_BIND_THREADS": "0"}


def load(path: str | os.PathLike, device: str = "cpu") -> LoadedModel:
    """Load a library written by `sqnxt_compiler.compile` with `tvm.runtime.load_module`."""
    use_all_cores()
    import tvm
    from tvm.runtime.vm import VirtualMachine

    library = Path(path)
    if library.is_dir():
        raise SqnxtError(f"library '{library}' is a folder; give the .so written by sqnxt-compile")
    if not library.is_file():
        raise SqnxtError(f"library '{library}' does not exist")
    check_library_file(library)
    try:
        module = tvm.runtime.load_module(str(library))
    except Exception as err:  # a foreign-architecture or damaged file; say which, in one line
        lines = str(err).strip().splitlines()
        raise SqnxtError(f"cannot load '{library}' on this machine: {lines[-1] if lines else err}") from None
    meta = read_sidecar(library)
    if meta.get("accel"):
        # the library calls the accelerator's layers by name; they must exist before the VM starts
        from .accel.runtime_functions import register

        register()
    dev = tvm.device(device)
    try:
        vm = VirtualMachine(module, dev)
    except Exception as err:  # noqa: BLE001 - TVM 0.27 maps C++ errors to several Python types
        if "sqnxt.accel" not in str(err) or meta.get("accel"):
            lines = str(err).strip().splitlines()
            raise SqnxtError(f"cannot start '{library}': {lines[-1] if lines else type(err).__name__}") from None
        # an accelerator library whose sidecar is missing: the VM names the function it lacks; provide it
        from .accel.runtime_functions import RUN_LAYER, register

        register()
        vm = VirtualMachine(module, dev)
        meta = {**meta, "accel": {"runtime_function": RUN_LAYER}}   # what sqnxt-run checks
    return LoadedModel(library, meta, vm, dev)


def check_library_file(library: Path) -> None:
    """Refuse, in one line, a file that is no shared library or is cut short: the dynamic loader maps a
    truncated ELF file and the process dies of SIGBUS when it touches the missing pages."""
    import struct

    size = library.stat().st_size
    with open(library, "rb") as handle:   # the ELF header and the program headers (near the start)
        data = handle.read(64 * 1024)
    if data[:4] != b"\x7fELF" or len(data) < 6 or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise SqnxtError(f"'{library}' is not a shared library (no ELF header); give a .so written by sqnxt-compile")
    o = "<" if data[5] == 1 else ">"
    # 64- or 32-bit: where e_phoff/e_shoff and e_phentsize/e_phnum/e_shentsize/e_shnum are, the size of an
    # offset, and where a program header has p_offset and p_filesz
    table, sizes, word, segment = (32, 54, "Q", (8, 32)) if data[4] == 2 else (28, 42, "I", (4, 16))
    try:
        phoff, shoff = struct.unpack_from(f"{o}2{word}", data, table)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(f"{o}4H", data, sizes)
        ends = [shoff + shentsize * shnum, phoff + phentsize * phnum]
        for index in range(phnum):
            start = phoff + index * phentsize
            offset, = struct.unpack_from(f"{o}{word}", data, start + segment[0])
            filesz, = struct.unpack_from(f"{o}{word}", data, start + segment[1])
            ends.append(offset + filesz)
    except struct.error:   # headers beyond what was read: beyond the end of a short file, else unusual but fine
        ends = [size + 1 if size == len(data) else 0]
    if max(ends) > size:
        raise SqnxtError(f"'{library}' is truncated ({size} bytes, its headers describe "
                         f"{max(ends)}); recompile it or copy it again")


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def top_k(logits: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """Top-k (class, probability) of the first batch element, softmax over the last axis."""
    row = np.asarray(logits, dtype=np.float64).reshape(logits.shape[0], -1)[0]
    probs = np.exp(row - row.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:k]
    return [(int(i), float(probs[i])) for i in order]

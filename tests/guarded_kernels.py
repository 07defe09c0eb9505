"""Run every kernel of a compiled model library once, each tensor argument placed so that it ends where an
unmapped page begins: a kernel that reads or writes past the end of any of its buffers then faults. A helper
script (run in a subprocess by tests/test_memory_safety.py, a fault kills the process):

    python guarded_kernels.py LIBRARY N,C,H,W

It prints each kernel's name before running it, so the last name printed is the one that faulted. The end of a
buffer is placed 64-byte aligned (TVM requires it), so an access less than 64 bytes past it may go unnoticed."""

from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np
import tvm
from tvm import relax

PAGE = mmap.PAGESIZE
ALIGNMENT = 64


def guarded_copy(array: np.ndarray, keep: list) -> tvm.runtime.Tensor:
    """A tensor holding `array`, in memory that an inaccessible page follows."""
    pages = -(-array.nbytes // PAGE) + 1
    region = mmap.mmap(-1, pages * PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    if ctypes.CDLL(None).mprotect(ctypes.c_void_p(base + (pages - 1) * PAGE), ctypes.c_size_t(PAGE), 0) != 0:
        raise OSError("mprotect failed")
    start = ((pages - 1) * PAGE - array.nbytes) // ALIGNMENT * ALIGNMENT
    view = np.frombuffer(region, dtype=array.dtype, count=array.size, offset=start).reshape(array.shape)
    view[...] = array
    keep.append(region)
    return tvm.runtime.from_dlpack(view)


def main(library: str, input_shape: str) -> None:
    device = tvm.cpu()
    executable = tvm.runtime.load_module(library)
    vm = relax.VirtualMachine(executable, device)
    data = np.random.default_rng(0).standard_normal([int(d) for d in input_shape.split(",")]).astype("float32")
    arguments: dict[str, list[np.ndarray]] = {}

    def capture(func, symbol, before, result, *args) -> int:
        name = str(symbol)
        if before and not name.startswith("vm.") and name not in arguments:
            arguments[name] = [arg.numpy() for arg in args]
        return 0

    vm.set_instrument(capture)
    vm["main"](tvm.runtime.tensor(data, device))
    kernels = executable.imports[0] if executable.imports else executable
    for name, args in arguments.items():
        print(name, flush=True)
        keep: list = []
        kernels[name](*(guarded_copy(arg, keep) for arg in args))
    print("all kernels ran", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Run the peers on their AVX2 kernels on an AVX-512 machine, beside an x86-avx2 build, as on an AVX2-only CPU.

- OpenVINO: oneDNN's documented cap on the instruction set, ONEDNN_MAX_CPU_ISA=AVX2, read when it first picks
  kernels.
- ONNX Runtime has no such switch: MLAS picks its kernels from CPUID when the library loads. On Linux x86-64 with
  CPUID faulting (the `cpuid_fault` flag in /proc/cpuinfo) `cpuid_mask.c` makes every CPUID of this process trap
  to a handler that reports the CPU without AVX-512, before onnxruntime is imported.

Without faulting (another kernel or CPU), ONNX Runtime keeps its AVX-512 kernels and the table says so: a
conservative comparison for the AVX2 build."""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from engines import ONEDNN_ISA_LIMIT, cpu_flags

MASK_SOURCE = Path(__file__).with_name("cpuid_mask.c")


def _mask_library() -> ctypes.CDLL:
    """cpuid_mask.c compiled once per source (the system C compiler, which TVM's exports need as well)."""
    source = MASK_SOURCE.read_bytes()
    library = Path(tempfile.gettempdir()) / f"sqnxt-cpuid-mask-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if not library.exists():
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        compiler = os.environ.get("CC", "cc")
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(partial), str(MASK_SOURCE)], check=True,
                       capture_output=True)
        partial.replace(library)
    return ctypes.CDLL(str(library), use_errno=True)


def limit_peers_to_avx2(required: bool) -> str:
    """Cap both peers at AVX2 in this process; returns the line the table prints about it. Call it after TVM is
    imported (TVM installs a SIGSEGV handler of its own) and before onnxruntime and openvino are. With `required`
    a CPU or kernel that cannot hide AVX-512 from ONNX Runtime ends the run with a message; otherwise the line
    says that ONNX Runtime keeps its AVX-512 kernels."""
    import tvm  # noqa: F401 - its SIGSEGV handler first, so that ours is the one CPUID faults reach

    if "onnxruntime" in sys.modules or "openvino" in sys.modules:
        raise RuntimeError("limit_peers_to_avx2 must run before onnxruntime and openvino are imported")
    os.environ[ONEDNN_ISA_LIMIT] = "AVX2"
    flags = cpu_flags()
    if "avx512f" not in flags:
        return "Peers: this CPU has no AVX-512; they run their AVX2 kernels anyway."
    why = None
    if sys.platform != "linux" or "cpuid_fault" not in flags:
        why = "this kernel or CPU cannot fault CPUID (no cpuid_fault flag)"
    else:
        try:
            mask = _mask_library()
        except (OSError, subprocess.CalledProcessError) as error:
            why = f"cpuid_mask.c did not build ({error})"
        else:
            if mask.sqnxt_hide_avx512() != 0:
                why = f"arch_prctl(ARCH_SET_CPUID) failed ({os.strerror(ctypes.get_errno()) or 'refused'})"
            elif mask.sqnxt_cpuid_avx512f():
                why = "CPUID still reports AVX-512 after the mask"
    if why is not None:
        if required:
            raise SystemExit(f"--peers-isa avx2: cannot hide AVX-512 from ONNX Runtime: {why}; use --peers-isa "
                             "native for a comparison against its AVX-512 kernels")
        return (f"Peers: OpenVINO on its AVX2 kernels ({ONEDNN_ISA_LIMIT}=AVX2); ONNX Runtime on its AVX-512 "
                f"kernels ({why}): a conservative comparison for the AVX2 build.")
    return (f"Peers: both on their AVX2 kernels, as on an AVX2-only CPU: OpenVINO through {ONEDNN_ISA_LIMIT}=AVX2, "
            "ONNX Runtime through CPUID without AVX-512 (benchmarks/cpuid_mask.c).")

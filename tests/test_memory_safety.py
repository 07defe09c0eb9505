"""Every kernel of the built-in SqueezeNexts stays inside its buffers: run alone with each argument ending at an
unmapped page (`guarded_kernels.py`, in a subprocess), none faults. Numerical checks cannot see an
out-of-bounds read whose lanes are masked afterwards; a caller whose buffer ends at a page boundary would see
a crash (a vectorized stem once read past its input's end, and crashed only the tuner's runner)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

import sqnxt_compiler
from sqnxt_compiler.models import build_model

HELPER = Path(__file__).with_name("guarded_kernels.py")


@pytest.mark.parametrize("model", ["1.0-SqNxt-23", "1.0-SqNxt-23v5"])
@pytest.mark.parametrize("target", ["host", "x86-avx2"])
def test_every_kernel_stays_inside_its_buffers(model, target, tmp_path) -> None:
    if target.startswith("x86") and platform.machine() != "x86_64":
        pytest.skip(f"{target} code runs on x86-64 only")
    result = sqnxt_compiler.compile(build_model(model), target=target, output=tmp_path / "model.so")
    shape = ",".join(str(d) for d in result.inputs[0].shape)
    run = subprocess.run([sys.executable, str(HELPER), str(result.library), shape], capture_output=True, text=True,
                         timeout=600)
    ran = run.stdout.split()
    assert run.returncode == 0, f"{model} ({target}): kernel {ran[-1] if ran else '?'} failed: {run.stderr[-2000:]}"
    assert ran[-3:] == ["all", "kernels", "ran"] and len(ran) > 20

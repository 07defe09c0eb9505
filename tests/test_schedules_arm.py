"""ARM builds vectorize with NEON: the conv kernels' aarch64 code multiplies-accumulates on v registers
(`fmla vD.4s, ...`), both in LLVM's assembly of a scheduled kernel and in the disassembled model library."""

import re
import shutil
import subprocess

import pytest
import tvm

import sqnxt_compiler
from schedule_helpers import conv_graph, fused_primfuncs, schedule_with
from sqnxt_compiler.models import build_model
from sqnxt_compiler.schedules import conv2d_output_stationary, conv2d_weight_stationary
from sqnxt_compiler.schedules._common import find_conv
from sqnxt_compiler.target import load_target
from utils import elf_machine

NEON_FMLA = re.compile(r"\bfmla\s+v\d+\.4s\s*,\s*v\d+\.4s\s*,\s*v\d+\.(4s|s\[\d\])")


@pytest.mark.parametrize("target_name", ["arm", "graviton2"])
@pytest.mark.parametrize("family", [conv2d_output_stationary, conv2d_weight_stationary])
def test_conv_kernel_uses_neon_fmla(target_name, family):
    spec = load_target(target_name)
    target = spec.tvm_target()
    funcs = fused_primfuncs(conv_graph((1, 16, 14, 14), 32, (1, 3), padding=(0, 1)), target)
    func = next(f for f in funcs.values() if find_conv(f) is not None)
    lib = tvm.compile(tvm.IRModule({"main": schedule_with(func, family.apply, spec).with_attr(
        "global_symbol", "main")}), target=target)
    assembly = lib.mod.inspect_source("asm")
    assert len(NEON_FMLA.findall(assembly)) >= 8, "no NEON fmla on v registers in the conv kernel"


def _disassembler() -> list[str] | None:
    for tool in ("llvm-objdump", "aarch64-linux-gnu-objdump"):
        if shutil.which(tool):
            return [tool, "-d", "--no-show-raw-insn"]
    return None


def test_arm_model_library_disassembles_to_neon_fmla(tmp_path):
    command = _disassembler()
    if command is None:
        pytest.skip("no aarch64-capable objdump (llvm-objdump or aarch64-linux-gnu-objdump)")
    result = sqnxt_compiler.compile(build_model("1.0-SqNxt-23", resolution=67), target="arm",
                                    output=tmp_path / "m.so")
    assert elf_machine(result.library) == "aarch64"
    text = subprocess.run([*command, str(result.library)], check=True, capture_output=True, text=True).stdout
    assert len(NEON_FMLA.findall(text)) >= 100, "the aarch64 library has (almost) no NEON fmla"


@pytest.mark.parametrize("target_name", ["arm", "rk3399", "graviton2"])
def test_multi_core_arm_targets_run_the_large_kernels_on_every_core(target_name):
    """Kernels of >= 1M MACs take ~0.2 ms or more on one Cortex-A72 core: each must run on all of the target's
    cores (a 4M-MAC threshold once left all but two kernels of 1.0-SqNxt-23 on one core of four)."""
    from sqnxt_compiler.frontend import import_to_relax, resolve_inputs
    from sqnxt_compiler.kernels.contract import MACS_ATTR
    from sqnxt_compiler.pipeline import SCHEDULING, UNSCHEDULED, CompileContext, run_pipeline

    spec = load_target(target_name)
    proto = build_model("1.0-SqNxt-23")
    with spec.scope():
        mod = run_pipeline(import_to_relax(proto, resolve_inputs(proto)), CompileContext(spec),
                           UNSCHEDULED + SCHEDULING)
    large = {gv.name_hint: func for gv, func in mod.functions.items() if isinstance(func, tvm.tirx.PrimFunc)
             and func.attrs is not None and MACS_ATTR in func.attrs and int(func.attrs[MACS_ATTR]) >= 1_000_000}
    assert len(large) >= 10
    serial = sorted(name for name, func in large.items() if "T.parallel(" not in func.script())
    assert not serial, f"{target_name}: large kernels on one core: {serial}"

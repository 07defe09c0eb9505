"""Per-kernel register pressure of a model built for each CPU class: vector FMAs and stack loads/stores
(spills, reloads, stack-allocated tiles) in the disassembly, the scratch buffers kept in the workspace
(`register_pressure.in_workspace`). Static counts, no timing: runs anywhere.

    python benchmarks/register_pressure.py [--model 1.0-SqNxt-23] [--targets x86-avx512 x86-avx2 arm]"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import sqnxt_compiler
from sqnxt_compiler.models import build_model
from sqnxt_compiler.register_pressure import in_workspace, kernel_pressure, library_arch, loop_ratio, total_ratio
from sqnxt_compiler.target import load_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="1.0-SqNxt-23")
    parser.add_argument("--targets", nargs="+", default=["x86-avx512", "x86-avx2", "arm"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    proto = build_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets:
            result = sqnxt_compiler.compile(proto, in_workspace(load_target(target)), output=Path(tmp) / f"{target}.so")
            kernels = kernel_pressure(result.library, library_arch(result.target))
            print(f"\n## {args.model} for {target} (class {result.target.cpu_class}, mcpu "
                  f"{result.target.llvm.get('mcpu')}): {sum(k.spills for k in kernels)} stack moves / "
                  f"{sum(k.fmas for k in kernels)} FMAs = {total_ratio(kernels):.3f}; in the innermost FMA loops "
                  f"{sum(k.loop_spills for k in kernels)} / {sum(k.loop_fmas for k in kernels)} = "
                  f"{loop_ratio(kernels):.3f}\n")
            print("| kernel | stack moves | FMAs | ratio | in FMA loops: stack moves | FMAs | ratio |")
            print("|---|---|---|---|---|---|---|")
            for kernel in kernels:
                print(f"| {kernel.name} | {kernel.spills} | {kernel.fmas} | {kernel.ratio:.3f} | "
                      f"{kernel.loop_spills} | {kernel.loop_fmas} | {kernel.loop_ratio:.3f} |")


if __name__ == "__main__":
    main()

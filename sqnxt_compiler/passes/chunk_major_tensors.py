"""Lay out the tensors that pixel-chunk kernels pass to each other chunk-major.

A pixel-chunk kernel (`kernels/pixel_chunks.py`) walks the flattened image in chunks of PIXEL_CHUNK pixels and,
for each chunk, reads every input channel and writes every output channel. In NCHW that is one 64-byte run per
channel, H*W*4 bytes from the next: an expand of 16 channels with its 32-channel residual and output touches 80
runs per chunk. Once a tensor outgrows L2 (batch 8 at 55x55), that is more concurrent streams than the hardware
prefetchers follow, and the kernel waits on memory. Chunk-major, [N, chunk, C, PIXEL_CHUNK], a chunk of all the
channels is one contiguous run: the kernels alone at batch 8 ran 1.3-1.8x faster (docs/performance.md).

A tensor becomes chunk-major when a pixel-chunk kernel writes it and only pixel-chunk kernels read it, as their
input or residual (in SqueezeNext, the block outputs inside a stage; in MobileNetV2, the projections' outputs).
The chunks are the kernels' own: the last one ends at the last pixel, so the few pixels it shares with the one
before are stored twice, with the same values (and the chunk `pair_pixel_chunks` adds repeats the last). The
kernels on one image walk the same chunks. Every other tensor keeps NCHW, and so does the network's input and
outputs.

The kernels carry the arguments they were built from (CHAIN_SPEC_ATTR): each is rebuilt with the layouts of its
tensors, and the attribute is removed from all of them, so a kernel whose tensors stay NCHW is unchanged."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ..kernels.contract import CHAIN_SPEC_ATTR
from ..kernels.pixel_chunks import chunk_major_shape, pointwise_chain_kernel
from ..module_functions import without_uncalled
from ._kernels import chain_kernels, kernel_callee, rewrite_functions


def _kernel_name(expr: relax.Expr) -> str | None:
    """The name of the kernel a call_tir calls, else None."""
    callee = kernel_callee(expr)
    return None if callee is None else callee.name_hint


def _image_positions(spec: dict, call: relax.Call) -> dict[int, str]:
    """Argument position -> name of the image tensors a pixel-chunk kernel call reads (its data, its residual)."""
    positions = {0: "data"}
    if spec["residual"]:
        positions[len(call.args[1].fields) - 1] = "residual"
    return positions


def _chunk_major_tensors(specs: dict[str, dict], func: relax.Function) -> dict[relax.Var, None]:
    """The outputs of pixel-chunk kernels (`specs`: their builders' arguments by name) that only pixel-chunk kernels
    read, as images, in binding order (variables hash by identity)."""
    written: dict = {}
    read_elsewhere: list = []
    for binding in (binding for block in func.body.blocks for binding in block.bindings):
        value = binding.value
        spec = specs.get(_kernel_name(value))
        if spec is not None:
            written[binding.var] = None
            images = _image_positions(spec, value)
            read_elsewhere += [arg for i, arg in enumerate(value.args[1].fields) if i not in images]
        else:
            read_elsewhere += relax.analysis.free_vars(value)
    read_elsewhere += relax.analysis.free_vars(func.body.body)
    spoiled = set(read_elsewhere)
    return {var: None for var in written if var not in spoiled}


@mutator
class _ChunkMajorRewriter(PyExprMutator):
    """The pixel-chunk kernel calls that touch a tensor in `chosen` call a variant built for their layouts."""

    def __init__(self, mod: tvm.IRModule, specs: dict[str, dict], chosen: dict[relax.Var, None]) -> None:
        super().__init__(mod)
        self.specs, self.chosen = specs, chosen
        self.variants: dict = {}  # (kernel name, chunk-major tensors) -> GlobalVar

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        name, call = _kernel_name(binding.value), binding.value
        if name not in self.specs:
            super().visit_var_binding_(binding)
            return
        args = list(call.args[1].fields)
        layouts = {image for i, image in _image_positions(self.specs[name], call).items() if args[i] in self.chosen}
        out_ty = call.ty_args[0]
        if binding.var in self.chosen:
            layouts.add("output")
            out_ty = relax.TensorType(chunk_major_shape(out_ty.shape.values, self.specs[name]["chunk_group"]),
                                      out_ty.dtype)
        if not layouts:
            super().visit_var_binding_(binding)
            return
        key = (name, frozenset(layouts))
        if key not in self.variants:
            kernel = pointwise_chain_kernel(**self.specs[name], chunk_major=layouts)
            self.variants[key] = self.builder_.add_func(kernel.without_attr(CHAIN_SPEC_ATTR),
                                                        "_".join([name, "cm", *sorted(layouts)]))
        new_call = relax.call_tir(self.variants[key], relax.Tuple([self.visit_expr(arg) for arg in args]), out_ty)
        self.set_var_remap(binding.var, self.builder_.emit(new_call, binding.var.name))


def summarize(shapes: list[tuple[int, int]]) -> list[str]:
    """`--explain` lines from the (height, width) of each chunk-major tensor."""
    if not shapes:
        return ["no tensor passes only between pixel-chunk kernels; every tensor stays NCHW"]
    return [f"{len(shapes)} tensors between pixel-chunk kernels made chunk-major: " + ", ".join(
        f"{h}x{w}: {n}" for (h, w), n in Counter(shapes).items())]


@tvm.transform.module_pass(opt_level=0, name="ChunkMajorTensors")
class ChunkMajorTensors:
    """The tensors passed only between pixel-chunk kernels chunk-major (module docstring); `report` gets the
    (height, width) of each."""

    def __init__(self, report: Callable[[tuple[int, int]], None] | None = None) -> None:
        self.report = report

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod, specs = mod.clone(), {}  # the kernels lose their attribute in the copy, not in the caller's module
        for gvar, spec in chain_kernels(mod).items():
            specs[gvar.name_hint] = spec
            mod[gvar] = mod[gvar].without_attr(CHAIN_SPEC_ATTR)  # the NCHW kernel, as if built without it
        if not specs:
            return mod
        def rewriter_for(mod: tvm.IRModule, func: relax.Function) -> _ChunkMajorRewriter | None:
            chosen = _chunk_major_tensors(specs, func)
            return _ChunkMajorRewriter(mod, specs, chosen) if chosen else None

        mod, rewriters = rewrite_functions(mod, rewriter_for)
        for var in (v for rewriter in rewriters for v in rewriter.chosen) if self.report is not None else ():
            self.report(tuple(int(d) for d in var.ty.shape.values[2:]))
        return without_uncalled(mod, specs)

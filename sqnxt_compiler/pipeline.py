"""The compilation pipeline as a list of named phases, with an IR dump and an explanation after each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import tvm
from tvm import relax

from .cpu import DEFAULT_L2_BYTES
from .kernels.pixel_chunks import PIXEL_CHUNK
from .passes import (AlignChannelPlanes, CanonicalizeClip, ChannelConcat, ChunkMajorTensors, ConcatInPlace,
                     DepthwiseConv, FewChannelConv, FoldBatchNorm, FuseBottleneck, FuseLowRankConv, PairPixelChunks,
                     PointwiseConvOverChunks, RemoveDropout, SubsamplePointwise, WinogradRowConv, WinogradStem,
                     summarize)
from .passes.align_channel_planes import summarize as summarize_planes
from .passes.channel_concat import summarize as summarize_concats
from .passes.concat_in_place import summarize as summarize_in_place
from .passes.chunk_major_tensors import summarize as summarize_chunk_major
from .passes.pair_pixel_chunks import summarize as summarize_pairs
from .passes.subsample_pointwise import summarize as summarize_subsamples
from .target import TargetSpec


@dataclass
class CompileContext:
    """What every phase may read: the target and the user's options; `notes` collects the explanation."""

    target_spec: TargetSpec            # the host CPU's (for an accelerator target: the CPU around it)
    tuning_log: Path | None = None
    dump_dir: Path | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)
    accel: "AccelConfig | None" = None  # noqa: F821 - set for accelerator targets (ACCEL_PHASES)
    dataflow: str = "ws"
    accel_programs: list = field(default_factory=list)   # (QuantizedLayer, Program) per accelerator layer
    accel_tilings: "TunedTilings | None" = None  # noqa: F821 - accelerator targets with --tuning-log

    @property
    def target(self) -> tvm.target.Target:
        return self.target_spec.tvm_target()

    def note(self, phase: str, line: str) -> None:
        self.notes.setdefault(phase, []).append(line)


@dataclass(frozen=True)
class Phase:
    name: str
    run: Callable[[tvm.IRModule, CompileContext], tvm.IRModule]
    doc: str


def _sequential(*passes: tvm.transform.Pass) -> Callable[[tvm.IRModule, CompileContext], tvm.IRModule]:
    def run(mod: tvm.IRModule, ctx: CompileContext) -> tvm.IRModule:
        with ctx.target:
            return tvm.transform.Sequential(list(passes))(mod)

    return run


def _reported_pass(phase: str, make_pass: Callable, target_options: Callable[[TargetSpec], dict] | None = None,
                   summary: Callable[[list], list[str]] = summarize
                   ) -> Callable[[tvm.IRModule, CompileContext], tvm.IRModule]:
    """Run a pass that reports what it did, and note `summary` of its reports for --explain (by default a fusion
    pass's: counts per pattern and per stage); a pass whose choices depend on the target gets the
    `target_options` of the target as keyword arguments."""

    def run(mod: tvm.IRModule, ctx: CompileContext) -> tvm.IRModule:
        records: list = []
        options = target_options(ctx.target_spec) if target_options is not None else {}
        mod = make_pass(report=records.append, **options)(mod)
        for line in summary(records):
            ctx.note(phase, line)
        return mod

    return run


def _vector_registers(spec: TargetSpec) -> dict:
    """The option of a pass whose register tiles are sized for the register file."""
    return {"vector_registers": int(spec.cpu["vector_registers"])}


def _l2_bytes_and_registers(spec: TargetSpec) -> dict:
    """The options of a pass whose choice for weights-bound convs depends on L2 and the register file."""
    return {"l2_bytes": int(spec.cpu.get("l2_bytes", DEFAULT_L2_BYTES)), **_vector_registers(spec)}


def _vector_lanes(spec: TargetSpec) -> dict:
    """The option of a pass whose kernels compute rows or tiles in whole vectors."""
    return {"vector_lanes": spec.vector_lanes}


def _cores(spec: TargetSpec) -> dict:
    """The option of a pass whose choices depend on how many cores share the work."""
    return {"cores": int(spec.cpu.get("cores", 1))}


def _schedule(mod: tvm.IRModule, ctx: CompileContext) -> tvm.IRModule:
    from .schedules import apply_default_schedules

    if ctx.tuning_log is not None:
        from .records.apply import apply_tuning_log

        mod, lines = apply_tuning_log(mod, ctx.tuning_log, ctx.target_spec)
        for line in lines:
            ctx.note("schedule", line)
    return apply_default_schedules(mod, ctx)


def _pair_pixel_chunks(mod: tvm.IRModule, ctx: CompileContext) -> tvm.IRModule:
    if ctx.target_spec.vector_lanes != PIXEL_CHUNK:
        ctx.note("pair_pixel_chunks", f"a chunk of {PIXEL_CHUNK} pixels is several vectors here; module unchanged")
        return mod
    return _reported_pass("pair_pixel_chunks", PairPixelChunks, _cores, summary=summarize_pairs)(mod, ctx)


def _align_channel_planes(mod: tvm.IRModule, ctx: CompileContext) -> tvm.IRModule:
    if int(ctx.target_spec.cpu.get("cores", 1)) < 2:
        ctx.note("align_channel_planes", "one core: no parts of a plane to keep apart; module unchanged")
        return mod
    return _reported_pass("align_channel_planes", AlignChannelPlanes, summary=summarize_planes)(mod, ctx)


def _lower_to_vm(mod: tvm.IRModule, ctx: CompileContext) -> tvm.IRModule:
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    target = ctx.target
    with target:
        return tvm.transform.Sequential(cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target))(mod)


def _partition_accel(mod: tvm.IRModule, ctx: CompileContext) -> tvm.IRModule:
    from .passes.partition_accel import PartitionAccel

    return PartitionAccel(report=lambda kind, count: ctx.note("partition_accel", f"{count} x {kind}"))(mod)


def _lower_accel(mod: tvm.IRModule, ctx: CompileContext) -> tvm.IRModule:
    from .passes.lower_accel import LowerAccel

    tuned = ctx.accel_tilings
    mod = LowerAccel(ctx.accel, ctx.dataflow, report=lambda layer, program: ctx.accel_programs.append(
        (layer, program)), tilings=tuned)(mod)
    layers = len(ctx.accel_programs)
    instructions = sum(len(program) for _, program in ctx.accel_programs)
    how = f"{ctx.dataflow.upper()} dataflow, default tilings"
    if tuned is not None:
        for message in tuned.messages:
            ctx.note("lower_accel", message)
        how = (f"tuned tilings for {len(tuned.applied)} of {layers} layers from {tuned.log_dir}, default "
               f"{ctx.dataflow.upper()} tilings for the rest")
    ctx.note("lower_accel", f"{layers} layers compiled for {ctx.accel.name} ({how}): {instructions:,} instructions")
    return mod


# The phases in groups. A CPU build runs GRAPH_REWRITES, LOWERING, SCHEDULING, FINALIZING; an accelerator
# build replaces the graph rewrites by ACCEL_OFFLOAD (its model is a QDQ int8 graph, accel/int8/quantize.py, with no float
# conv left).
GRAPH_REWRITES: list[Phase] = [
    Phase("remove_dropout", _sequential(RemoveDropout()), "remove Dropout, the identity at inference"),
    Phase("fold_batchnorm", _sequential(FoldBatchNorm()), "fold BatchNorm into conv weights"),
    Phase("canonicalize_clip", _sequential(CanonicalizeClip()),
          "make each Clip with constant bounds (ReLU6) one clip op, so convs take it as their epilogue"),
    Phase("subsample_pointwise",
          _reported_pass("subsample_pointwise", SubsamplePointwise, summary=summarize_subsamples),
          "give the strided 1x1 convs a dense copy of the pixels they read (one per input), so they run as "
          "stride-1 1x1s"),
    Phase("winograd_stem", _reported_pass("winograd_stem", WinogradStem, _vector_lanes),
          "compute the 5x5/7x7 stride-2 stem as polyphase Winograd (over 4x4 tiles with 16-lane vectors, else "
          "along rows), weights transformed at compile time, with the max pool after it"),
    Phase("winograd_rows", _reported_pass("winograd_rows", WinogradRowConv),
          "compute the 3x1 and 3x3 stride-1 convs with >= 32 outputs on images >= 8x9 as Winograd F(4, 3) along rows"),
    Phase("fuse_low_rank", _reported_pass("fuse_low_rank", FuseLowRankConv, _vector_lanes),
          "fuse each 3x1/1x3 conv pair into one kernel, where its rows fill more than half of their vectors"),
    Phase("fuse_bottleneck", _reported_pass("fuse_bottleneck", FuseBottleneck, _l2_bytes_and_registers),
          "fuse the 1x1 reduce pair, and the 1x1 expand with residual add + ReLU"),
    Phase("pointwise_conv", _reported_pass("pointwise_conv", PointwiseConvOverChunks, _l2_bytes_and_registers),
          "compute the remaining 1x1 stride-1 convs over pixel chunks (no padded rows)"),
    Phase("depthwise_conv", _reported_pass("depthwise_conv", DepthwiseConv),
          "compute the depthwise convs with the output columns in vectors"),
    Phase("few_channel_conv", _reported_pass("few_channel_conv", FewChannelConv, _vector_registers),
          "compute the remaining convs on <= 4 input channels (3x3 stems) with the output columns in vectors"),
    Phase("pair_pixel_chunks", _pair_pixel_chunks,
          "where a vector holds a whole pixel chunk, give the pixel-chunk kernels an even number of chunks, so a "
          "register tile can take two"),
    Phase("chunk_major_tensors",
          _reported_pass("chunk_major_tensors", ChunkMajorTensors, summary=summarize_chunk_major),
          "lay out the tensors that pixel-chunk kernels pass to each other chunk-major: a chunk of every channel "
          "in one contiguous run"),
    Phase("channel_concat", _reported_pass("channel_concat", ChannelConcat, summary=summarize_concats),
          "mark each concat along channels of tensors only it reads (a fire module's expands), for in-place writes"),
]
ACCEL_OFFLOAD: list[Phase] = [
    Phase("partition_accel", _partition_accel, "quantized conv/dense (+bias, requantize, ReLU) -> accelerator "
          "composite functions"),
    Phase("lower_accel", _lower_accel, "compile each composite to an accelerator program, called from the host "
          "through sqnxt.accel.run_layer"),
]
LOWERING: list[Phase] = [
    Phase("legalize", _sequential(relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                  relax.transform.FoldConstant()), "lower graph ops to TensorIR"),
    Phase("fuse_operators", _sequential(relax.transform.FuseOps(), relax.transform.FuseTIR()),
          "fuse elementwise epilogues into their producers"),
]
SCHEDULING: list[Phase] = [Phase("schedule", _schedule, "tuned records, then default WS/OS schedules")]
FINALIZING: list[Phase] = [
    Phase("align_channel_planes", _align_channel_planes,
          "pad the channel planes of the tensors between kernels to whole cache lines, so the cores' parts of "
          "a tensor share none"),
    Phase("concat_in_place", _reported_pass("concat_in_place", ConcatInPlace, summary=summarize_in_place),
          "have the kernels that feed a marked concat write their channels of its output, and drop its copy"),
    Phase("lower_to_vm", _lower_to_vm, "memory planning and VM lowering"),
]

PHASES: list[Phase] = GRAPH_REWRITES + LOWERING + SCHEDULING + FINALIZING
ACCEL_PHASES: list[Phase] = ACCEL_OFFLOAD + LOWERING + SCHEDULING + FINALIZING
# The kernels exactly as the schedule phase sees them (what the tuner extracts).
UNSCHEDULED: list[Phase] = GRAPH_REWRITES + LOWERING


def phases_for(ctx: CompileContext) -> list[Phase]:
    return ACCEL_PHASES if ctx.accel is not None else PHASES


def run_pipeline(mod: tvm.IRModule, ctx: CompileContext, phases: list[Phase] | None = None) -> tvm.IRModule:
    """Run `phases` (default: PHASES, or ACCEL_PHASES for an accelerator target) in order, dumping the
    module after each when asked."""
    if ctx.dump_dir is not None:
        ctx.dump_dir.mkdir(parents=True, exist_ok=True)
        (ctx.dump_dir / "00_import.py").write_text(mod.script())
    for index, phase in enumerate(phases if phases is not None else phases_for(ctx), start=1):
        mod = phase.run(mod, ctx)
        if ctx.dump_dir is not None:
            (ctx.dump_dir / f"{index:02d}_{phase.name}.py").write_text(mod.script())
    return mod

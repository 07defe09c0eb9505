"""Shared pieces of the schedule families: block recognition, target knobs, and the conv register tile.

The convolution families (output-stationary, weight-stationary) differ only in loop order and in where
the epilogue and padding are computed; the layout work and the register tile are the same, so they
live here once. Knobs are plain ints (deterministic defaults) or sampled `ExprRV`s (design spaces)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Union

import tvm
from tvm import tirx

from ..cpu import DEFAULT_L1D_BYTES, DEFAULT_L2_BYTES, vector_isa

if TYPE_CHECKING:
    from ..target import TargetSpec

Knob = Union[int, "tvm.ir.PrimExpr"]

# Block annotation that marks a weight-packing block so `SplitLayoutRewritePreproc` moves it out of the
# kernel and `FoldConstant` runs it once at compile time on the constant weights.
LAYOUT_REWRITE_PREPROC = "meta_schedule.layout_rewrite_preproc"


# --------------------------------------------------------------------------------------------- target
@dataclass(frozen=True)
class MachineKnobs:
    """What the schedules need to know about the target CPU."""

    vector_bits: int
    vector_registers: int
    cores: int
    l1d_bytes: int
    # Kernels below this many MACs run on one core: a parallel launch and barrier cost more than they save.
    parallel_min_macs: int = 4_000_000
    cpu_class: str = ""  # `cpu.VectorISA.cpu_class`, e.g. "arm": for what a class's LLVM backend does
    l2_bytes: int = DEFAULT_L2_BYTES

    @property
    def lanes(self) -> int:
        """fp32 elements per vector register."""
        return max(1, self.vector_bits // 32)

    @property
    def accumulator_budget(self) -> int:
        """Vector registers for a conv register tile's accumulators: half the register file. The rest hold
        the weight vectors and input broadcasts of the taps LLVM unrolls and interleaves; with more
        accumulators the tile spills."""
        return max(4, self.vector_registers // 2)


def machine_knobs(spec: "TargetSpec | None" = None) -> MachineKnobs:
    """Knobs from a target (`spec`, or the one in `TargetSpec.scope()`: the tuner builds design spaces in it).

    Outside both, from the TVM target in scope, through the same ISA facts a target file resolves "auto"
    with; with no target at all this raises instead of guessing one CPU's facts."""
    from ..target import current_target_spec

    spec = spec or current_target_spec()
    if spec is not None:
        cpu = spec.cpu
        return MachineKnobs(int(cpu["vector_bits"]), int(cpu["vector_registers"]), int(cpu.get("cores", 1)),
                            int(cpu.get("l1d_bytes", DEFAULT_L1D_BYTES)),
                            int(cpu.get("parallel_min_macs", MachineKnobs.parallel_min_macs)), spec.cpu_class,
                            int(cpu.get("l2_bytes", DEFAULT_L2_BYTES)))
    target = tvm.target.Target.current(allow_none=True)
    if target is None:
        raise ValueError("a schedule needs its target: pass the TargetSpec, or build the design space under "
                         "`with spec.scope():` (the tuner does)")
    isa = vector_isa(target)
    return MachineKnobs(isa.vector_bits, isa.vector_registers, int(target.attrs.get("num-cores", 1) or 1),
                        DEFAULT_L1D_BYTES, cpu_class=isa.cpu_class)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in divisors(n) if d <= max(1, limit))


def pow2_lanes(extent: int, lanes: int) -> int:
    """The widest power-of-two vector (<= lanes) that divides `extent`, so no vector loop needs a predicate."""
    width = lanes
    while width > 1 and extent % width:
        width //= 2
    return width


# ---------------------------------------------------------------------------------------------- blocks
def _is_var(expr, var) -> bool:
    return isinstance(expr, tirx.Var) and expr.same_as(var)


@dataclass(frozen=True)
class ConvShape:
    """A 2-D NCHW convolution block: `out[n, f, y, x] += in[n, c(f, rc), y*s + ry, x*s + rx] * w[f, rc, ry, rx]`."""

    block: str
    batch: int
    out_channels: int
    out_height: int
    out_width: int
    reduce_channels: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    weight_index: int  # which read of the block is the weight
    padded: bool  # the input goes through a padding block with a real border

    @property
    def macs(self) -> int:
        return (self.batch * self.out_channels * self.out_height * self.out_width
                * self.reduce_channels * self.kernel_h * self.kernel_w)


def has_block(sch: "tvm.s_tir.Schedule", name: str) -> bool:
    """Whether the scheduled PrimFunc has a block of this name (kernels have optional blocks)."""
    try:
        sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - tvm raises a ScheduleError subclass of TVMError
        return False
    return True


def root_blocks(func: tirx.PrimFunc) -> list:
    """The blocks directly under the root block (all blocks, in the PrimFuncs FuseTIR produces)."""
    from tvm import s_tir

    try:
        sch = s_tir.Schedule(func)
        return [sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))]
    except (tvm.error.TVMError, ValueError):
        return []


def _stride(index, spatial, reduce) -> int | None:
    """The stride s of an index `spatial * s + reduce` (or `spatial + reduce`), None if not that form."""
    if isinstance(index, tirx.Add):
        lhs, rhs = index.a, index.b
        if _is_var(rhs, reduce) or (isinstance(rhs, tirx.Mul) and _is_var(rhs.a, reduce)):
            if _is_var(lhs, spatial):
                return 1
            if isinstance(lhs, tirx.Mul) and _is_var(lhs.a, spatial) and isinstance(lhs.b, tirx.IntImm):
                return int(lhs.b.value)
    return None


def find_conv(func: tirx.PrimFunc) -> ConvShape | None:
    """The single NCHW conv2d block of a fused conv PrimFunc (with elementwise epilogues), else None."""
    blocks = root_blocks(func)
    convs = [b for b in blocks if len(b.iter_vars) == 7
             and [iv.iter_type for iv in b.iter_vars] == [0] * 4 + [2] * 3]
    if len(convs) != 1 or len(blocks) - len(convs) > 8:
        return None
    block = convs[0]
    n, f, y, x, rc, ry, rx = (iv.var for iv in block.iter_vars)
    extents = [int(iv.dom.extent) for iv in block.iter_vars]
    if len(block.writes) != 1 or len(block.reads) != 2:
        return None
    weight_index, strides = None, None
    for i, region in enumerate(block.reads):
        idx = [r.min for r in region.region]
        if len(idx) != 4:
            continue
        if all(_is_var(e, v) for e, v in zip(idx, (f, rc, ry, rx))):
            weight_index = i
        elif len(idx) == 4 and _is_var(idx[0], n):
            sh, sw = _stride(idx[2], y, ry), _stride(idx[3], x, rx)
            if sh and sw:
                strides = (sh, sw)
    if weight_index is None or strides is None:
        return None
    padded = any(b.name_hint.startswith("pad") and _has_border(b) for b in blocks)
    return ConvShape(block.name_hint, *extents, *strides, weight_index=weight_index, padded=padded)


def _has_border(block) -> bool:
    """A padding block with a real border reads through if_then_else; a plain copy does not."""
    return "if_then_else" in str(block.body)


def inline_elementwise_chain(sch: "tvm.s_tir.Schedule", producer) -> object | None:
    """Inline the elementwise blocks after `producer` (bias, residual add, ReLU) into the last one, which
    writes the function's output; return that block (None if the producer writes the output itself)."""
    while True:
        consumers = sch.get_consumers(producer)
        if not consumers:
            return None
        if len(consumers) != 1:
            raise ValueError("conv output feeds several blocks")
        consumer = consumers[0]
        if not sch.get_consumers(consumer):
            return consumer
        sch.compute_inline(consumer)


def inline_copies(sch: "tvm.s_tir.Schedule", block) -> object | None:
    """Inline producers of `block` that are plain copies (e.g. a padding block with no border); return the
    remaining padding block, if any."""
    remaining = None
    for producer in sch.get_producers(block):
        stmt = sch.get(producer)
        if not stmt.name_hint.startswith("pad"):
            continue
        if _has_border(stmt):
            remaining = producer
        else:
            sch.compute_inline(producer)
    return remaining


# ------------------------------------------------------------------------------------------ conv tile
SAMPLE = None  # a knob left to the design space: sampled (sample_perfect_tile) where its loop is split


@dataclass
class ConvKnobs:
    """The knobs shared by the conv families: ints for the deterministic defaults; SAMPLE (None) in design
    spaces, where each is drawn with `sample_perfect_tile` / `sample_categorical` at its split."""

    lanes: int  # vector width over output channels (never sampled: it is the machine's)
    f_vectors: Knob | None  # output-channel vectors per register tile (unrolled)
    x_inner: Knob | None  # output columns per register tile (unrolled)
    rc_inner: Knob | None = 1  # input channels per weight tile (weight-stationary only)
    rows_per_task: Knob | None = 1  # output rows per parallel task (weight-stationary only)
    channels_outer: bool = True  # output-stationary: channel tile outside the column tile
    channel_parallel: bool = False  # weight-stationary: the cores split the channel tiles, not the row blocks
    parallel: bool = True  # run the outer (row) loop on all cores
    unroll_max_step: Knob | None = 0  # auto-unroll of the remaining loops


def tile(sch, loop, factor: Knob | None, max_inner: int):
    """Split `loop` into (outer, inner) with inner = factor, or a sampled perfect tile when factor is SAMPLE."""
    if factor is SAMPLE:
        factor = sch.sample_perfect_tile(loop, n=2, max_innermost_factor=max_inner)[1]
    return sch.split(loop, [None, factor])


def unroll_step(sch, knobs: ConvKnobs) -> Knob:
    if knobs.unroll_max_step is SAMPLE:
        return sch.sample_categorical([0, 16, 64], [0.4, 0.3, 0.3])
    return knobs.unroll_max_step


@dataclass
class PreparedConv:
    conv: object
    epilogue: object
    pad: object | None
    shape: ConvShape
    elementwise: bool  # the epilogue computes (bias, residual, ReLU), not only copies the accumulator out


def prepare_conv(sch: "tvm.s_tir.Schedule", lanes: int) -> PreparedConv:
    """Layout work common to every conv schedule, independent of the knobs but for the vector width:
    - the weight is packed [F, C, KH, KW] -> [F / lanes, C, KH, KW, lanes] by a block that runs once at compile
      time, so a vector of output channels is one contiguous load, and a channel tile's weights are a few
      sequential streams the prefetchers follow (in [C, KH, KW, F] a tile reads a few lines of every row);
    - the accumulator is laid out [N, H, W, F], so a register tile (columns x channel vectors) is contiguous;
    - the elementwise epilogue is inlined into one block that will run on the register tile;
    - padding blocks without a border are inlined (they are copies)."""
    shape = find_conv(sch.mod["main"])
    if shape is None:
        raise ValueError("not a conv2d PrimFunc")
    conv = sch.get_sblock(shape.block)
    epilogue = inline_elementwise_chain(sch, conv)
    elementwise = epilogue is not None
    if not elementwise:  # conv writes the output directly: give it an intermediate to lay out freely
        epilogue = sch.cache_write(conv, 0, "global")
    pack_at_compile_time(sch, conv, shape.weight_index, lambda f, c, h, w: (f // lanes, c, h, w, f % lanes))
    sch.transform_layout(conv, ("write", 0), lambda n, f, y, x: (n, y, x, f))
    pad = inline_copies(sch, conv)
    return PreparedConv(conv, epilogue, pad, shape, elementwise)


def pack_at_compile_time(sch: "tvm.s_tir.Schedule", block, read_index: int, layout) -> None:
    """Read input `read_index` of `block` (its weights) through a copy laid out by `layout` (an index map), in a
    block marked LAYOUT_REWRITE_PREPROC: the pipeline moves it out of the kernel and folds it on the constants."""
    packed = sch.cache_read(block, read_index, "global")
    sch.transform_layout(packed, ("write", 0), layout)
    sch.annotate(packed, LAYOUT_REWRITE_PREPROC, True)


def last_iteration_apart(sch, loop) -> None:
    """Split a loop's last iteration off as a loop of its own: in a pool, only the last window can pass the
    image's edge, and LLVM vectorizes the others without the edge's masks."""
    if (extent := int(sch.get(loop).extent)) >= 2:
        sch.loop_partition(loop, [extent - 1, None])


def split_channels(sch, loop, knobs: ConvKnobs):
    """f -> (channel tiles, vectors per tile [unrolled], lanes [vectorized])."""
    outer, lanes = sch.split(loop, [None, knobs.lanes])
    tiles, vectors = tile(sch, outer, knobs.f_vectors, 4)
    return tiles, vectors, lanes


def finish_register_tile(sch, p: PreparedConv, x_inner, f_vectors, f_lanes, reduction_outer, unroll_at,
                         knobs: ConvKnobs, vector_columns: bool) -> None:
    """Vectorize/unroll the register tile, then split the init off the reduction (vectorize first, as
    DESIGN.md says, so the init loop inherits it), auto-unroll what remains, and lay out the epilogue
    (`transpose_epilogue`)."""
    sch.unroll(x_inner)
    sch.unroll(f_vectors)
    sch.vectorize(f_lanes)
    step = unroll_step(sch, knobs)
    if not (isinstance(step, int) and step == 0):
        sch.annotate(unroll_at, "pragma_auto_unroll_max_step", step)
        sch.annotate(unroll_at, "pragma_unroll_explicit", 1)
    sch.decompose_reduction(p.conv, reduction_outer)  # the init's lanes loop stays vectorized
    transpose_epilogue(sch, p.epilogue, column_lanes=knobs.lanes if vector_columns else 0)


def transpose_epilogue(sch, epilogue, column_lanes: int) -> None:
    """The epilogue writes NCHW rows from the [.., x, f] accumulator, i.e. it transposes the tile.
    - A register tile (output-stationary: a few columns; `column_lanes` 0) has its channel and column
      loops unrolled, and LLVM transposes it with shuffles and writes whole row segments.
    - A tile of whole rows (weight-stationary) has its column loop split into `column_lanes`-wide
      vectors: strided loads from the accumulator, contiguous stores. Its channel loop stays rolled:
      unrolled too, it ran faster on one kernel and slower on another, and took seconds to compile (a
      whole WS design-space candidate of the stem, minutes).
    Left to itself, LLVM vectorizes the channel loop into scatter stores (vscatterdps on AVX-512)."""
    loops = sch.get_loops(epilogue)
    channels, columns = loops[-3], loops[-1]   # (.., f, y, x): the epilogue's NCHW write order
    if column_lanes:
        sch.vectorize(sch.split(columns, [None, column_lanes])[1])
    else:
        sch.unroll(channels)
        sch.unroll(columns)


# What a register tile's predicated tail (columns past the width) costs, in whole tiles.
TAIL_TILE_COST = Fraction(3, 2)


def register_tile(knobs: MachineKnobs, out_channels: int, out_width: int,
                  window: int = 1) -> tuple[int, int, int]:
    """(lanes, f_vectors, x_inner) for a register tile of x_inner columns by f_vectors*lanes channels.

    Score = FMAs per load (fv*xi / (fv + xi)), times the useful fraction of the column tiles, times a penalty
    when the weight slice of a channel tile (window = C*KH*KW floats per channel) cannot stay in half of L1.
    x_inner need not divide the width, but the tail tile, predicated, costs about 1.5 whole ones (measured on
    AVX-512 and AVX2: docs/performance.md). Ties go to the tile without a tail, then to more channel vectors;
    exact fractions keep the ties exact."""
    lanes = pow2_lanes(out_channels, knobs.lanes)
    best = (Fraction(0), False, 1, 1)
    for fv in divisors(out_channels // lanes):
        if fv > 4:
            break
        fits_l1 = window * fv * lanes * 4 <= knobs.l1d_bytes // 2
        for xi in range(1, min(16, out_width) + 1):
            if fv * xi > knobs.accumulator_budget:
                continue
            exact = out_width % xi == 0
            useful = Fraction(out_width) / ((out_width // xi + (0 if exact else TAIL_TILE_COST)) * xi)
            score = Fraction(fv * xi, fv + xi) * useful * (1 if fits_l1 else Fraction(7, 10))
            if (score, exact, fv) > best[:3]:
                best = (score, exact, fv, xi)
    return lanes, best[2], best[3]

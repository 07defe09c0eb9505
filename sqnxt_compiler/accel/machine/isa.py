"""The instruction set, in VTA's spirit: LOAD, GEMM, ALU, STORE, FINISH plus dependency tokens.

Three modules run their own in-order queues: load (DRAM -> input/weight/parameter buffers), compute
(GEMM on the array, ALU on accumulators) and store (accumulators -> DRAM). They synchronise only through
four token FIFOs, named like VTA's: each instruction may pop a token from / push a token to its previous
and next module (load <-> compute <-> store) before / after it runs:

    load --L2C "data ready"--> compute --C2S "result ready"--> store
    load <--C2L "slot free"--- compute <--S2C "slot free"----- store
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from ...errors import SqnxtError
from .config import AccelConfig
from .layer import LayerSpec, Requant
from .tiling import Tiling


class Module(enum.IntEnum):
    LOAD = 0
    COMPUTE = 1
    STORE = 2


class Buffer(enum.Enum):
    INPUT = "input"     # int8 activations
    WEIGHT = "weight"   # int8 weights
    PARAM = "param"     # int32 bias and requantization multiplier per output channel (accumulator SRAM)
    RESIDUAL = "residual"  # int8 tensor added in the epilogue, held as int32 (accumulator SRAM)


class AluOp(enum.Enum):
    ADD_CHANNEL = "add_ch"   # acc += bias[channel]
    MUL_CHANNEL = "mul_ch"   # acc *= multiplier[channel] (64-bit intermediate)
    ADD_RESIDUAL = "add_res"  # acc += residual * imm
    ADD_IMM = "add_imm"
    SHR_IMM = "shr_imm"      # arithmetic shift right
    MIN_IMM = "min_imm"
    MAX_IMM = "max_imm"


@dataclass
class Deps:
    """VTA's four dependency flags. prev/next are relative to the module: load's next is compute,
    compute's prev is load and its next is store, store's prev is compute."""

    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False


@dataclass
class Instruction:
    deps: Deps = field(default_factory=Deps, kw_only=True)
    module = Module.COMPUTE

    def describe(self) -> str:
        """One line: opcode, dependency flags (P/p pop prev/next, U/u push prev/next), fields."""
        flags = "".join(c if on else "-" for c, on in zip("PpUu", (self.deps.pop_prev, self.deps.pop_next,
                                                                   self.deps.push_prev, self.deps.push_next)))
        body = " ".join(f"{k}={_show(v)}" for k, v in vars(self).items() if k != "deps")
        return f"{type(self).__name__.upper():7s} [{flags}] {body}"


def _show(value: object) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):   # ALU op list
        return ",".join(f"{op.value}({imm})" for op, imm in value)
    return str(value).replace(" ", "")


@dataclass
class Load(Instruction):
    """DRAM -> buffer slot. Input tiles carry their window in input coordinates (rows/cols may start
    before 0 or end past the image: the DMA engine writes zeros there, as VTA's LOAD pads)."""

    buffer: Buffer
    slot: int
    image: int = 0
    row0: int = 0
    col0: int = 0
    rows: int = 1
    cols: int = 1
    c0: int = 0          # first input channel (input) or first output channel (weight, param)
    channels: int = 1
    cin0: int = 0        # weights: first input channel within the group
    cin: int = 0         # weights: input channels
    dram_bytes: int = 0  # bytes actually read from DRAM (padding is not read)
    module = Module.LOAD


@dataclass
class Gemm(Instruction):
    """acc[slot] (+)= conv(input[slot], weight[slot]) over one tile; `reset` starts from zero."""

    input_slot: int
    weight_slot: int
    acc_slot: int
    out_rows: int
    out_cols: int
    cout: int
    cin: int
    kh: int
    kw: int
    stride: tuple[int, int]
    reset: bool
    dataflow: str
    uops: int = 0


@dataclass
class Alu(Instruction):
    """One pass of the vector ALU over an accumulator tile, applying `ops` in order (a fused pipeline).
    Channel operands (bias, multiplier) come from parameter slot `param_slot`, a residual tile from
    `residual_slot`."""

    acc_slot: int
    elements: int
    ops: tuple[tuple[AluOp, int], ...]
    param_slot: int = 0
    residual_slot: int = 0


@dataclass
class Store(Instruction):
    """Accumulator tile (already requantized into int8 range) -> DRAM output, narrowed to int8."""

    acc_slot: int
    image: int
    row0: int
    col0: int
    rows: int
    cols: int
    c0: int
    channels: int
    module = Module.STORE


@dataclass
class Finish(Instruction):
    """Ends the program once the last store has drained (it pops the store's final token)."""


# token FIFO names, keyed by (module, direction)
CHANNEL_OF_PUSH = {(Module.LOAD, "next"): "L2C", (Module.COMPUTE, "prev"): "C2L",
                   (Module.COMPUTE, "next"): "C2S", (Module.STORE, "prev"): "S2C"}
CHANNEL_OF_POP = {(Module.COMPUTE, "prev"): "L2C", (Module.LOAD, "next"): "C2L",
                  (Module.STORE, "prev"): "C2S", (Module.COMPUTE, "next"): "S2C"}
CHANNELS = ("L2C", "C2L", "C2S", "S2C")


def pops(inst: Instruction) -> list[str]:
    """The token channels this instruction pops, checked against its module's neighbours."""
    return [_channel(CHANNEL_OF_POP, inst, d) for d, on in (("prev", inst.deps.pop_prev),
                                                           ("next", inst.deps.pop_next)) if on]


def pushes(inst: Instruction) -> list[str]:
    return [_channel(CHANNEL_OF_PUSH, inst, d) for d, on in (("prev", inst.deps.push_prev),
                                                            ("next", inst.deps.push_next)) if on]


def _channel(table: dict, inst: Instruction, direction: str) -> str:
    try:
        return table[(inst.module, direction)]
    except KeyError:
        raise SqnxtError(f"{inst.module.name} has no {direction} module: {inst.describe()}") from None


@dataclass
class Program:
    """A compiled layer: the instruction stream plus what produced it."""

    layer: LayerSpec
    config: AccelConfig
    tiling: Tiling
    instructions: list[Instruction]
    requant: Requant = field(default_factory=Requant)

    def __len__(self) -> int:
        return len(self.instructions)

    def counts(self) -> dict[str, int]:
        return dict(Counter(type(i).__name__.upper() for i in self.instructions))

    def token_balance(self) -> dict[str, int]:
        """pushes - pops per channel; a well-formed program has all zeros."""
        balance = Counter({c: 0 for c in CHANNELS})
        for inst in self.instructions:
            balance.update(pushes(inst))
            balance.subtract(pops(inst))
        return dict(balance)

    def check_tokens(self) -> None:
        """Raise unless every pop finds a token pushed earlier in program order and all tokens are used,
        which is what lets the hardware (and the timing model) run the queues without deadlock."""
        pending = Counter()
        for index, inst in enumerate(self.instructions):
            for channel in pops(inst):
                if pending[channel] == 0:
                    raise SqnxtError(f"instruction {index} pops an empty {channel} token queue (deadlock): "
                                     f"{inst.describe()}")
                pending[channel] -= 1
            pending.update(pushes(inst))
        leftover = {c: n for c, n in pending.items() if n}
        if leftover:
            raise SqnxtError(f"program ends with unconsumed dependency tokens {leftover}")

    def listing(self) -> str:
        return "\n".join(f"{i:5d} {inst.describe()}" for i, inst in enumerate(self.instructions))

"""The workload ("topology" in SCALE-Sim's words): one quantized conv2d or dense layer and its requantization."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SqnxtError


@dataclass(frozen=True)
class LayerSpec:
    """A conv2d (NHWC activations, OHWI weights per group) or a dense layer (a 1x1 conv on a 1x1 image).

    Shapes the simulator expects: input (n, h, w, cin) int8; weights (cout, kh, kw, cin // groups) int8;
    bias (cout,) int32; output and, with `residual`, the residual (n, out_h, out_w, cout) int8."""

    n: int
    cin: int
    h: int
    w: int
    cout: int
    kh: int = 1
    kw: int = 1
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    groups: int = 1
    name: str = "layer"
    residual: bool = False  # the epilogue adds an int8 tensor of the output's shape (a fused merge)

    def __post_init__(self) -> None:
        stride = (self.stride, self.stride) if isinstance(self.stride, int) else tuple(self.stride)
        pad = self.pad
        if isinstance(pad, int):
            pad = (pad,) * 4
        elif len(pad) == 2:  # (vertical, horizontal)
            pad = (pad[0], pad[1], pad[0], pad[1])
        object.__setattr__(self, "stride", tuple(int(s) for s in stride))
        object.__setattr__(self, "pad", tuple(int(p) for p in pad))
        for field in ("n", "cin", "h", "w", "cout", "kh", "kw", "groups"):
            if int(getattr(self, field)) < 1:
                raise SqnxtError(f"layer '{self.name}': {field} must be >= 1, not {getattr(self, field)}")
        if min(self.stride) < 1 or min(self.pad) < 0 or len(self.stride) != 2 or len(self.pad) != 4:
            raise SqnxtError(f"layer '{self.name}': bad stride {self.stride} or padding {self.pad}")
        if self.cin % self.groups or self.cout % self.groups:
            raise SqnxtError(f"layer '{self.name}': cin {self.cin} and cout {self.cout} must both be divisible "
                             f"by groups {self.groups}")
        if self.out_h < 1 or self.out_w < 1:
            raise SqnxtError(f"layer '{self.name}': kernel {self.kh}x{self.kw} does not fit the padded "
                             f"{self.h}x{self.w} input")

    @classmethod
    def conv2d(cls, cin: int, cout: int, hw: int | tuple[int, int], kernel: int | tuple[int, int] = 1,
               stride: int | tuple[int, int] = 1, pad: int | tuple[int, ...] | None = None, groups: int = 1,
               n: int = 1, name: str = "conv", residual: bool = False) -> "LayerSpec":
        """A conv2d with "same"-style padding (kernel // 2 per side) unless `pad` is given."""
        h, w = (hw, hw) if isinstance(hw, int) else hw
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if pad is None:
            pad = (kh // 2, kw // 2)
        return cls(n=n, cin=cin, h=h, w=w, cout=cout, kh=kh, kw=kw, stride=stride, pad=pad, groups=groups,
                   name=name, residual=residual)

    @classmethod
    def dense(cls, in_features: int, out_features: int, n: int = 1, name: str = "dense") -> "LayerSpec":
        return cls(n=n, cin=in_features, h=1, w=1, cout=out_features, name=name)

    @property
    def out_h(self) -> int:
        return (self.h + self.pad[0] + self.pad[2] - self.kh) // self.stride[0] + 1

    @property
    def out_w(self) -> int:
        return (self.w + self.pad[1] + self.pad[3] - self.kw) // self.stride[1] + 1

    @property
    def cin_per_group(self) -> int:
        return self.cin // self.groups

    @property
    def cout_per_group(self) -> int:
        return self.cout // self.groups

    @property
    def macs(self) -> int:
        return self.n * self.out_h * self.out_w * self.cout * self.kh * self.kw * self.cin_per_group

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.h, self.w, self.cin)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.cout, self.kh, self.kw, self.cin_per_group)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.out_h, self.out_w, self.cout)

    def describe(self) -> str:
        kind = "dense" if (self.h, self.w, self.kh, self.kw) == (1, 1, 1, 1) else "conv"
        groups = f" g{self.groups}" if self.groups > 1 else ""
        residual = " +residual" if self.residual else ""
        return (f"{kind} {self.cin}->{self.cout} {self.h}x{self.w} k{self.kh}x{self.kw} "
                f"s{self.stride[0]}x{self.stride[1]} p{','.join(map(str, self.pad))}{groups} n{self.n}{residual}")


@dataclass(frozen=True)
class Requant:
    """int32 accumulator -> int8 output:
    y = clip((((acc + bias) * multiplier + residual * residual_multiplier + 2^(shift-1)) >> shift) + zero_point),
    then ReLU (max with zero_point) if asked. `multiplier` is a scalar or one int32 per output channel; the
    residual term exists only for layers with `residual=True` (a SqueezeNext merge fused into the conv)."""

    multiplier: int | tuple[int, ...] = 1
    shift: int = 0
    zero_point: int = 0
    relu: bool = False
    residual_multiplier: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.multiplier, np.ndarray) or isinstance(self.multiplier, list):
            object.__setattr__(self, "multiplier", tuple(int(m) for m in self.multiplier))
        if not 0 <= self.shift < 63:
            raise SqnxtError(f"requantization shift must be in [0, 62], not {self.shift}")
        if not -128 <= self.zero_point <= 127:
            raise SqnxtError(f"output zero point must be an int8, not {self.zero_point}")

    @classmethod
    def from_scale(cls, scale: float | np.ndarray, zero_point: int = 0, relu: bool = False,
                   multiplier_bits: int = 30) -> "Requant":
        """Fixed-point form of a real rescale factor (one per output channel, or a scalar), e.g.
        input_scale * weight_scale / output_scale: the common shift that gives the largest multiplier
        `multiplier_bits` bits (the ALU multiplies in 64 bits: int32 accumulator x 30-bit multiplier).
        A channel whose scale is 2^-k of the largest keeps multiplier_bits - k bits of precision."""
        scales = np.asarray(scale, dtype=np.float64).reshape(-1)
        if scales.size == 0 or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise SqnxtError("requantization scales must be finite and positive")
        shift = int(np.clip(multiplier_bits - 1 - np.floor(np.log2(scales.max())), 0, 62))
        multipliers = np.maximum(np.rint(scales * 2.0 ** shift), 1).astype(np.int64)
        if multipliers.max() >= 2 ** 31:
            raise SqnxtError(f"requantization scale {scales.max():g} is too large for an int32 multiplier")
        multiplier = int(multipliers[0]) if np.ndim(scale) == 0 else tuple(int(m) for m in multipliers)
        return cls(multiplier=multiplier, shift=shift, zero_point=zero_point, relu=relu)

    def multipliers(self, cout: int) -> np.ndarray:
        """The per-channel multipliers as an int64 vector of length `cout`."""
        m = np.asarray(self.multiplier, dtype=np.int64).reshape(-1)
        if m.size == 1:
            return np.full(cout, m[0], dtype=np.int64)
        if m.size != cout:
            raise SqnxtError(f"requantization has {m.size} multipliers for {cout} output channels")
        return m

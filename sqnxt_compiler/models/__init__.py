"""The model zoo: every network the compiler ships, built as ONNX with seeded random (or shipped trained) weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import onnx

from ..errors import SqnxtError
from .classic import (build_alexnet, build_mobilenet_v2, build_resnet18, build_resnet_tiny, build_squeezenet10,
                      build_squeezenet11)
from .digits import RESOLUTION as DIGITS_RESOLUTION
from .digits import TRAINED, build_trained_squeezenext
from .squeezenext import SQUEEZENEXT_SPECS, build_squeezenext
from .thirdparty import THIRD_PARTY_SPECS, build_third_party_squeezenext


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str
    default_resolution: int
    builder: Callable[..., onnx.ModelProto]


def _entries() -> dict[str, ZooEntry]:
    entries: dict[str, ZooEntry] = {}
    for name in SQUEEZENEXT_SPECS:
        entries[name] = ZooEntry(name, "squeezenext (official)", 227,
                                 lambda n=name, **kw: build_squeezenext(n, **kw))
    for name in THIRD_PARTY_SPECS:
        entries[name] = ZooEntry(name, "squeezenext (pytorchcv-style)", 224,
                                 lambda n=name, **kw: build_third_party_squeezenext(n, **kw))
    for name in TRAINED:
        entries[name] = ZooEntry(name, "squeezenext (official), trained on digits", DIGITS_RESOLUTION,
                                 lambda n=name, **kw: build_trained_squeezenext(n, **kw))
    entries["squeezenet1.0"] = ZooEntry("squeezenet1.0", "classic", 227, build_squeezenet10)
    entries["squeezenet1.1"] = ZooEntry("squeezenet1.1", "classic", 224, build_squeezenet11)
    entries["resnet-18"] = ZooEntry("resnet-18", "classic", 224, build_resnet18)
    entries["mobilenet-v2"] = ZooEntry("mobilenet-v2", "classic", 224, build_mobilenet_v2)
    entries["alexnet"] = ZooEntry("alexnet", "classic", 227, build_alexnet)
    entries["resnet-tiny"] = ZooEntry("resnet-tiny", "classic", 64, build_resnet_tiny)
    return entries


ZOO: dict[str, ZooEntry] = _entries()
OFFICIAL_SQUEEZENEXT = tuple(SQUEEZENEXT_SPECS)


def list_models() -> list[str]:
    return list(ZOO)


def build_model(name: str, batch: int = 1, resolution: int | None = None, seed: int = 0) -> onnx.ModelProto:
    """Build zoo model `name`; `resolution` defaults to the model's own (227 official, 224 third-party)."""
    entry = ZOO.get(name)
    if entry is None:
        raise SqnxtError(f"unknown model '{name}'; known models: {', '.join(ZOO)}")
    if batch < 1 or (resolution is not None and resolution < 32):
        raise SqnxtError(f"model '{name}': batch must be >= 1 and resolution >= 32 (got {batch}, {resolution})")
    return entry.builder(batch=batch, resolution=resolution or entry.default_resolution, seed=seed)


def model_counts(model: onnx.ModelProto) -> tuple[int, int]:
    """(parameters, MACs) recorded by the zoo builder in the model's metadata."""
    meta = {p.key: p.value for p in model.metadata_props}
    return int(meta["params"]), int(meta["macs"])

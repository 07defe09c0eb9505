"""The accelerator description: array geometry, buffers, queues, DRAM and energy table, from a target file."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import SqnxtError
from ...target import load_target


@dataclass(frozen=True)
class EnergyTable:
    """Energy per event in picojoules; `source` cites where the numbers come from."""

    mac_pj: float
    register_file_pj_per_access: float
    buffer_pj_per_byte: float
    dram_pj_per_byte: float
    source: str = ""


@dataclass(frozen=True)
class AccelConfig:
    """One accelerator instance. Frozen and hashable, so tuners can use it as a cache key."""

    name: str
    rows: int
    cols: int
    clock_mhz: float
    alu_lanes: int
    input_bytes: int
    weight_bytes: int
    accumulator_bytes: int
    instruction_depth: int
    uop_entries: int
    dram_bytes_per_cycle: float
    dram_latency_cycles: int
    energy: EnergyTable
    path: str = ""

    @property
    def macs_per_cycle(self) -> int:
        return self.rows * self.cols

    def replace(self, **changes: Any) -> "AccelConfig":
        """A copy with some fields changed, e.g. `config.replace(dram_bytes_per_cycle=64)` for a sweep."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls, name_or_path: str | Path) -> "AccelConfig":
        """Load a built-in accelerator (`accel-16x16`, `accel-32x32`) or any accel target .toml file."""
        spec = load_target(str(name_or_path))
        if spec.kind != "accel" or "accel" not in spec.raw:
            raise SqnxtError(f"target '{spec.name}' ({spec.path}) is not an accelerator: it needs "
                             "kind = \"accel\" and an [accel] table")
        return cls.from_dict(spec.raw["accel"], name=spec.name, path=str(spec.path))

    @classmethod
    def from_dict(cls, accel: dict[str, Any], name: str = "accel", path: str = "") -> "AccelConfig":
        """Build from the [accel] table of a target file; every missing or non-positive field is named."""
        where = f"accelerator '{name}'" + (f" ({path})" if path else "")

        def field(table: str | None, key: str, kind: type = int, zero_ok: bool = False) -> Any:
            section = accel if table is None else accel.get(table, {})
            label = f"accel.{table}.{key}" if table else f"accel.{key}"
            if key not in section:
                raise SqnxtError(f"{where}: missing field '{label}'")
            value = section[key]
            too_small = value < 0 or (value == 0 and not zero_ok) if isinstance(value, (int, float)) else True
            if isinstance(value, bool) or too_small:
                raise SqnxtError(f"{where}: '{label}' must be a {'non-negative' if zero_ok else 'positive'} "
                                 f"number, not {value!r}")
            if kind is int and value != int(value):
                raise SqnxtError(f"{where}: '{label}' must be an integer, not {value!r}")
            return kind(value)

        geometry = dict(rows=field(None, "rows"), cols=field(None, "cols"),
                        clock_mhz=field(None, "clock_mhz", float), alu_lanes=field(None, "alu_lanes"))
        energy = EnergyTable(
            mac_pj=field("energy", "mac_pj", float),
            register_file_pj_per_access=field("energy", "register_file_pj_per_access", float),
            buffer_pj_per_byte=field("energy", "buffer_pj_per_byte", float),
            dram_pj_per_byte=field("energy", "dram_pj_per_byte", float),
            source=str(accel.get("energy", {}).get("source", "")),
        )
        return cls(
            name=name, **geometry,
            input_bytes=field("buffers", "input_bytes"), weight_bytes=field("buffers", "weight_bytes"),
            accumulator_bytes=field("buffers", "accumulator_bytes"),
            instruction_depth=field("queues", "instruction_depth"), uop_entries=field("queues", "uop_entries"),
            dram_bytes_per_cycle=field("dram", "bytes_per_cycle", float),
            dram_latency_cycles=field("dram", "latency_cycles", zero_ok=True),
            energy=energy, path=path,
        )


def known_accelerators() -> list[str]:
    """Names of the built-in accelerator target files (those with kind = "accel")."""
    from ...target import _target_dir

    return sorted(p.stem for p in _target_dir().glob("*.toml")
                  if tomllib.loads(p.read_text()).get("kind") == "accel")

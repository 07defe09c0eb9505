"""The accelerator tuning log: one JSON line per measured (layer, tiling), and the lookup compile time applies.

A record names its layer by `layer_key` (a hash of the layer's shape, not its name: SqueezeNext repeats
shapes, and the compiler names layers differently from the ONNX graph) and its accelerator by `config_key`
(a hash of every field that changes legality, cycles or energy), so a log written for accel-32x32 - or for
an edited accel-16x16.toml - is never applied to another accelerator. The file is appended to and flushed
after every record: a run killed at any moment loses at most a partial last line, which the next open drops
with a warning (`database.read_json_lines`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..accel.machine.config import AccelConfig
from ..accel.machine.layer import LayerSpec
from ..accel.machine.tiling import DATAFLOWS, Tiling, overflows
from ..errors import SqnxtError
from ..outputs import append_line
from .database import TuningLogWarning, read_json_lines

LOG_FILE = "accel_records.jsonl"
_SHAPE_FIELDS = ("n", "cin", "h", "w", "cout", "kh", "kw", "stride", "pad", "groups", "residual")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def layer_key(layer: LayerSpec) -> str:
    """A stable hash of the layer's shape (its name excluded)."""
    return _digest({name: getattr(layer, name) for name in _SHAPE_FIELDS})


def config_key(config: AccelConfig) -> str:
    """A stable hash of the accelerator's hardware (name, file path and energy citation excluded)."""
    fields = dataclasses.asdict(config)
    fields.pop("name"), fields.pop("path"), fields["energy"].pop("source")
    return _digest(fields)


@dataclass(frozen=True)
class AccelRecord:
    """One measurement: `layer` (layer_key) tiled by `tiling` on the accelerator `config_key` (named `config`)."""

    layer: str
    config: str
    config_key: str
    tiling: Tiling
    cycles: int
    energy_pj: float
    describe: str = ""   # the layer in words, for people reading the log

    def to_json(self) -> dict:
        return {"layer": self.layer, "describe": self.describe, "config": self.config,
                "config_key": self.config_key, "knobs": self.tiling.as_dict(), "cycles": self.cycles,
                "energy_pj": self.energy_pj}

    @classmethod
    def from_json(cls, entry: Any) -> "AccelRecord | None":
        """The record, or None when `entry` is not one (wrong keys or types)."""
        try:
            knobs = entry["knobs"]
            if knobs["dataflow"] not in DATAFLOWS or not isinstance(entry["cycles"], int) or entry["cycles"] <= 0:
                return None
            tiles = (int(knobs[k]) for k in ("tile_oh", "tile_ow", "tile_cout", "tile_cin"))
            tiling = Tiling(knobs["dataflow"], *tiles)
            return cls(str(entry["layer"]), str(entry["config"]), str(entry["config_key"]), tiling,
                       entry["cycles"], float(entry["energy_pj"]), str(entry.get("describe", "")))
        except (KeyError, TypeError, ValueError, SqnxtError):
            return None


class AccelLog:
    """The records of one log folder; `append` writes through to the file at once."""

    def __init__(self, log_dir: str | os.PathLike, create: bool = True):
        self.dir = Path(log_dir)
        self.path = self.dir / LOG_FILE
        if not self.path.is_file():
            if not create:
                raise SqnxtError(f"tuning log '{self.dir}' has no {LOG_FILE} (write one with "
                                 "sqnxt-tune --target <accelerator>)")
            self.dir.mkdir(parents=True, exist_ok=True)
        entries, problems = read_json_lines(self.path, lambda e: AccelRecord.from_json(e) is not None)
        for problem in problems:
            warnings.warn(f"tuning log {self.dir}: {problem}", TuningLogWarning, stacklevel=2)
        self.records = [AccelRecord.from_json(e) for e in entries]

    def append(self, record: AccelRecord) -> None:
        # one write of a whole line: a kill leaves at most this line partial (dropped on open); a full disk or
        # another write error leaves none
        append_line(self.path, json.dumps(record.to_json()), "the tuning log")
        self.records.append(record)

    def for_config(self, config: AccelConfig) -> list[AccelRecord]:
        key = config_key(config)
        return [r for r in self.records if r.config_key == key]


def _order(record: AccelRecord) -> tuple:
    """Fewest cycles, then least energy, then the knobs: the same best record on every read."""
    t = record.tiling
    return (record.cycles, record.energy_pj, t.dataflow, t.tile_oh, t.tile_ow, t.tile_cout, t.tile_cin)


def best_records(records: list[AccelRecord]) -> dict[str, AccelRecord]:
    """The best record per layer key."""
    best: dict[str, AccelRecord] = {}
    for record in records:
        if record.layer not in best or _order(record) < _order(best[record.layer]):
            best[record.layer] = record
    return best


class TunedTilings:
    """What `sqnxt-compile --tuning-log DIR` applies to an accelerator target: the best logged tiling of each
    layer measured on this very accelerator. Callable: `tuned(spec)` is the tiling, or None (use the default)."""

    def __init__(self, log_dir: str | os.PathLike, config: AccelConfig):
        log = AccelLog(log_dir, create=False)
        mine = log.for_config(config)
        self.log_dir, self.config = log.dir, config
        self.messages: list[str] = []
        foreign = [r for r in log.records if r.config_key != config_key(config)]
        if foreign:   # same name, other key: the target file was edited since (buffers, DRAM, energy...)
            names = sorted({r.config if r.config != config.name else f"an earlier {r.config}" for r in foreign})
            self.messages.append(f"{len(foreign)} records in {log.dir} were measured on another accelerator "
                                 f"({', '.join(names)}), not on this {config.name}; they are ignored")
        self.best = best_records(mine)
        self.applied: list[str] = []    # layer names that used a tuned tiling, in lookup order
        for message in self.messages:
            warnings.warn(message, TuningLogWarning, stacklevel=2)

    def __call__(self, layer: LayerSpec) -> Tiling | None:
        record = self.best.get(layer_key(layer))
        if record is None:
            return None
        problems = overflows(layer, self.config, record.tiling)
        if problems:   # only a hand-edited log gets here: the tuner measures legal tilings only
            message = f"tuned tiling of {layer.name} in {self.log_dir} does not fit: {problems[0]}; default used"
            warnings.warn(message, TuningLogWarning, stacklevel=2)
            self.messages.append(message)
            return None
        self.applied.append(layer.name)
        return record.tiling

"""Run a compiled library on a remote board through a TVM RPC tracker (upload, load, run, fetch outputs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SqnxtError
from .runtime import LoadedModel, read_sidecar


def parse_tracker(address: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port), with a one-line error naming the expected form."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SqnxtError(f"--rpc expects the tracker as HOST:PORT (e.g. 127.0.0.1:9190), got '{address}'")
    return host, int(port)


def _last_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[-1] if lines else type(err).__name__


@dataclass
class RemoteModel(LoadedModel):
    """A LoadedModel whose VM lives on the board: inputs are copied there, outputs fetched back."""

    session: object = None

    def benchmark(self, *inputs: np.ndarray, repeat: int = 20, warmup: int = 3) -> list[float]:
        """Per-run latencies in seconds, timed on the board itself (the network round trip excluded).
        `warmup` is accepted for LoadedModel's signature; TVM's time evaluator warms up once by itself
        (on an emulated board every extra run costs seconds)."""
        # The stateful API: inputs set once, then `main` timed by the board's own time_evaluator.
        self._vm.set_input("main", *self._to_device(inputs))
        timer = self._vm.time_evaluator("invoke_stateful", self._device, number=1, repeat=repeat)
        return list(timer("main").results)


def load_remote(library: str | os.PathLike, tracker: str, key: str, session_timeout: float = 0) -> RemoteModel:
    """Ask the tracker at `tracker` (HOST:PORT) for a board registered under `key`, upload `library` to it
    and create the Relax VM there. Blocks until such a board is free."""
    from tvm import rpc
    from tvm.runtime.vm import VirtualMachine

    path = Path(library)
    if not path.is_file():
        raise SqnxtError(f"library '{path}' does not exist")
    host, port = parse_tracker(tracker)
    # TVM's errors (tvm.error.RPCError, ...) derive from RuntimeError.
    try:
        session = rpc.connect_tracker(host, port).request(key, session_timeout=session_timeout)
    except (OSError, RuntimeError) as err:
        raise SqnxtError(f"cannot get a board with key '{key}' from the RPC tracker at {host}:{port}: "
                         f"{_last_line(err)}") from None
    session.upload(str(path))
    try:
        module = session.load_module(path.name)
    except RuntimeError as err:
        raise SqnxtError(f"the board (key '{key}') cannot load '{path.name}' (compiled for another "
                         f"target?): {_last_line(err)}") from None
    device = session.cpu(0)
    return RemoteModel(path, read_sidecar(path), VirtualMachine(module, device), device, session=session)

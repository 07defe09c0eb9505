"""Run a compiled library on a remote board through a TVM RPC tracker (upload, load, run, fetch outputs)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SqnxtError
from .runtime import LoadedModel, check_library_file, read_sidecar


def parse_tracker(address: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port), with a one-line error naming the expected form."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SqnxtError(f"--rpc expects the tracker as HOST:PORT (e.g. 127.0.0.1:9190), got '{address}'")
    return host, int(port)


TRACKER_TIMEOUT_S = 5.0   # a tracker that does not answer within this is as good as absent


def tracker_summary(host: str, port: int, timeout: float = TRACKER_TIMEOUT_S) -> dict:
    """The tracker's summary (`queue_info` and `server_info`: the boards registered per key), asked with a short
    timeout; TVM's own client retries a refused connection for 60 s and waits forever on a silent host."""
    import socket
    import struct

    from tvm.rpc import base

    where = f"{host}:{port}"
    start = f"start one there with `python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port {port}`"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
            if struct.unpack("<i", base.recvall(sock, 4))[0] != base.RPC_TRACKER_MAGIC:
                raise SqnxtError(f"{where} is not a TVM RPC tracker; check --rpc-tracker HOST:PORT")
            base.sendjson(sock, [base.TrackerCode.SUMMARY])
            code, summary = base.recvjson(sock)
    except TimeoutError:
        raise SqnxtError(f"the RPC tracker at {where} did not answer within {timeout:g} s; check --rpc-tracker "
                         f"HOST:PORT and the network, or {start}") from None
    except OSError as err:
        reason = err.strerror or _last_line(err)
        raise SqnxtError(f"cannot reach the RPC tracker at {where} ({reason[0].lower() + reason[1:]}); check "
                         f"--rpc-tracker HOST:PORT, or {start}") from None
    except (RuntimeError, ValueError, struct.error) as err:   # a service that speaks another protocol
        raise SqnxtError(f"{where} is not a TVM RPC tracker ({_last_line(err)}); check --rpc-tracker "
                         "HOST:PORT") from None
    if code != base.TrackerCode.SUCCESS or not isinstance(summary, dict):
        raise SqnxtError(f"the RPC tracker at {where} refused a status request; is it a TVM RPC tracker?")
    return summary


def registered_boards(summary: dict, key: str) -> int:
    """How many boards (RPC servers) are registered with `key`, busy or free."""
    return sum(str(item.get("key", "")).split(":", 1)[-1] == key for item in summary.get("server_info", []))


def check_board(host: str, port: int, key: str, timeout: float = TRACKER_TIMEOUT_S) -> int:
    """Fail in seconds, in one line naming the address or the key and the fix, unless the tracker at host:port
    answers and at least one board is registered there with `key`. Returns the number of such boards."""
    summary = tracker_summary(host, port, timeout)
    boards = registered_boards(summary, key)
    if not boards:
        keys = sorted({str(item.get("key", "")).split(":", 1)[-1] for item in summary.get("server_info", [])})
        known = f"registered keys: {', '.join(keys)}" if keys else "no board is registered at all"
        raise SqnxtError(f"no board with key '{key}' is registered at the RPC tracker {host}:{port} ({known}); "
                         f"check --rpc-key, or start one on the board: python -m tvm.exec.rpc_server "
                         f"--tracker {host}:{port} --key {key}")
    return boards


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
    check_library_file(path)
    host, port = parse_tracker(tracker)
    check_board(host, port, key)   # seconds, not TVM's 60 s of retries or a wait for a board that never comes
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

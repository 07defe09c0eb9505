"""Every CLI fails fast and clearly: per command, a matrix of bad files, bad flags, wrong paths, unreachable
services, full disks and interrupted writes.

The rule every error row checks: exit 2 and exactly one line on stderr, starting with `error:`, that names the
problem and the fix; no traceback; nothing partial left in the output folder; a log that was valid before stays
valid. (Interruptions exit 130 with one line.) Commands run in-process through their `main(argv)`; a row runs
them as a subprocess only where it must (a crash, C++ output, SIGKILL)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sqnxt_compiler
from sqnxt_compiler import outputs
from sqnxt_compiler.cli import compile as compile_cli
from sqnxt_compiler.cli import run as run_cli
from sqnxt_compiler.cli import sim as sim_cli
from sqnxt_compiler.cli import tune as tune_cli
from sqnxt_compiler.cli import zoo as zoo_cli
from sqnxt_compiler.models import build_model
from sqnxt_compiler.records.accel_log import LOG_FILE
from sqnxt_compiler.records.database import TuningLogWarning

from test_tuning import _free_port, _wait_for_key, _wait_for_port, two_conv_model

MAINS = {"compile": compile_cli.main, "run": run_cli.main, "tune": tune_cli.main, "sim": sim_cli.main,
         "zoo": zoo_cli.main}
NO_SPACE = os.strerror(errno.ENOSPC)
ROOT = os.geteuid() == 0
TINY = ["--model", "resnet-tiny", "--resolution", "32"]
ACCEL_TUNE = [*TINY, "--target", "accel-16x16"]


# --- what the rows share: input files, a compiled library, a tracker without boards ------------------------

def _start(*module_args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *module_args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def tracker():
    """A TVM RPC tracker on 127.0.0.1 with no board registered: HOST:PORT."""
    port = _free_port()
    process = _start("tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1))
    try:
        _wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


def _bad_conv_model() -> onnx.ModelProto:
    """Passes the ONNX checker, fails in TVM's importer (a Conv whose weight has the wrong input channels)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])
    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    return helper.make_model(helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                                               "badconv", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The rows' inputs: good, empty, truncated and foreign files, a folder, a regular file, a compiled library."""
    root = tmp_path_factory.mktemp("inputs")
    model = build_model("resnet-tiny", resolution=32).SerializeToString()
    (root / "tiny.onnx").write_bytes(model)
    (root / "empty.onnx").write_bytes(b"")
    (root / "truncated.onnx").write_bytes(model[: len(model) // 2])
    (root / "text.onnx").write_text("this is not an ONNX model\n")
    onnx.save(_bad_conv_model(), root / "badconv.onnx")
    (root / "folder").mkdir()
    (root / "a_file").write_text("a regular file\n")
    sqnxt_compiler.compile(root / "tiny.onnx", "host", output=root / "tiny.so")
    library = (root / "tiny.so").read_bytes()
    (root / "truncated.so").write_bytes(library[: len(library) // 3])
    (root / "empty.so").write_bytes(b"")
    (root / "text.so").write_text("not a library\n")
    shutil.copy(root / "tiny.so", root / "bad_sidecar.so")
    (root / "bad_sidecar.so.json").write_text('{"inputs": [')
    np.save(root / "image.npy", np.zeros((1, 3, 32, 32), np.float32))
    np.save(root / "wrong_shape.npy", np.zeros((1, 3, 16, 16), np.float32))
    image = (root / "image.npy").read_bytes()
    (root / "truncated.npy").write_bytes(image[: len(image) // 2])
    (root / "bad.toml").write_text("rows = [\n")
    return root


@dataclass
class Env:
    """Paths a row's arguments are made of: `f(name)` an input, `o(name)` in the row's own output folder."""

    files: Path
    out: Path
    tracker: str
    closed: str   # a 127.0.0.1 port nothing listens on

    def f(self, name: str) -> str:
        return str(self.files / name)

    def o(self, name: str) -> str:
        return str(self.out / name)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


def assert_one_line_error(code: int, err: str, fragments: tuple[str, ...], expected_code: int = 2,
                          prefix: str = "error: ") -> None:
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- injected faults -----------------------------------------------------------------------------------

def _fill_disk_halfway(path, data) -> None:
    """What a full disk does to a write: part of the data lands, then ENOSPC."""
    with open(path, "wb") as handle:
        handle.write((data.encode() if isinstance(data, str) else bytes(data))[: max(1, len(data) // 2)])
    raise OSError(errno.ENOSPC, NO_SPACE, str(path))


def full_disk_on(method: str, only: str = ""):
    """Path.write_bytes / Path.write_text filling the disk (for paths containing `only`)."""
    def inject(monkeypatch, env: Env) -> None:
        original = getattr(Path, method)

        def write(self, data, *args, **kwargs):
            if only not in str(self):
                return original(self, data, *args, **kwargs)
            _fill_disk_halfway(self, data)

        monkeypatch.setattr(Path, method, write)
    return inject


def full_disk_at_link(monkeypatch, env: Env) -> None:
    """The linker writing part of the library, then failing the way g++ does on a full disk."""
    from tvm.support import cc

    def link(output, objects, *args, **kwargs):
        with open(output, "wb") as handle:
            handle.write(b"\x7fELF" + b"\0" * 4096)
        raise RuntimeError("Compilation error:\n/usr/bin/ld: final link failed: No space left on device\n"
                           f"collect2: error: ld returned 1 exit status\n\nCommand line: /usr/bin/g++ -o {output}")

    monkeypatch.setattr(cc, "create_shared", link)


def interrupt_at_link(monkeypatch, env: Env) -> None:
    """Ctrl-C while the library is being linked (part of it written)."""
    from tvm.support import cc

    def link(output, objects, *args, **kwargs):
        Path(output).write_bytes(b"\x7fELF partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cc, "create_shared", link)


def full_disk_on_npy(monkeypatch, env: Env) -> None:
    monkeypatch.setattr(np, "save", lambda handle, array, *a, **k: _fill_disk_halfway(handle.name, array.tobytes()))


def permission_denied(monkeypatch, env: Env) -> None:
    """A folder the user may not write to (root ignores permissions, so the refusal is injected)."""
    def mkstemp(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

    monkeypatch.setattr(outputs.tempfile, "mkstemp", mkstemp)


def no_free_space(monkeypatch, env: Env) -> None:
    usage = shutil.disk_usage(env.out)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=4096))


def read_only_folder(monkeypatch, env: Env) -> None:
    if ROOT:
        pytest.skip("running as root, which ignores folder permissions (the injected EACCES rows cover it)")
    folder = env.out / "read_only"
    folder.mkdir()
    folder.chmod(0o555)


def seed_accel_log(monkeypatch, env: Env) -> None:
    """A valid accelerator tuning log of 10 records, which the row must leave valid."""
    assert tune_cli.main([*ACCEL_TUNE, "--trials", "10", "--log", env.o("log")]) == 0


def accel_log_fails_after(appends: int, error: Callable[[str], BaseException]):
    """A valid log, then a tuning run whose append number `appends` writes half a line and fails."""
    def inject(monkeypatch, env: Env) -> None:
        seed_accel_log(monkeypatch, env)
        calls = []
        original = outputs._write_all

        def write_all(fd: int, data: bytes) -> None:
            calls.append(data)
            if len(calls) < appends:
                return original(fd, data)
            os.write(fd, data[: len(data) // 2])
            raise error(env.o("log"))

        monkeypatch.setattr(outputs, "_write_all", write_all)
    return inject


def _full(path: str) -> OSError:
    return OSError(errno.ENOSPC, NO_SPACE, path)


def _ctrl_c(path: str) -> BaseException:
    return KeyboardInterrupt()


# --- the matrix ----------------------------------------------------------------------------------------

@dataclass
class Row:
    args: Callable[[Env], list[str]]
    fragments: tuple[str, ...]
    inject: Callable | None = None
    code: int = 2
    prefix: str = "error: "
    log: str | None = None   # an output-folder log that must stay valid (accelerator records)


def row(tool: str, case: str, args, *fragments: str, **options):
    return pytest.param(tool, Row(args, fragments, **options), id=f"{tool}-{case}")


ROWS = [
    # sqnxt-compile
    row("compile", "missing-file", lambda e: [e.f("nope.onnx"), "-o", e.o("m.so")], "nope.onnx", "does not exist"),
    row("compile", "empty-file", lambda e: [e.f("empty.onnx"), "-o", e.o("m.so")], "empty.onnx", "no nodes"),
    row("compile", "truncated-file", lambda e: [e.f("truncated.onnx"), "-o", e.o("m.so")], "truncated.onnx",
        "not a valid ONNX file"),
    row("compile", "not-onnx", lambda e: [e.f("text.onnx"), "-o", e.o("m.so")], "text.onnx", "not a valid ONNX"),
    row("compile", "model-is-a-folder", lambda e: [e.f("folder"), "-o", e.o("m.so")], "is a folder"),
    row("compile", "unknown-flag", lambda e: [e.f("tiny.onnx"), "--bogus"], "unrecognized arguments: --bogus",
        "sqnxt-compile --help"),
    row("compile", "bad-flag-value", lambda e: [*TINY[:2], "--batch", "x"], "--batch", "invalid int value"),
    row("compile", "no-model", lambda e: ["-o", e.o("m.so")], "either an ONNX file or --model"),
    row("compile", "unknown-target", lambda e: [e.f("tiny.onnx"), "--target", "pentium"], "unknown target 'pentium'"),
    row("compile", "bad-input-shape", lambda e: [e.f("tiny.onnx"), "--input-shape", "data=1,x"], "bad --input-shape"),
    row("compile", "output-is-a-folder", lambda e: [e.f("tiny.onnx"), "-o", str(e.out)], "is a folder",
        "give a file name"),
    row("compile", "output-under-a-file", lambda e: [e.f("tiny.onnx"), "-o", e.f("a_file") + "/m.so"],
        "a_file' is a file, not a folder"),
    row("compile", "output-folder-read-only", lambda e: [e.f("tiny.onnx"), "-o", e.o("read_only/m.so")],
        "not writable", inject=read_only_folder),
    row("compile", "dump-ir-is-a-file", lambda e: [e.f("tiny.onnx"), "-o", e.o("m.so"), "--dump-ir", e.f("a_file")],
        "--dump-ir folder", "is a file"),
    row("compile", "tuning-log-is-a-file", lambda e: [e.f("tiny.onnx"), "-o", e.o("m.so"), "--tuning-log",
                                                      e.f("a_file")], "not a directory"),
    row("compile", "calibration-missing", lambda e: [e.f("tiny.onnx"), "--target", "accel-16x16", "-o", e.o("m.so"),
                                                     "--calibrate", e.f("nope.npy")], "nope.npy", "does not exist"),
    row("compile", "full-disk-linking", lambda e: [e.f("tiny.onnx"), "-o", e.o("m.so")],
        "no space left on the device holding", "m.so", "needs about", inject=full_disk_at_link),
    row("compile", "full-disk-sidecar", lambda e: [e.f("tiny.onnx"), "-o", e.o("m.so")],
        "no space left on the device holding", "sidecar", inject=full_disk_on("write_text", ".so.json.")),
    row("compile", "interrupted-linking", lambda e: [e.f("tiny.onnx"), "-o", e.o("m.so")], "interrupted",
        inject=interrupt_at_link, code=130, prefix="interrupted"),
    # sqnxt-run
    row("run", "missing-library", lambda e: [e.f("nope.so")], "nope.so", "does not exist"),
    row("run", "empty-library", lambda e: [e.f("empty.so")], "empty.so", "not a shared library"),
    row("run", "not-a-library", lambda e: [e.f("text.so")], "text.so", "not a shared library"),
    row("run", "library-is-a-folder", lambda e: [e.f("folder")], "is a folder"),
    row("run", "corrupt-sidecar", lambda e: [e.f("bad_sidecar.so")], "bad_sidecar.so.json", "corrupt"),
    row("run", "input-missing", lambda e: [e.f("tiny.so"), "--input", e.f("nope.npy")], "nope.npy", "does not exist"),
    row("run", "input-truncated", lambda e: [e.f("tiny.so"), "--input", e.f("truncated.npy")], "truncated.npy",
        "not a valid .npy"),
    row("run", "input-is-a-folder", lambda e: [e.f("tiny.so"), "--input", e.f("folder")], "is a folder"),
    row("run", "input-wrong-shape", lambda e: [e.f("tiny.so"), "--input", e.f("wrong_shape.npy")],
        "must have shape (1, 3, 32, 32)"),
    row("run", "unknown-flag", lambda e: [e.f("tiny.so"), "--bogus"], "unrecognized arguments: --bogus"),
    row("run", "bad-flag-value", lambda e: [e.f("tiny.so"), "--repeat", "x"], "--repeat", "invalid int value"),
    row("run", "output-is-a-folder", lambda e: [e.f("tiny.so"), "--output", str(e.out)], "is a folder"),
    row("run", "output-under-a-file", lambda e: [e.f("tiny.so"), "--output", e.f("a_file") + "/o.npy"],
        "is a file, not a folder"),
    row("run", "output-permission-denied", lambda e: [e.f("tiny.so"), "--repeat", "0", "--output", e.o("o.npy")],
        "o.npy", "Permission denied", inject=permission_denied),
    row("run", "output-full-disk", lambda e: [e.f("tiny.so"), "--repeat", "0", "--output", e.o("o.npy")],
        "no space left on the device holding", "o.npy", inject=full_disk_on_npy),
    row("run", "rpc-tracker-unreachable", lambda e: [e.f("tiny.so"), "--rpc", e.closed, "--rpc-key", "k"],
        "cannot reach the RPC tracker", "connection refused", "rpc_tracker"),
    row("run", "rpc-key-without-board", lambda e: [e.f("tiny.so"), "--rpc", e.tracker, "--rpc-key", "nokey"],
        "no board with key 'nokey'", "rpc_server"),
    row("run", "rpc-without-key", lambda e: [e.f("tiny.so"), "--rpc", e.tracker], "--rpc-key"),
    row("run", "rpc-bad-address", lambda e: [e.f("tiny.so"), "--rpc", "nohost", "--rpc-key", "k"], "HOST:PORT"),
    # sqnxt-tune
    row("tune", "missing-file", lambda e: [e.f("nope.onnx"), "--log", e.o("log")], "nope.onnx", "does not exist"),
    row("tune", "empty-file", lambda e: [e.f("empty.onnx"), "--log", e.o("log")], "no nodes"),
    row("tune", "truncated-file", lambda e: [e.f("truncated.onnx"), "--log", e.o("log")], "not a valid ONNX file"),
    row("tune", "not-onnx", lambda e: [e.f("text.onnx"), "--log", e.o("log")], "not a valid ONNX file"),
    row("tune", "zero-trials", lambda e: [*TINY, "--trials", "0", "--log", e.o("log")], "--trials must be positive"),
    row("tune", "bad-flag-value", lambda e: [*TINY, "--trials", "x"], "--trials", "invalid int value"),
    row("tune", "bad-choice", lambda e: [*TINY, "--space", "bogus"], "--space", "invalid choice"),
    row("tune", "zero-top-tasks", lambda e: [*TINY, "--top-tasks", "0", "--log", e.o("log")], "--top-tasks"),
    row("tune", "log-is-a-file", lambda e: [*TINY, "--trials", "2", "--log", e.f("a_file")], "a_file",
        "is a file, not a folder"),
    row("tune", "log-under-a-file", lambda e: [*TINY, "--log", e.f("a_file") + "/log"], "is a file, not a folder"),
    row("tune", "accel-log-is-a-file", lambda e: [*ACCEL_TUNE, "--log", e.f("a_file")], "is a file, not a folder"),
    row("tune", "rpc-tracker-unreachable", lambda e: [*TINY, "--target", "arm", "--trials", "2", "--log", e.o("log"),
                                                      "--rpc-tracker", e.closed, "--rpc-key", "k"],
        "cannot reach the RPC tracker", "connection refused", "--rpc-tracker HOST:PORT"),
    row("tune", "rpc-key-without-board", lambda e: [*TINY, "--trials", "2", "--log", e.o("log"), "--rpc-tracker",
                                                    e.tracker, "--rpc-key", "nokey"],
        "no board with key 'nokey'", "check --rpc-key", "rpc_server"),
    row("tune", "rpc-bad-address", lambda e: [*TINY, "--rpc-tracker", "nohost"], "expected HOST:PORT"),
    row("tune", "rpc-without-key", lambda e: [*TINY, "--rpc-tracker", e.tracker], "needs --rpc-key"),
    row("tune", "full-disk-before-tuning", lambda e: [*TINY, "--trials", "2", "--log", e.o("log")],
        "not enough space", "tuning log", inject=no_free_space),
    row("tune", "accel-full-disk-mid-run", lambda e: [*ACCEL_TUNE, "--trials", "40", "--log", e.o("log")],
        "no space left on the device holding", LOG_FILE, inject=accel_log_fails_after(3, _full), log="log"),
    row("tune", "accel-interrupted-mid-write", lambda e: [*ACCEL_TUNE, "--trials", "40", "--log", e.o("log")],
        "re-run the same command to continue", inject=accel_log_fails_after(3, _ctrl_c), log="log", code=130,
        prefix="interrupted"),
    # sqnxt-sim
    row("sim", "unknown-command", lambda e: ["bogus"], "invalid choice: 'bogus'", "sqnxt-sim --help"),
    row("sim", "missing-flag", lambda e: ["layer", "--cin", "4"], "required: --cout"),
    row("sim", "bad-flag-value", lambda e: ["layer", "--cin", "x", "--cout", "4"], "--cin", "invalid int value"),
    row("sim", "bad-layer", lambda e: ["layer", "--cin", "0", "--cout", "4"], "cin must be >= 1"),
    row("sim", "bad-kernel", lambda e: ["layer", "--cin", "4", "--cout", "4", "--kernel", "3y3"], "--kernel"),
    row("sim", "config-missing", lambda e: ["layer", "--cin", "4", "--cout", "4", "--config", e.f("nope.toml")],
        "nope.toml", "does not exist"),
    row("sim", "config-not-toml", lambda e: ["layer", "--cin", "4", "--cout", "4", "--config", e.f("bad.toml")],
        "bad.toml", "not valid TOML"),
    row("sim", "unknown-model", lambda e: ["study", "--models", "nope", "--out", e.o("study")], "unknown model 'nope'"),
    row("sim", "out-is-a-file", lambda e: ["study", "--models", "resnet-tiny", "--out", e.f("a_file")],
        "is a file, not a folder"),
    row("sim", "out-under-a-file", lambda e: ["study", "--models", "resnet-tiny", "--out", e.f("a_file") + "/s"],
        "is a file, not a folder"),
    row("sim", "study-full-disk", lambda e: ["study", "--models", "resnet-tiny", "--configs", "accel-16x16",
                                            "--resolution", "32", "--shortlist", "1", "--out", e.o("study")],
        "no space left on the device holding", inject=full_disk_on("write_text", "study")),
    # sqnxt-zoo
    row("zoo", "no-command", lambda e: [], "required: command"),
    row("zoo", "unknown-model", lambda e: ["export", "nope", "-o", e.o("m.onnx")], "unknown model 'nope'"),
    row("zoo", "unknown-flag", lambda e: ["list", "--bogus"], "unrecognized arguments: --bogus"),
    row("zoo", "missing-output-flag", lambda e: ["export", "resnet-tiny"], "-o/--output"),
    row("zoo", "bad-resolution", lambda e: ["export", "resnet-tiny", "-o", e.o("m.onnx"), "--resolution", "0"],
        "resolution >= 32"),
    row("zoo", "output-is-a-folder", lambda e: ["export", "resnet-tiny", "-o", str(e.out)], "is a folder",
        "resnet-tiny.onnx"),
    row("zoo", "output-under-a-file", lambda e: ["export", "resnet-tiny", "-o", e.f("a_file") + "/m.onnx"],
        "is a file, not a folder"),
    row("zoo", "output-folder-read-only", lambda e: ["export", "resnet-tiny", "-o", e.o("read_only/m.onnx")],
        "not writable", inject=read_only_folder),
    row("zoo", "output-permission-denied", lambda e: ["export", "resnet-tiny", "-o", e.o("m.onnx")],
        "Permission denied", inject=permission_denied),
    row("zoo", "output-full-disk", lambda e: ["export", "resnet-tiny", "-o", e.o("m.onnx")],
        "no space left on the device holding", "m.onnx", inject=full_disk_on("write_bytes")),
]


def _log_lines(path: Path) -> list[str]:
    text = path.read_text()
    assert not text or text.endswith("\n"), "the log ends in a partial line"
    lines = text.splitlines()
    for line in lines:
        json.loads(line)
    return lines


@pytest.mark.parametrize("tool, case", ROWS)
def test_error_row(tool: str, case: Row, files: Path, tracker: str, tmp_path: Path, monkeypatch, capfd) -> None:
    env = Env(files, tmp_path, tracker, f"127.0.0.1:{_free_port()}")
    if case.inject is not None:
        case.inject(monkeypatch, env)
    log = tmp_path / case.log / LOG_FILE if case.log else None
    logged = _log_lines(log) if log else []
    before = _snapshot(tmp_path)
    inputs = _snapshot(files)
    capfd.readouterr()
    started = time.perf_counter()
    code = MAINS[tool](case.args(env))
    elapsed = time.perf_counter() - started
    out, err = capfd.readouterr()
    assert_one_line_error(code, err, case.fragments, case.code, case.prefix)
    assert elapsed < 60, f"took {elapsed:.0f} s to fail"
    if log is None:
        assert _snapshot(tmp_path) == before, "the failed command left files behind"
    else:   # the log grew by whole records at most: every line valid, the earlier ones unchanged
        assert _log_lines(log)[: len(logged)] == logged
    assert _snapshot(files) == inputs


# --- rows that need their own process --------------------------------------------------------------------

def _subprocess(tool: str, *args: str, prelude: str = "", **popen) -> subprocess.Popen:
    code = f"import sys\n{prelude}\nfrom sqnxt_compiler.cli.{tool} import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def test_run_truncated_library_is_an_error_not_a_crash(files: Path) -> None:
    """The dynamic loader maps a truncated ELF file and the process died of SIGBUS (exit -7, no message)."""
    proc = _subprocess("run", str(files / "truncated.so"))
    out, err = proc.communicate(timeout=120)
    assert_one_line_error(proc.returncode, err, ("truncated.so", "is truncated", "recompile"))


def test_compile_import_error_prints_only_our_line(files: Path, tmp_path: Path) -> None:
    """TVM's importer printed `Error converting operator Conv, ...` (Python) and `Warning: BlockBuilder destroyed
    with remaining blocks!` (C++, straight to fd 2) around our line."""
    proc = _subprocess("compile", str(files / "badconv.onnx"), "-o", str(tmp_path / "m.so"))
    out, err = proc.communicate(timeout=300)
    assert_one_line_error(proc.returncode, err, ("importing 'badconv' into TVM failed", "channel"))
    assert "Error converting" not in out + err and "BlockBuilder" not in out + err and not out.strip()
    assert list(tmp_path.iterdir()) == []
    debug = subprocess.run(proc.args, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "SQNXT_DEBUG": "1"})
    assert "Error converting operator Conv" in debug.stderr   # SQNXT_DEBUG=1 shows TVM's own lines


SLOW_LINK = """
import time
from pathlib import Path
from tvm.support import cc
def link(output, objects, *args, **kwargs):
    Path(output).write_bytes(b"\\x7fELF" + b"\\0" * 4096)   # part of the library, then the kill
    time.sleep(600)
cc.create_shared = link
"""


def _wait_until(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_compile_killed_while_writing_the_library(files: Path, tmp_path: Path, capfd) -> None:
    """SIGKILL mid-write: no library or sidecar at the output path, only a hidden temporary, which the next
    run removes."""
    library = tmp_path / "m.so"
    proc = _subprocess("compile", str(files / "tiny.onnx"), "-o", str(library), prelude=SLOW_LINK,
                       start_new_session=True)
    partial = lambda: [p for p in tmp_path.iterdir() if p.name.startswith(".m.so.") and p.stat().st_size]  # noqa: E731
    _wait_until(lambda: bool(partial()), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not library.exists() and not (tmp_path / "m.so.json").exists()
    assert compile_cli.main([str(files / "tiny.onnx"), "-o", str(library)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.so", "m.so.json"]   # the orphan is gone
    assert sqnxt_compiler.load(library).run(np.zeros((1, 3, 32, 32), np.float32))[0].shape == (1, 10)


SLOW_APPEND = """
import os, time
from sqnxt_compiler import outputs
calls = []
original = outputs._write_all
def write_all(fd, data):
    calls.append(1)
    if len(calls) < 3:
        return original(fd, data)
    os.write(fd, data[: len(data) // 2])   # half a record, then the kill
    time.sleep(600)
outputs._write_all = write_all
"""


def test_tune_killed_while_writing_the_log(tmp_path: Path, capfd) -> None:
    """SIGKILL mid-record: the records before stay valid; the next run drops the partial line with a warning
    and continues."""
    log = tmp_path / "log"
    assert tune_cli.main([*ACCEL_TUNE, "--trials", "10", "--log", str(log)]) == 0
    records = log / LOG_FILE
    valid = _log_lines(records)
    proc = _subprocess("tune", *ACCEL_TUNE, "--trials", "40", "--log", str(log), prelude=SLOW_APPEND,
                       start_new_session=True)
    _wait_until(lambda: not records.read_text().endswith("\n"), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    complete = records.read_text().splitlines()[:-1]
    assert complete[: len(valid)] == valid and len(complete) == len(valid) + 2
    capfd.readouterr()
    with pytest.warns(TuningLogWarning, match=f"{LOG_FILE} line {len(complete) + 1} is corrupt and was skipped"):
        assert tune_cli.main([*ACCEL_TUNE, "--trials", "40", "--log", str(log)]) == 0
    assert "Traceback" not in capfd.readouterr().err
    assert _log_lines(records)[: len(complete)] == complete and len(_log_lines(records)) == 40


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 300 KiB tmpfs (needs root and mount permission; skipped otherwise)."""
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(folder)], capture_output=True,
                          text=True) if ROOT and shutil.which("mount") else None
    if done is None or done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() if done else 'not root'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_compile_onto_a_full_tmpfs(files: Path, small_disk: Path, capfd) -> None:
    """A real full disk: g++ fails with "No space left on device" (was: internal error, exit 3)."""
    code = compile_cli.main([str(files / "tiny.onnx"), "-o", str(small_disk / "m.so")])
    assert_one_line_error(code, capfd.readouterr().err, ("no space left on the device holding", "needs about"))
    assert list(small_disk.iterdir()) == []


# --- the other fixes of the issue ------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["output-shape-cleared", "output-type-cleared"])
def test_model_without_output_shapes_compiles(damage: str, tmp_path: Path) -> None:
    """Graph outputs without a shape fail the ONNX checker, yet ONNX Runtime runs the model: infer them."""
    from utils import compile_and_compare

    model = build_model("resnet-tiny", resolution=32)
    output_type = model.graph.output[0].type
    output_type.tensor_type.ClearField("shape") if damage == "output-shape-cleared" else output_type.Clear()
    compile_and_compare(model, tmp_path)
    meta = json.loads((tmp_path / f"{model.graph.name}.so.json").read_text())
    assert meta["outputs"][0]["shape"] == [1, 10]


def test_sidecar_tells_the_bare_runtime_its_threads(files: Path) -> None:
    """Plain tvm.runtime.load_module runs on half the logical CPUs on x86 (one core on this 2-vCPU machine):
    the sidecar says what to set, and with it set the runtime uses every core the library was built for."""
    from sqnxt_compiler.target import load_target

    env = json.loads((files / "tiny.so.json").read_text())["runtime_env"]
    cores = load_target("host").cpu["cores"]
    assert env == {"TVM_NUM_THREADS": str(cores), "TVM_BIND_THREADS": "0"}
    code = "import tvm; print(tvm.get_global_func('runtime.NumThreads')())"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TVM_")}
    threads = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env},
                             timeout=120, check=True).stdout
    assert int(threads) == cores


def test_tune_without_terminal_prints_progress_lines(tmp_path: Path, monkeypatch, capsys) -> None:
    """`sqnxt-tune ... > tune.log` printed nothing for the whole run (the live view draws on the terminal)."""
    monkeypatch.setattr(tune_cli, "PLAIN_PROGRESS_PERIOD_S", 0.0)
    assert tune_cli.main([*ACCEL_TUNE, "--trials", "30", "--log", str(tmp_path / "log")]) == 0
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if " trials " in line and "time left" in line]
    assert out.startswith("sqnxt-tune: tuning until") and len(progress) >= 3, out
    assert "est. latency" in progress[-1] and "apply with: sqnxt-compile" in out


def test_plain_progress_period_and_tenths(tmp_path: Path, capsys) -> None:
    """A line at the first event, then every period or every tenth of the trials, whichever comes first."""
    display = tune_cli._PlainProgress(100, tmp_path, period_s=3600)
    event = {"trials_done": 0, "trials_budget": 100, "failed": 0, "tasks_timed": 1, "tasks_total": 2,
             "estimated_latency_ms": 1.5, "task": "conv", "task_best_ms": 0.1, "eta_s": 60.0}
    with display:
        for done in range(1, 101):
            display.update({**event, "trials_done": done})
    lines = [line for line in capsys.readouterr().out.splitlines() if "trials " in line and "time left" in line]
    assert [line.split("trials ")[1].split("/")[0] for line in lines] == [str(n) for n in (1, *range(10, 101, 10))]


# --- a board that disappears mid-run ---------------------------------------------------------------------

def _seed_cpu_log(log: Path, model: onnx.ModelProto):
    """A valid CPU tuning log holding each kernel's default schedule (as if measured), without a measurement."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms
    from tvm.tirx import FloatImm

    from sqnxt_compiler.schedules import find_rule
    from sqnxt_compiler.target import load_target
    from sqnxt_compiler.tuning import extract_tuning_tasks, open_database

    spec = load_target("host")
    database = open_database(log)
    for task in extract_tuning_tasks(model, spec):
        sch = s_tir.Schedule(task.mod)
        find_rule(task.mod["main"], spec).apply(sch, spec)
        args = ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
        database.commit_tuning_record(ms.database.TuningRecord(
            sch.trace, database.commit_workload(task.mod), [FloatImm("float32", 1e-5)], spec.tvm_target(), args))
    return spec


def test_a_log_killed_before_its_last_newline_resumes(tmp_path: Path) -> None:
    """A run killed between a record's line and its newline leaves the last line whole but unterminated: the log
    reopens with the newline added, so the next record starts a line of its own."""
    from sqnxt_compiler.records.database import RECORDS
    from sqnxt_compiler.tuning import open_database

    log = tmp_path / "log"
    _seed_cpu_log(log, two_conv_model())
    records = log / RECORDS
    records.write_bytes(records.read_bytes().rstrip(b"\n"))
    database = open_database(log)
    database.commit_tuning_record(database.get_all_tuning_records()[0])
    lines = records.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_tune_board_leaves_mid_run(tracker: str, tmp_path: Path, monkeypatch) -> None:
    """The board passes the pre-check, then goes: the run stops at its first failed batch with one line
    (what was measured, the log, how to continue), that batch is not logged, and the log stays valid. (The
    kernels' default schedules are in the log already, so the batch is the search's: the error crosses TVM's
    task scheduler from our measure callback.) meta_schedule's TuneContext imports tvm.s_tir.tensor_intrin,
    20-55 s of parsing CUDA intrinsics that no CPU space of ours uses: this test stands an empty module in."""
    import types

    from sqnxt_compiler import remote
    from sqnxt_compiler.errors import SqnxtError
    from sqnxt_compiler.tuning import open_database, tune, tuner
    from sqnxt_compiler.records.database import RECORDS
    from sqnxt_compiler.tuning.measure import RpcOptions

    if "tvm.s_tir.tensor_intrin" not in sys.modules:
        monkeypatch.setitem(sys.modules, "tvm.s_tir.tensor_intrin", types.ModuleType("tvm.s_tir.tensor_intrin"))
    log = tmp_path / "log"
    spec = _seed_cpu_log(log, two_conv_model())
    logged = (log / RECORDS).read_text()
    host, port = tracker.split(":")
    server_port = _free_port()
    board = _start("tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(server_port), "--port-end",
                   str(server_port + 1), "--tracker", tracker, "--key", "leaving")
    real_check = tuner.check_board

    def check_then_unplug(*args, **kwargs):
        boards = real_check(*args, **kwargs)
        _stop(board)
        while remote.registered_boards(remote.tracker_summary(host, int(port)), "leaving"):
            time.sleep(0.1)
        return boards

    try:
        _wait_for_key(int(port), "leaving")
        monkeypatch.setattr(tuner, "check_board", check_then_unplug)
        with pytest.raises(SqnxtError) as lost:
            tune(two_conv_model(), spec, log, trials=10, rpc=RpcOptions.parse(tracker, "leaving"))
    finally:
        _stop(board)
    message = str(lost.value)
    assert message.startswith("tuning stopped: no board with key 'leaving'") and "\n" not in message
    assert "0 trials measured" in message and "2 in the log" in message and "re-run the same command" in message
    assert (log / RECORDS).read_text() == logged   # the failed batch was not logged
    assert len(open_database(log).get_all_tuning_records()) == 2


def test_board_gone_while_measuring_the_default_schedules(tmp_path: Path) -> None:
    """The first batch of a fresh log is the kernels' default schedules: when all of them fail and the board is
    gone, nothing is logged (logged failures would count as trials and the defaults would never be measured)."""
    from types import SimpleNamespace

    from sqnxt_compiler.target import load_target
    from sqnxt_compiler.tuning import extract_tuning_tasks, open_database
    from sqnxt_compiler.tuning.measure import BoardGone
    from sqnxt_compiler.tuning.progress import TaskProgress
    from sqnxt_compiler.tuning.tuner import _measure_default_schedules

    spec = load_target("host")
    tasks = extract_tuning_tasks(two_conv_model(), spec)
    progress = [TaskProgress.from_task(task, {}) for task in tasks]
    database = open_database(tmp_path / "log")
    built = SimpleNamespace(error_msg=None, artifact_path=str(tmp_path / "kernel.so"))
    gone = SimpleNamespace(error_msg="RPCRunner: An exception occurred\nno board with key 'k'", run_secs=None)
    builder = SimpleNamespace(build=lambda inputs: [built for _ in inputs])
    runner = SimpleNamespace(run=lambda inputs: [SimpleNamespace(result=lambda: gone) for _ in inputs])

    def board_check() -> None:
        raise BoardGone("no board with key 'k' is registered")

    with pytest.raises(BoardGone):
        _measure_default_schedules(tasks, progress, spec, builder, runner, database, [], board_check)
    assert database.get_all_tuning_records() == [] and all(p.trials == 0 for p in progress)
    # with the board still there the failures are the schedules': they are logged as trials
    assert _measure_default_schedules(tasks, progress, spec, builder, runner, database, [], lambda: None) == (2, 2)
    assert len(database.get_all_tuning_records()) == 2


def test_board_watch_checks_only_failed_batches() -> None:
    from types import SimpleNamespace

    from sqnxt_compiler.tuning.measure import BoardGone, BoardWatch

    checks = []

    def check() -> None:
        checks.append(1)
        raise BoardGone("no board with key 'k'")

    watch = BoardWatch(check)
    ok, failed = SimpleNamespace(error_msg=None, run_secs=[1e-5]), SimpleNamespace(error_msg="timeout", run_secs=None)
    watch._inst.apply(None, 0, [], [], [ok, failed])   # the Python object behind TVM's (as the scheduler calls it)
    assert not checks and watch.gone is None
    with pytest.raises(BoardGone):
        watch._inst.apply(None, 0, [], [], [failed, failed])
    assert checks == [1] and watch.gone == "no board with key 'k'"

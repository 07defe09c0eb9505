"""ARM deployment, proven under user-mode emulation: the aarch64 libraries that `--target arm` (and other
ARM target files) produce run from the emulated Python (`sqnxt-run`, the Python API), from the C++ runner
cross-built for aarch64, and on an emulated board behind a TVM RPC tracker, matching the host build.

Locally a missing emulator skips these tests with the fix; in CI (`CI` or SQNXT_REQUIRE_EMULATION set)
it fails them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import sqnxt_compiler
from sqnxt_compiler import emulation
from sqnxt_compiler.models import build_model
from sqnxt_compiler.verify import relative_error

from utils import elf_machine, seeded_input

MODEL = "1.0-SqNxt-23"
BOUND = 1e-4
REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
EMULATED_TIMEOUT = 600  # seconds; one emulated 1.0-SqNxt-23 run takes a few seconds here


# --- the builds every test shares (the emulated environment, `aarch64_env`, is in conftest.py) ---------

@dataclass
class Build:
    """A compiled library, the input it is run on, and (for ARM builds) the host build's output for it."""

    library: Path
    input_file: Path
    reference: np.ndarray | None = None


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("arm_emulation")


@pytest.fixture(scope="session")
def host_build(workdir) -> Build:
    result = sqnxt_compiler.compile(build_model(MODEL), target="host", output=workdir / "host.so")
    input_file = workdir / "input.npy"
    np.save(input_file, seeded_input(result.inputs[0].shape))
    (output,) = sqnxt_compiler.load(result.library).run(np.load(input_file))
    return Build(result.library, input_file, output)


def _arm_build(workdir: Path, host_build: Build, target: str, **compile_kwargs) -> Build:
    suffix = "_tuned" if compile_kwargs.get("tuning_log") else ""
    result = sqnxt_compiler.compile(build_model(MODEL), target=target, output=workdir / f"{target}{suffix}.so",
                                    **compile_kwargs)
    assert elf_machine(result.library) == "aarch64"
    return Build(result.library, host_build.input_file, host_build.reference)


@pytest.fixture(scope="session")
def arm_build(workdir, host_build) -> Build:
    return _arm_build(workdir, host_build, "arm")


@pytest.fixture(scope="session", params=["graviton2", pytest.param("rk3399", marks=pytest.mark.slow)])
def other_arm_build(request, workdir, host_build) -> Build:
    """Other ARM target files: graviton2 is another core class (Neoverse-N1, dotprod) from `arm`'s A72."""
    return _arm_build(workdir, host_build, request.param)


def _build_runner(build_dir: Path, *cmake_args: str) -> Path:
    if shutil.which("cmake") is None:
        pytest.fail("cmake is missing: the C++ runner needs it (see the README's install section)")
    configure = subprocess.run(["cmake", "-S", str(DEPLOY), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                                f"-DPython3_EXECUTABLE={sys.executable}", *cmake_args],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout[-2000:] + configure.stderr[-2000:]
    build = subprocess.run(["cmake", "--build", str(build_dir), "-j", "2"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-2000:]
    return build_dir / "sqnxt-runner"


@pytest.fixture(scope="session")
def host_runner(workdir) -> Path:
    return _build_runner(workdir / "runner-host")


@pytest.fixture(scope="session")
def aarch64_runner(workdir, aarch64_env) -> Path:
    """The runner cross-built for aarch64 against the runtime libraries of the aarch64 wheels."""
    if shutil.which("aarch64-linux-gnu-g++") is None:
        reason = ("no aarch64 cross g++: `apt-get install -y --no-install-recommends g++-aarch64-linux-gnu "
                  "libc6-dev-arm64-cross`")
        (pytest.fail if emulation.emulation_required() else pytest.skip)(reason)
    runner = _build_runner(workdir / "runner-aarch64", f"-DCMAKE_TOOLCHAIN_FILE={DEPLOY / 'aarch64-linux-gnu.cmake'}",
                           f"-DTVM_FFI_ROOT={aarch64_env.site / 'tvm_ffi'}", f"-DTVM_ROOT={aarch64_env.site / 'tvm'}")
    assert elf_machine(runner) == "aarch64"
    return runner


# --- helpers -----------------------------------------------------------------------------------------

def assert_matches_host(output_file: Path, build: Build) -> None:
    error = relative_error(np.load(output_file), build.reference)
    assert error <= BOUND, f"{build.library.name}: relative error {error:.3e} against the host build > {BOUND}"


def emulated_sqnxt_run(env: emulation.Aarch64Environment, build: Build, output: Path) -> str:
    # --repeat 0: one inference, no timing (timing runs warm up 3 times, each seconds long when emulated).
    result = env.run(env.sqnxt_command("run", str(build.library), "--input", str(build.input_file),
                                       "--output", str(output), "--repeat", "0"), timeout=EMULATED_TIMEOUT)
    return result.stdout


def emulated_cpp_run(env: emulation.Aarch64Environment, runner: Path, build: Build, output: Path) -> str:
    result = env.run(env.program_command(runner, build.library, build.input_file, output),
                     timeout=EMULATED_TIMEOUT)
    return result.stdout


# --- the emulated environment itself --------------------------------------------------------------------

def test_environment_is_aarch64_runtime_only(aarch64_env):
    probe = ("import platform, tvm, numpy; from tvm.runtime.vm import VirtualMachine; "
             "print(platform.machine(), tvm.__version__)")
    result = aarch64_env.run(aarch64_env.python_command("-c", probe), timeout=EMULATED_TIMEOUT)
    import tvm

    assert result.stdout.split() == ["aarch64", tvm.__version__]
    assert not (aarch64_env.site / "tvm" / "lib" / "libtvm_compiler.so").exists()


def test_cached_environment_is_reused_quickly(aarch64_env):
    started = time.monotonic()
    again = emulation.ensure_environment(aarch64_env.root)
    assert again.root == aarch64_env.root
    assert time.monotonic() - started < 5, "the cached environment must not be rebuilt"


def test_missing_emulator_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu (and no apt) on this PATH
    monkeypatch.setattr(emulation.platform, "machine", lambda: "x86_64")
    reason = emulation.unavailable_reason()
    assert reason and "qemu-user-static" in reason
    with pytest.raises(emulation.EmulationUnavailable, match="qemu-user-static"):
        emulation.ensure_environment(tmp_path / "env")


@pytest.mark.parametrize("variables, required", [
    ({}, False), ({"CI": "true"}, True), ({"SQNXT_REQUIRE_EMULATION": "1"}, True), ({"CI": "0"}, False)])
def test_ci_requires_emulation(monkeypatch, variables, required):
    for name in ("CI", emulation.REQUIRE_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert emulation.emulation_required() is required


# --- arm: from Python and from C++, under emulation ---------------------------------------------------

def test_sqnxt_run_emulated_matches_host(aarch64_env, arm_build, tmp_path):
    stdout = emulated_sqnxt_run(aarch64_env, arm_build, tmp_path / "out.npy")
    assert "top-5" in stdout
    assert_matches_host(tmp_path / "out.npy", arm_build)


@pytest.mark.parametrize("name", ["mobilenet-v2", "resnet-18", "squeezenet1.1"])
def test_ordinary_cnns_emulated_match_host(aarch64_env, name, tmp_path):
    """The kernel families of the ordinary CNNs on NEON (depthwise, Winograd rows for 3x3 convs, weight-stationary
    on channel tiles, ReLU6 epilogues), at 64x64 so that emulation stays quick."""
    model = build_model(name, resolution=64)
    host = sqnxt_compiler.compile(model, target="host", output=tmp_path / "host.so")
    input_file = tmp_path / "input.npy"
    np.save(input_file, seeded_input(host.inputs[0].shape))
    (reference,) = sqnxt_compiler.load(host.library).run(np.load(input_file))
    arm = sqnxt_compiler.compile(model, target="arm", output=tmp_path / "arm.so")
    build = Build(arm.library, input_file, reference)
    emulated_sqnxt_run(aarch64_env, build, tmp_path / "out.npy")
    assert_matches_host(tmp_path / "out.npy", build)


def test_emulated_timings_are_labelled(aarch64_env, host_build, capsys):
    """Every emulated process carries the marker; sqnxt-run then says its latency is meaningless
    (checked on the host build: the label logic is the same, and a timed emulated run costs minutes)."""
    from sqnxt_compiler.cli.run import main

    marker = aarch64_env.environ()[emulation.EMULATED_VARIABLE]
    assert marker == "qemu-aarch64-static" or marker.startswith("qemu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(emulation.EMULATED_VARIABLE, marker)
        assert main([str(host_build.library), "--input", str(host_build.input_file), "--repeat", "1"]) == 0
    assert f"measured under {marker} emulation: meaningless as ARM speed" in capsys.readouterr().out


def test_python_api_emulated_matches_host(aarch64_env, arm_build, tmp_path):
    script = ("import sys, numpy as np, sqnxt_compiler\n"
              "model = sqnxt_compiler.load(sys.argv[1])\n"
              "np.save(sys.argv[3], model.run(np.load(sys.argv[2]))[0])\n")
    output = tmp_path / "out.npy"
    aarch64_env.run(aarch64_env.python_command("-c", script, str(arm_build.library), str(arm_build.input_file),
                                               str(output)), timeout=EMULATED_TIMEOUT)
    assert_matches_host(output, arm_build)


def test_cpp_runner_emulated_matches_host(aarch64_env, aarch64_runner, arm_build, tmp_path):
    stdout = emulated_cpp_run(aarch64_env, aarch64_runner, arm_build, tmp_path / "out.npy")
    assert "output shape 1 1000" in stdout
    assert_matches_host(tmp_path / "out.npy", arm_build)


def test_cpp_runner_on_host_matches_python(host_runner, host_build, tmp_path):
    result = subprocess.run([str(host_runner), str(host_build.library), str(host_build.input_file),
                             str(tmp_path / "out.npy"), "--repeat", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "latency: median" in result.stdout
    assert relative_error(np.load(tmp_path / "out.npy"), host_build.reference) <= BOUND


def test_cpp_runner_rejects_bad_input(host_runner, host_build, tmp_path):
    not_npy = tmp_path / "image.txt"
    not_npy.write_text("pixels")
    result = subprocess.run([str(host_runner), str(host_build.library), str(not_npy), str(tmp_path / "o.npy")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and "not a .npy file" in result.stderr


def test_zig_linked_arm_build_runs_emulated(aarch64_env, aarch64_runner, workdir, host_build, tmp_path):
    """Without Debian's cross g++ the library is linked by the `ziglang` wheel: that library must run too."""
    from sqnxt_compiler.toolchain import CROSS_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CROSS_ENV, f"{sys.executable} -m ziglang cc -target aarch64-linux-gnu")
        result = sqnxt_compiler.compile(build_model(MODEL), target="arm", output=workdir / "arm_zig.so")
    build = Build(result.library, host_build.input_file, host_build.reference)
    emulated_cpp_run(aarch64_env, aarch64_runner, build, tmp_path / "out.npy")
    assert_matches_host(tmp_path / "out.npy", build)


# --- another ARM core class ---------------------------------------------------------------------------

def test_other_arm_target_emulated_matches_host(aarch64_env, aarch64_runner, other_arm_build, tmp_path):
    emulated_sqnxt_run(aarch64_env, other_arm_build, tmp_path / "py.npy")
    assert_matches_host(tmp_path / "py.npy", other_arm_build)
    emulated_cpp_run(aarch64_env, aarch64_runner, other_arm_build, tmp_path / "cpp.npy")
    assert_matches_host(tmp_path / "cpp.npy", other_arm_build)


def test_tuned_arm_build_emulated_matches_host(aarch64_env, workdir, host_build, tmp_path):
    """Tuning records shipped in tuning_logs/ (written by sqnxt-tune) change the code: run that code too."""
    records = REPO / "tuning_logs" / MODEL / "arm"
    if not records.is_dir():
        pytest.skip(f"no tuning records shipped for {MODEL} on arm ({records.relative_to(REPO)})")
    build = _arm_build(workdir, host_build, "arm", tuning_log=records)
    emulated_sqnxt_run(aarch64_env, build, tmp_path / "out.npy")
    assert_matches_host(tmp_path / "out.npy", build)


# --- RPC: an emulated board behind a tracker ----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_board(tracker_port: int, key: str, server: subprocess.Popen, timeout: float = 180) -> None:
    from tvm import rpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "the emulated RPC server exited during start-up"
        try:
            if rpc.connect_tracker("127.0.0.1", tracker_port).summary()["queue_info"].get(key, {}).get("free"):
                return
        except (ConnectionError, OSError, RuntimeError):
            pass  # the tracker is still starting
        time.sleep(0.5)
    pytest.fail(f"no board registered with key '{key}' within {timeout:.0f} s")


@pytest.fixture(scope="session")
def emulated_board(aarch64_env, workdir):
    """(tracker HOST:PORT, key): a tracker on 127.0.0.1 and an emulated aarch64 RPC server registered with it."""
    tracker_port, key = _free_port(), "emulated-aarch64"
    logs = [open(workdir / name, "w") for name in ("tracker.log", "server.log")]
    tracker = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                "--port", str(tracker_port), "--port-end", str(tracker_port + 1)],
                               start_new_session=True, stdout=logs[0], stderr=subprocess.STDOUT)
    server = aarch64_env.start_rpc_server(f"127.0.0.1:{tracker_port}", key, port=_free_port(),
                                          stdout=logs[1], stderr=subprocess.STDOUT)
    try:
        _wait_for_board(tracker_port, key, server)
        yield f"127.0.0.1:{tracker_port}", key
    finally:
        emulation.stop_process_group(server)
        emulation.stop_process_group(tracker)
        for log in logs:
            log.close()


def sqnxt_run_over_rpc(board: tuple[str, str], library: Path, *args: str) -> subprocess.CompletedProcess:
    tracker, key = board
    return subprocess.run([sys.executable, "-c", "import sys; from sqnxt_compiler.cli.run import main; "
                           "sys.exit(main(sys.argv[1:]))", str(library), *args, "--rpc", tracker, "--rpc-key", key],
                          capture_output=True, text=True, timeout=EMULATED_TIMEOUT,
                          env={**os.environ, emulation.EMULATED_VARIABLE: ""})


def test_sqnxt_run_over_rpc_on_emulated_board(emulated_board, arm_build, tmp_path):
    output = tmp_path / "out.npy"
    result = sqnxt_run_over_rpc(emulated_board, arm_build.library, "--input", str(arm_build.input_file),
                                "--output", str(output), "--repeat", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "meaningless if that board is emulated" in result.stdout
    assert_matches_host(output, arm_build)


def test_rpc_board_refuses_a_host_library_in_one_line(emulated_board, host_build):
    result = sqnxt_run_over_rpc(emulated_board, host_build.library, "--repeat", "0")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("error: the board (key 'emulated-aarch64') cannot load 'host.so'")


def test_rpc_flags_go_together(arm_build, capsys):
    from sqnxt_compiler.cli.run import main

    assert main([str(arm_build.library), "--rpc", "127.0.0.1:9190"]) == 2
    assert "--rpc and --rpc-key go together" in capsys.readouterr().err

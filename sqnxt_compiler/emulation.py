"""An emulated 64-bit ARM (aarch64) Linux userland on this x86-64 host: run compiled libraries as a board would.

The environment is a folder, built once and cached (default `~/.cache/sqnxt-compiler/aarch64-env`,
or `$SQNXT_AARCH64_ENV`):

- `sysroot/`: Debian's arm64 Python 3.11 and the libraries it and the TVM runtime load, fetched with
  `apt-get download` under a private APT configuration (the host's dpkg database is never touched) and
  unpacked with `dpkg -x`;
- `site/`: the aarch64 wheels of apache-tvm / apache-tvm-ffi / numpy, installed by the host's pip;
- `bin/python3`: a host-side wrapper that starts the emulated Python (see `_PYTHON_WRAPPER`).

Programs run through `qemu-aarch64-static` (Debian's `qemu-user-static`) with `QEMU_LD_PREFIX` set to
the sysroot; nothing is executed under emulation while the environment is being built. Timings taken
under emulation say nothing about the speed of real ARM hardware.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .errors import SqnxtError

ENV_DIR_VARIABLE = "SQNXT_AARCH64_ENV"
REQUIRE_VARIABLE = "SQNXT_REQUIRE_EMULATION"
# Set in every emulated process, so that `sqnxt-run` can label its timings as meaningless.
EMULATED_VARIABLE = "SQNXT_EMULATED"
# Read by the environment's sitecustomize.py: the host-side wrapper that re-executes the emulated Python.
WRAPPER_VARIABLE = "SQNXT_AARCH64_PYTHON"

EMULATOR_NAMES = ("qemu-aarch64-static", "qemu-aarch64")
PYTHON_VERSION = "3.11"
WHEEL_PLATFORM = "manylinux_2_28_aarch64"

# Debian (bookworm) arm64 packages: the Python 3.11 interpreter and stdlib, and the shared libraries
# that the interpreter, its extension modules in use (_ctypes, _ssl/_hashlib, _bz2, _lzma, _uuid)
# and the TVM runtime (libstdc++) load. Everything else in the dependency closure is unused.
DEBIAN_PACKAGES = (
    "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0",
    "liblzma5", "libuuid1", "libcrypt1",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
)

# What makes `import tvm` runtime-only and the environment ~250 MB smaller: the compiler library
# (the emulated side never compiles) and CUDA pieces.
PRUNED_PATHS = ("tvm/lib/libtvm_compiler.so", "tvm/lib/libtvm_runtime_cuda.so", "tvm/3rdparty/cutlass")

# A fixed executable for subprocesses the emulated Python starts with `sys.executable` (the TVM RPC
# server's popen worker): without a qemu binfmt_misc entry the host kernel cannot exec an aarch64 ELF,
# but it can exec this host shell script, which hands the interpreter to qemu.
_PYTHON_WRAPPER = """#!/bin/sh
exec "{emulator}" "{python}" "$@"
"""
_SITECUSTOMIZE = """# Written by sqnxt_compiler.emulation: make sys.executable the host-side wrapper (see there).
import os
import sys

_wrapper = os.environ.get("{variable}")
if _wrapper:
    sys.executable = sys._base_executable = _wrapper
"""


class EmulationUnavailable(SqnxtError):
    """This machine cannot emulate aarch64 (no qemu-user, or no apt/dpkg to build the userland)."""


def emulation_required() -> bool:
    """In CI (`CI` set, or `SQNXT_REQUIRE_EMULATION=1`) a missing emulator is a failure, never a skip."""
    return any(os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
               for name in ("CI", REQUIRE_VARIABLE))


def find_emulator() -> str | None:
    for name in EMULATOR_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def unavailable_reason() -> str | None:
    """Why aarch64 programs cannot run here (one line naming the fix), or None when they can."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"aarch64 emulation is set up for x86-64 hosts only (this is {platform.machine()})"
    if find_emulator() is None:
        return ("no aarch64 emulator: install Debian's qemu-user-static "
                "(`apt-get install -y --no-install-recommends qemu-user-static`)")
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            return f"building the aarch64 userland needs Debian's `{tool}`, which is not on PATH"
    return None


def default_root() -> Path:
    override = os.environ.get(ENV_DIR_VARIABLE)
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "sqnxt-compiler" / "aarch64-env"


def _python_requirements() -> list[str]:
    """The aarch64 wheels, pinned to what the host runs, so both sides execute the same runtime."""
    pinned = [f"{name}=={importlib.metadata.version(name)}" for name in ("apache-tvm", "apache-tvm-ffi", "numpy")]
    # psutil + cloudpickle: the TVM RPC server's popen worker; the rest are `import tvm` requirements.
    return [*pinned, "ml_dtypes", "typing_extensions", "psutil", "cloudpickle"]


def _recipe() -> dict:
    """What the cached environment was built from; a different recipe means a rebuild."""
    return {"format": 1, "python": PYTHON_VERSION, "debian_packages": list(DEBIAN_PACKAGES),
            "wheels": _python_requirements(), "wheel_platform": WHEEL_PLATFORM}


@dataclass(frozen=True)
class Aarch64Environment:
    """A built environment: run aarch64 programs, the emulated Python, or `sqnxt-run` inside it."""

    root: Path
    emulator: str

    @property
    def sysroot(self) -> Path:
        return self.root / "sysroot"

    @property
    def site(self) -> Path:
        """The aarch64 site-packages (tvm, tvm_ffi, numpy): headers and runtime libraries for a C++ build."""
        return self.root / "site"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / f"python{PYTHON_VERSION}"

    @property
    def python_wrapper(self) -> Path:
        return self.root / "bin" / "python3"

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("PYTHON", "VIRTUAL_ENV", "QEMU_"))}
        env.update({
            "QEMU_LD_PREFIX": str(self.sysroot),
            "PYTHONPATH": os.pathsep.join([str(self.site), str(self._package_link())]),
            "PYTHONNOUSERSITE": "1",
            WRAPPER_VARIABLE: str(self.python_wrapper),
            EMULATED_VARIABLE: Path(self.emulator).name,
        })
        env.update(extra or {})
        return env

    def _package_link(self) -> Path:
        """A folder holding only a link to this host's `sqnxt_compiler` package (source, arch-independent),
        so the emulated Python imports the same code without the host's x86 site-packages on its path."""
        package = Path(__file__).resolve().parent
        folder = self.root / "packages" / hashlib.sha256(str(package).encode()).hexdigest()[:12]
        link = folder / package.name
        if not link.is_symlink():
            folder.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another process made it first
                link.symlink_to(package, target_is_directory=True)
        return folder

    def program_command(self, program: str | os.PathLike, *args: str) -> list[str]:
        return [self.emulator, str(program), *map(str, args)]

    def python_command(self, *args: str) -> list[str]:
        return self.program_command(self.python, *args)

    def sqnxt_command(self, tool: str, *args: str) -> list[str]:
        """A console script of this package (e.g. `run` for sqnxt-run) under the emulated Python."""
        module = f"sqnxt_compiler.cli.{tool}"
        return self.python_command("-c", f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))",
                                   *args)

    def run(self, command: Sequence[str], *, env: dict[str, str] | None = None, timeout: float | None = None,
            check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run a command made by `*_command` with the environment's variables; output captured as text."""
        result = subprocess.run(list(command), env=self.environ(env), capture_output=True, text=True,
                                timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise SqnxtError(f"emulated command failed (exit {result.returncode}): "
                             f"{' '.join(command[1:3])} ...\n{tail}")
        return result

    def popen(self, command: Sequence[str], *, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """Start a long-lived emulated process in its own process group (stop it with `stop_process_group`:
        servers fork workers that would outlive a plain kill)."""
        return subprocess.Popen(list(command), env=self.environ(env), start_new_session=True, **kwargs)

    def start_rpc_server(self, tracker: str, key: str, host: str = "127.0.0.1", port: int = 9090,
                         **popen_kwargs) -> subprocess.Popen:
        """An emulated board: TVM's RPC server in the emulated Python, registered with `tracker` (HOST:PORT)
        under `key`, listening on the first free port from `port`. Stop it with `stop_process_group`."""
        return self.popen(self.python_command(
            "-m", "tvm.exec.rpc_server", "--host", host, "--port", str(port), "--port-end", str(port + 100),
            "--tracker", tracker, "--key", key,
            # random_fill_for_measure (meta_schedule's RPC runner) lives in the extra runtime library.
            "--load-library", str(self.site / "tvm" / "lib" / "libtvm_runtime_extra.so")), **popen_kwargs)


def stop_process_group(process: subprocess.Popen, grace_seconds: float = 5.0) -> None:
    """Terminate a process started by `Aarch64Environment.popen` together with every child it started."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise builders (parallel test workers, several checkouts sharing one cache)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_ready(root: Path) -> bool:
    marker = root / "ready.json"
    try:
        return json.loads(marker.read_text()).get("recipe") == _recipe()
    except (OSError, json.JSONDecodeError):
        return False


def ensure_environment(root: str | os.PathLike | None = None,
                       log: Callable[[str], None] | None = None) -> Aarch64Environment:
    """The cached aarch64 environment at `root` (default: `default_root()`), built first if missing or
    built from another recipe. Raises EmulationUnavailable (with the fix) when this host cannot emulate."""
    reason = unavailable_reason()
    if reason:
        raise EmulationUnavailable(reason)
    emulator = find_emulator()
    assert emulator is not None
    log = log or (lambda _message: None)
    target = Path(root) if root is not None else default_root()
    with _exclusive(target.parent / f".{target.name}.lock"):
        if not _is_ready(target):
            started = time.monotonic()
            _build(target, emulator, log)
            log(f"aarch64 environment built in {time.monotonic() - started:.1f} s: {target}")
    return Aarch64Environment(target, emulator)


def _build(root: Path, emulator: str, log: Callable[[str], None]) -> None:
    # Built beside its final place and renamed at the end: a cut-off build never looks ready.
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.building.", dir=root.parent))
    try:
        _unpack_debian_userland(staging / "sysroot", staging / "apt", log)
        _install_wheels(staging / "site", log)
        _precompile(staging, log)
        _write_helpers(staging, final_root=root, emulator=emulator)
        shutil.rmtree(staging / "apt")
        (staging / "ready.json").write_text(json.dumps({"recipe": _recipe(), "built": time.time()}, indent=2))
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _checked(command: list[str], what: str, **kwargs) -> None:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-10:])
        raise SqnxtError(f"building the aarch64 environment: {what} failed (exit {result.returncode}):\n{tail}")


def _unpack_debian_userland(sysroot: Path, apt_dir: Path, log: Callable[[str], None]) -> None:
    """arm64 .debs from the host's configured Debian mirrors, through a private APT state and cache."""
    for sub in ("state/lists/partial", "cache/archives/partial", "debs"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "state" / "status").touch()
    config = apt_dir / "apt.conf"
    # The host's sources and apt.conf.d (mirror, proxy, validity settings) are kept; only the
    # architecture and every piece of state APT writes are redirected into this folder.
    config.write_text("\n".join([
        'APT::Architecture "arm64";',
        'APT::Architectures { "arm64"; };',
        f'Dir::State "{apt_dir / "state"}";',
        f'Dir::State::status "{apt_dir / "state" / "status"}";',
        f'Dir::Cache "{apt_dir / "cache"}";',
        'Dir::Cache::pkgcache "";',
        'Dir::Cache::srcpkgcache "";',
        'APT::Update::Post-Invoke-Success { };',
        'APT::Update::Post-Invoke { };',
        "",
    ]))
    env = {**os.environ, "APT_CONFIG": str(config), "DEBIAN_FRONTEND": "noninteractive"}
    log("aarch64 environment: apt-get update (arm64 indices, private state)")
    _checked(["apt-get", "-q", "update"], "apt-get update (arm64)", env=env)
    log(f"aarch64 environment: apt-get download {len(DEBIAN_PACKAGES)} arm64 packages")
    _checked(["apt-get", "-q", "download", *DEBIAN_PACKAGES], "apt-get download", env=env, cwd=apt_dir / "debs")
    sysroot.mkdir(parents=True, exist_ok=True)
    for deb in sorted((apt_dir / "debs").glob("*.deb")):
        _checked(["dpkg", "-x", str(deb), str(sysroot)], f"dpkg -x {deb.name}")


def _install_wheels(site: Path, log: Callable[[str], None]) -> None:
    requirements = _python_requirements()
    log(f"aarch64 environment: pip install --platform {WHEEL_PLATFORM} {' '.join(requirements)}")
    _checked([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
              "--target", str(site), "--platform", WHEEL_PLATFORM, "--python-version", PYTHON_VERSION,
              "--implementation", "cp", "--abi", f"cp{PYTHON_VERSION.replace('.', '')}",
              "--only-binary=:all:", *requirements], "pip install of the aarch64 wheels")
    for relative in PRUNED_PATHS:
        path = site / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _precompile(staging: Path, log: Callable[[str], None]) -> None:
    """Bytecode compiled by the host (same format for the same Python minor version): the emulated
    interpreter would otherwise compile the stdlib and tvm at every start (~6.5 s -> ~1.7 s for `import tvm`)."""
    if sys.version_info[:2] != tuple(int(part) for part in PYTHON_VERSION.split(".")):
        log(f"aarch64 environment: host Python is not {PYTHON_VERSION}; skipping bytecode precompilation")
        return
    log("aarch64 environment: precompiling bytecode")
    stdlib = staging / "sysroot" / "usr" / "lib" / f"python{PYTHON_VERSION}"
    # Exit status 1 only means some file did not compile (e.g. Python 2 syntax in test data): fine.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "-x", r"/(test|tests|idlelib)/",
                    str(stdlib), str(staging / "site")], capture_output=True)


def _write_helpers(staging: Path, final_root: Path, emulator: str) -> None:
    wrapper = staging / "bin" / "python3"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(_PYTHON_WRAPPER.format(
        emulator=emulator, python=final_root / "sysroot" / "usr" / "bin" / f"python{PYTHON_VERSION}"))
    wrapper.chmod(0o755)
    (staging / "site" / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(variable=WRAPPER_VARIABLE))


def main(argv: list[str] | None = None) -> int:
    """`python -m sqnxt_compiler.emulation [--root DIR] [COMMAND ...]`: build (or find) the environment;
    without COMMAND print its paths, else run COMMAND inside it: `sqnxt-run ARGS`, `python ARGS`, or the
    path of an aarch64 program (e.g. the cross-built sqnxt-runner) with its arguments."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sqnxt_compiler.emulation", description=main.__doc__)
    parser.add_argument("--root", help=f"where the environment lives (default: ${ENV_DIR_VARIABLE} or "
                                       "~/.cache/sqnxt-compiler/aarch64-env)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="what to run under emulation")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        env = ensure_environment(args.root, log=lambda message: print(message, file=sys.stderr, flush=True))
    except SqnxtError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.command:
        print(f"ready in {time.monotonic() - started:.1f} s\n  root: {env.root}\n  python: {env.python}\n"
              f"  site: {env.site}\n  emulator: {env.emulator}")
        return 0
    program, rest = args.command[0], args.command[1:]
    if program == "sqnxt-run":
        command = env.sqnxt_command("run", *rest)
    elif program in ("python", "python3", f"python{PYTHON_VERSION}"):
        command = env.python_command(*rest)
    else:
        command = env.program_command(program, *rest)
    return subprocess.call(command, env=env.environ())


if __name__ == "__main__":
    sys.exit(main())

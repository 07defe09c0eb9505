"""Writing outputs: wrong paths and full disks as one-line errors that name the path and the fix, and writes
that never leave a partial file behind (a temporary file in the same folder, renamed when complete)."""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import SqnxtError

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_TEXT = os.strerror(errno.ENOSPC)  # "No space left on device", as linkers print it
# the errors of a path or its device, as opposed to a bug of ours
USER_ERRNOS = frozenset({*NO_SPACE_ERRNOS, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                         errno.ENAMETOOLONG, errno.EEXIST, errno.ENOENT, errno.ELOOP, errno.EFBIG, errno.EIO})


def _existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else the nearest of its parents that does (what a write would create in)."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _folder_problem(folder: Path, path: Path, what: str) -> str | None:
    """Why files cannot be created under `folder` (the nearest existing ancestor of `path`), or None."""
    if not folder.is_dir():
        return (f"cannot create {what} '{path}': '{folder}' is a file, not a folder; choose a path in an "
                "existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        return (f"cannot create {what} '{path}': folder '{folder}' is not writable (permission denied); choose "
                "a folder you can write to")
    return None


def check_output_file(path: str | os.PathLike, what: str = "output", example: str = "model.so") -> Path:
    """Fail now, before any long work, if `path` cannot become a file: it is a folder, or its folder cannot be
    created or written."""
    path = Path(path)
    if path.is_dir():
        raise SqnxtError(f"{what} '{path}' is a folder; give a file name, e.g. {path / example}")
    problem = _folder_problem(_existing_ancestor(path.parent), path, what)
    if problem:
        raise SqnxtError(problem)
    return path


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Fail now if `path` cannot be (or become) a writable folder: it is a file, or lies under one."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise SqnxtError(f"{what} '{path}' is a file, not a folder; give a folder (created if missing) or move "
                         "the file away")
    problem = _folder_problem(_existing_ancestor(path), path, what)
    if problem:
        raise SqnxtError(problem)
    return path


def check_free_space(path: str | os.PathLike, needed: int, what: str) -> None:
    """Fail now if the device that holds `path` has less than `needed` bytes free (for writers we cannot
    watch, such as TVM's tuning database, which appends from C++)."""
    folder = _existing_ancestor(Path(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise SqnxtError(f"not enough space on the device holding '{folder}' for {what} '{path}' "
                         f"({format_size(free)} free, it needs about {format_size(needed)}); free some space there "
                         "or write elsewhere")


def format_size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def is_no_space(err: BaseException) -> bool:
    """A full disk: ENOSPC/EDQUOT, or a linker's message saying so (g++ reports it as text)."""
    if isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS:
        return True
    return NO_SPACE_TEXT in str(err)


def write_error(err: BaseException, path: str | os.PathLike, what: str = "output",
                needed: int | None = None) -> SqnxtError:
    """The one-line error for a failed write of `path` (a full disk, a wrong path, no permission)."""
    path = Path(path)
    folder = _existing_ancestor(path.parent)
    if is_no_space(err):
        filename = getattr(err, "filename", None)   # the file being written: on another device (/tmp)?
        if filename and _existing_ancestor(Path(filename).parent) != folder:
            folder = _existing_ancestor(Path(filename).parent)
        try:
            free = f"{format_size(shutil.disk_usage(folder).free)} free"
        except OSError:
            free = "free space unknown"
        need = f", {what} needs about {format_size(needed)}" if needed else ""
        return SqnxtError(f"no space left on the device holding '{folder}' ({free}{need}) while writing {what} "
                          f"'{path}'; free some space there or write elsewhere")
    code = getattr(err, "errno", None)
    if path.is_dir():
        return SqnxtError(f"{what} '{path}' is a folder; give a file name")
    if code == errno.EROFS:
        return SqnxtError(f"cannot write {what} '{path}': the file system is read-only; write elsewhere")
    problem = _folder_problem(folder, path, what)
    if problem:
        return SqnxtError(problem)
    reason = getattr(err, "strerror", None) or _last_line(err)
    fix = "write to a folder you own" if code in (errno.EACCES, errno.EPERM) else "check the path"
    return SqnxtError(f"cannot write {what} '{path}' ({reason}); {fix}")


def _last_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def is_path_error(err: BaseException) -> bool:
    """An OSError about a path the user gave (full disk, no permission, a file where a folder should be)."""
    return isinstance(err, OSError) and err.errno in USER_ERRNOS and bool(err.filename)


def path_error(err: OSError) -> SqnxtError:
    """The one-line error for an OSError about a user's path that no more specific check caught."""
    if is_no_space(err):
        return write_error(err, err.filename, "a file")
    return SqnxtError(f"'{err.filename}': {err.strerror}; check the path and its permissions")


@contextmanager
def writing(path: str | os.PathLike, what: str = "output", needed: Callable[[], int | None] | None = None
            ) -> Iterator[None]:
    """Turn an OSError of a path or device (full disk, no permission...) inside the block into a SqnxtError
    naming `path` and the fix. `needed` (called on a full disk) says how many bytes the write needs."""
    try:
        yield
    except OSError as err:
        if err.errno not in USER_ERRNOS:
            raise
        raise write_error(err, path, what, needed() if needed else None) from None


def _temp_prefix(path: Path) -> str:
    """`.NAME.PID.`: hidden, and naming the writing process, so a later run can tell its temporary was orphaned."""
    return f".{path.name}.{os.getpid()}."


def _temp_suffix(path: Path) -> str:
    return path.suffix or ".tmp"  # the real suffix: some writers append theirs otherwise (np.save: .npy)


def remove_orphaned_temps(path: Path) -> None:
    """Delete the temporary files of `path` that a killed writer left beside it (its process is gone)."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[A-Za-z0-9_]+{re.escape(_temp_suffix(path))}$")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or _alive(int(match[1])):
            continue
        try:
            entry.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# path, write(tmp) that fills the temporary, what it is (for messages), optionally: bytes it needs (full disk)
Write = tuple[Path, Callable[[str], None], str] | tuple[Path, Callable[[str], None], str, Callable[[], int | None]]


def atomic_write_files(writes: list[Write]) -> None:
    """Write every `(path, write, what[, needed])` through a temporary file beside it, then rename them all: a
    failure or an interruption at any point leaves each path as it was, never partial (a library is never
    renamed into place when its sidecar could not be written). Temporaries a killed earlier run left are
    removed first."""
    temps: list[tuple[str, Path, str]] = []
    try:
        for path, write, what, *needed in writes:
            with writing(path, what, *needed):
                path.parent.mkdir(parents=True, exist_ok=True)
                remove_orphaned_temps(path)
                fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=_temp_suffix(path), dir=path.parent)
                os.close(fd)
                temps.append((tmp, path, what))
                os.chmod(tmp, 0o666 & ~_umask())   # mkstemp's 0600 would make the result private
                write(tmp)
        for tmp, path, what in temps:
            with writing(path, what):
                os.replace(tmp, path)
    finally:
        for tmp, _, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def append_line(path: Path, line: str, what: str = "log") -> None:
    """Append `line` and a newline to `path` as a whole or not at all: on a write error (a full disk) the file
    is cut back to where it ended, so a log valid before stays valid; the error is one line naming the path."""
    data = f"{line}\n".encode()
    with writing(path, what, lambda: len(data)):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                _write_all(fd, data)
            except BaseException:
                os.ftruncate(fd, end)
                raise
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str, what: str = "output") -> None:
    atomic_write_files([(Path(path), lambda tmp: Path(tmp).write_text(text), what)])

"""Run a call with everything it prints held back, at the file-descriptor level: TVM prints from Python
(`Error converting operator Conv, ...`) and from C++ straight to fd 2 (`Warning: BlockBuilder destroyed with
remaining blocks!`), around the one-line error we give. Held output is shown again when the call succeeds, and
on failure only with SQNXT_DEBUG=1."""

from __future__ import annotations

import gc
import io
import os
import sys
import tempfile
import traceback
from typing import Callable, TypeVar

T = TypeVar("T")
DEBUG_VARIABLE = "SQNXT_DEBUG"


def quietly(function: Callable[..., T], *args, **kwargs) -> T:
    """`function(*args, **kwargs)` with its stdout and stderr (Python's and the file descriptors 1 and 2) held in a
    temporary file. On an exception the frames it leaves are cleared while the output is still held (the C++
    objects they keep alive print as they are destroyed), then the exception propagates."""
    with tempfile.TemporaryFile() as held:
        failed = False
        restore = _redirect(held)
        try:
            return function(*args, **kwargs)
        except BaseException as err:
            failed = True
            traceback.clear_frames(err.__traceback__)
            gc.collect()
            raise
        finally:
            restore()
            if not failed or os.environ.get(DEBUG_VARIABLE):
                _replay(held)


def _redirect(held) -> Callable[[], None]:
    """Point fds 1 and 2 and sys.stdout/sys.stderr at `held`; returns the function that undoes it."""
    streams = (sys.stdout, sys.stderr)
    for stream in streams:
        _flush(stream)
    saved = [os.dup(fd) for fd in (1, 2)]
    for fd in (1, 2):
        os.dup2(held.fileno(), fd)
    text = io.TextIOWrapper(os.fdopen(os.dup(held.fileno()), "wb", buffering=0), write_through=True)
    sys.stdout = sys.stderr = text

    def restore() -> None:
        _flush(text)
        sys.stdout, sys.stderr = streams
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        text.close()

    return restore


def _replay(held) -> None:
    held.seek(0)
    data = held.read()
    if data:
        sys.stderr.write(data.decode(errors="replace"))
        _flush(sys.stderr)


def _flush(stream) -> None:
    try:
        stream.flush()
    except (OSError, ValueError, AttributeError):
        pass

"""sqnxt-compiler: a SqueezeNext-aware deep-learning compiler on Apache TVM (Relax + TensorIR)."""

from ._version import __version__
from .errors import SqnxtError


def compile(*args, **kwargs):  # noqa: A001
    """See `sqnxt_compiler.compiler.compile` (imported lazily: `load` must work with the TVM runtime only)."""
    from .compiler import compile as _compile

    return _compile(*args, **kwargs)


def load(*args, **kwargs):
    """See `sqnxt_compiler.runtime.load`."""
    from .runtime import load as _load

    return _load(*args, **kwargs)


__all__ = ["SqnxtError", "compile", "load", "__version__"]

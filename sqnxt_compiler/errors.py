"""The one exception type users see: a single line that names the problem and the fix."""


class SqnxtError(Exception):
    """A user-facing error. The CLI prints `error: <message>` and exits with status 2."""

"""The one exception type users see: a clear sentence, printed by the CLI without a traceback."""


class CodecError(Exception):
    """A user-facing error (bad input file, unknown model, unwritable path, ...)."""

"""User-facing errors: one line that names the problem and the fix, exit code 2."""

from __future__ import annotations


class TGEError(Exception):
    """An error caused by the user's input or environment, reported as one line (exit 2).

    Anything raised as a ``TGEError`` is printed by the CLI as ``tge: error: <message>`` with no
    traceback. Bugs are not ``TGEError``s and keep their tracebacks.
    """


class ConfigError(TGEError):
    """A config key or value that is not allowed."""


class DataError(TGEError):
    """A dataset that cannot be found, opened or combined as asked."""


class ReportError(TGEError):
    """A folder that ``tge report`` cannot read as a run or sweep, or cannot write into."""

"""The one base error of tunefactory.

Every user-facing failure (bad spec, bad data file, unknown run directory) raises a
subclass of :class:`TunefactoryError`. The CLI prints ``str(err)`` as one line and exits
with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TunefactoryError(Exception):
    """Base class for errors caused by user input; the message is one line saying what to fix."""

    exit_code: int = 2


class DataError(TunefactoryError):
    """A candle or metric file violates a rule (``FILE: row N: rule; got VALUE``)."""


class RunError(TunefactoryError):
    """A run directory is missing, incomplete or was produced by another spec."""


class UsageError(TunefactoryError):
    """A command-line option whose value cannot work (``--num-cpus -3``, ``--storage FILE``)."""


class Interrupted(TunefactoryError):
    """A sweep stopped by SIGINT (exit 130) or SIGTERM (exit 143); its folder can be resumed."""

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

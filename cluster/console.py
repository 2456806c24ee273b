"""What the terminal shows: our lines by default, everything else in the run folder's log.

Three levels, set once per command by ``-q`` / ``-v``:

``quiet``
    Only the result lines (where the run and its leaderboard are) and errors.
``normal`` (default)
    Also the progress of a sweep: one line per finished trial (or a live table on a
    terminal, :mod:`cluster.progress`).
``verbose``
    Also Ray's, Tune's, Optuna's and TensorFlow's own log lines and warnings.

Whatever the level, third-party log records go to ``RUN_DIR/tunefactory.log`` (with our
own lines), so a quiet run still keeps what Ray said: records logged before the run folder
exists (Ray's start-up, its token-auth warning) wait in memory and are written when
:func:`attach_log_file` names the folder.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import TextIO

QUIET, NORMAL, VERBOSE = -1, 0, 1

#: Loggers of the libraries whose lines are kept off the terminal unless ``-v``.
THIRD_PARTY = ("ray", "optuna", "py.warnings", "tensorflow", "absl", "keras", "filelock")
#: Name of the log file inside a run folder.
LOG_FILE = "tunefactory.log"

_state: dict[str, int] = {"level": NORMAL}
_ours = logging.getLogger("tunefactory")
_ours.propagate = False
_ours.setLevel(logging.INFO)


class _Buffer(logging.handlers.MemoryHandler):
    """Holds records until a run folder is known, then writes each one as it comes.

    Without a target it keeps the newest ``capacity`` records (a sweep on object storage
    has no local log file; its memory must stay bounded).
    """

    def shouldFlush(self, record: logging.LogRecord) -> bool:
        if self.target is None:
            if len(self.buffer) > self.capacity:
                del self.buffer[0]
            return False
        return True


_buffer = _Buffer(capacity=10_000, flushLevel=logging.CRITICAL + 1)
# Set on the file handler, not the buffer: ray.init rewrites the formatter of every handler
# on the "ray" logger, the buffer included.
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s")


def set_verbosity(level: int) -> None:
    """Set the level for this process (``QUIET``, ``NORMAL`` or ``VERBOSE``)."""
    _state["level"] = max(QUIET, min(VERBOSE, int(level)))
    if _state["level"] < VERBOSE:
        # Tune's "new output" engine prints a configuration box and a TensorBoard hint at
        # every start even with verbose=0; the legacy reporter at verbose=0 prints nothing.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def verbosity() -> int:
    """The level set by :func:`set_verbosity` (``NORMAL`` when never set)."""
    return _state["level"]


def say(message: str, *, file: TextIO | None = None, progress: bool = False) -> None:
    """Print one of our lines (a ``progress`` line only above ``quiet``) and log it.

    Args:
        message: the line.
        file: the stream (default: stdout).
        progress: a progress line (hidden with ``-q``); result lines are always shown.
    """
    _ours.info(message)
    if progress and _state["level"] <= QUIET:
        return
    print(message, file=file or sys.stdout, flush=True)


def log(message: str) -> None:
    """Write one of our lines to the log file only."""
    _ours.info(message)


def tame_third_party() -> None:
    """Send the libraries' log records to the log file, and to the terminal only with ``-v``.

    Call it after Ray and Optuna were imported (each installs its own terminal handler at
    import, which this turns down to errors). Idempotent.
    """
    verbose = _state["level"] >= VERBOSE
    logging.captureWarnings(True)  # warnings.warn → the "py.warnings" logger
    for name in (*THIRD_PARTY, "tunefactory"):
        lg = logging.getLogger(name)
        if _buffer not in lg.handlers:
            lg.addHandler(_buffer)
        for h in lg.handlers:
            if type(h) is not logging.FileHandler and isinstance(h, logging.StreamHandler):
                h.setLevel(logging.NOTSET if verbose else logging.ERROR)
    if verbose and not any(type(h) is logging.StreamHandler for h in logging.getLogger("py.warnings").handlers):
        logging.getLogger("py.warnings").addHandler(logging.StreamHandler(sys.stderr))


def attach_log_file(run_dir: Path | str) -> Path | None:
    """Write the buffered and all later records to ``run_dir/tunefactory.log`` (local folders only).

    Returns:
        The log file, or None for object-storage run folders (the records stay in memory).
    """
    if "://" in str(run_dir) or not Path(run_dir).is_dir():
        return None
    path = (Path(run_dir) / LOG_FILE).resolve()
    old = _buffer.target
    if isinstance(old, logging.FileHandler) and Path(old.baseFilename) == path:
        return path
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(_FORMAT)
    _buffer.setTarget(fh)  # a second sweep in the same process writes to its own folder
    _buffer.flush()
    if old is not None:
        old.close()
    return path

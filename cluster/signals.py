"""Stopping a sweep with Ctrl-C or SIGTERM: cleanly, resumably, with the right exit code.

No Ray here: Tune is steered through its documented ``TUNE_DISABLE_SIGINT_HANDLER``
variable and the SIGUSR1 it always listens to.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any


class _Signals:
    """Which signal stopped a sweep (None: it ran to its end)."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[_Signals]:
    """During ``Tuner.fit``: SIGINT and SIGTERM stop the sweep cleanly, and say which did.

    Tune stops the trials and snapshots its state one last time (so ``resume`` continues
    exactly) when it gets SIGINT or SIGUSR1, but it swallows SIGINT (``fit`` returned
    normally, and Ctrl-C exited 0 with "sweep finished") and leaves SIGTERM to Python
    (exit 134 with a stack dump). So Tune's own SIGINT handler is switched off with its
    documented ``TUNE_DISABLE_SIGINT_HANDLER`` and ours forwards both signals to Tune as
    SIGUSR1, remembering which came. A second signal gets Python's default (hard stop).
    """
    import signal

    got = _Signals()
    if threading.current_thread() is not threading.main_thread():
        yield got  # signals reach the main thread only; nothing to catch here
        return

    def on_signal(sig: int, frame: Any) -> None:
        got.signum = sig
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGUSR1)

    before_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if before_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = before_env

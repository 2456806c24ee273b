"""The sweep's terminal output: a line per finished trial, with ETA and best so far.

Ray's own progress table is too wide for many groups and is switched off (``verbose=0``);
:func:`cluster.ray_runtime.trial_end_callback` feeds :class:`Progress` as trials start and
end. On a terminal a live table (rich, which Keras already brings) sits below the lines:
per asset/timeframe trials done/running/pending and the best validation skill so far.
When stdout is not a terminal (CI, ``submit`` logs, a pipe) only the plain lines appear,
each carrying the same counts, so a log file tells the same story.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from cluster.console import QUIET, log, say, verbosity

#: The metric searchers and ASHA act on: the running best validation RMSE over the
#: persistence RMSE of the same span (scale-free, so groups share ASHA's arithmetic).
METRIC = "val_ratio_best"


def error_reason(trial: Any) -> str:
    """Last line of a failed trial's ``error.txt`` (the exception and its message)."""
    try:
        lines = [ln for ln in Path(trial.error_file).read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "failed"
    except Exception:
        return "failed"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h04m`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Counts trials as they start and end and prints what a user watching a sweep asks.

    Args:
        total: trials in the sweep.
        groups: trials per asset/timeframe (for the live table's pending column).
        out: stream for the lines (default: stdout).
        live: draw the live table (default: when ``out`` is a terminal and not ``-q``).
        done: trials already ended before this process started (``resume``).
        config_of: maps Tune's trial config to the trial config (group, family).
    """

    def __init__(self, total: int, *, groups: Mapping[str, int] | None = None, out: TextIO | None = None,
                 live: bool | None = None, done: int = 0,
                 config_of: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.total, self.done, self.failed, self.stopped = total, done, 0, 0
        # The trial config as the lines read it (``confirm`` passes Tune only a plan index).
        self.config_of = config_of or (lambda c: c)
        self.base = done  # the ETA's rate counts only trials this process saw end
        self.t0 = time.perf_counter()
        self.out = out
        self.groups: dict[str, dict[str, Any]] = {
            g: {"total": n, "done": 0, "running": 0, "best": math.nan} for g, n in (groups or {}).items()}
        stream = out or sys.stdout
        if live is None:
            live = bool(getattr(stream, "isatty", lambda: False)()) and verbosity() > QUIET
        self._live: Any = None
        if live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._table(), console=Console(file=stream), refresh_per_second=2, transient=False)
            self._live.start()

    def _group(self, name: str) -> dict[str, Any]:
        return self.groups.setdefault(name, {"total": 0, "done": 0, "running": 0, "best": math.nan})

    def eta_seconds(self) -> float:
        """Remaining trials × this process's wall seconds per ended trial (NaN before the first)."""
        seen = self.done - self.base
        if seen <= 0:
            return math.nan
        return (time.perf_counter() - self.t0) / seen * max(self.total - self.done, 0)

    def started(self, trial: Any) -> None:
        """A trial started (or was restored) on a worker."""
        self._group(str(self.config_of(trial.config).get("group", "?")))["running"] += 1
        self._refresh()

    def line(self, trial: Any, *, error: bool = False) -> None:
        """Print the line of a trial that just ended (``error``: it failed)."""
        cfg, res = self.config_of(trial.config), trial.last_result or {}
        g = self._group(str(cfg.get("group", "?")))
        g["running"] = max(0, g["running"] - 1)
        g["done"] += 1
        self.done += 1
        el = time.perf_counter() - self.t0
        head = (f"[{self.done:>4}/{self.total}] {el:6.0f}s ETA {duration(self.eta_seconds()):>6} "
                f"{cfg.get('group', '?'):<16} {cfg.get('family', '?'):<6}")
        if error:
            self.failed += 1
            self._print(f"{head} FAILED: {error_reason(trial)}")
            return
        ratio = res.get(METRIC)
        skill = f"{(1 - ratio) * 100:+.2f}% vs persistence" if ratio else "no result"
        if isinstance(ratio, (int, float)) and math.isfinite(ratio):
            g["best"] = 1 - ratio if math.isnan(g["best"]) else max(g["best"], 1 - ratio)
        # Ray 2.60 marks a trial ASHA stopped with done=True on its last result too; only a
        # trial that ran to its end reports the test scores (in its final row).
        stopped = "test_rmse" not in res
        self.stopped += stopped
        best = f" best {g['best'] * 100:+.2f}%" if math.isfinite(g["best"]) else ""
        self._print(f"{head} val_rmse_best={res.get('val_rmse_best', float('nan')):#.5g} ({skill}) "
                    f"epochs={res.get('epoch', '?')}{' (stopped by ASHA)' if stopped else ''}{best}")

    def close(self) -> None:
        """Stop the live table (leaving its last state on screen)."""
        if self._live is not None:
            self._refresh()
            self._live.stop()
            self._live = None

    # ------------------------------------------------------------------ output
    def _print(self, text: str) -> None:
        if self._live is not None:
            log(text)  # the log file; the live console shows it on screen
            self._live.console.print(text, highlight=False, markup=False, soft_wrap=True)
            self._refresh()
        else:
            say(text, file=self.out, progress=True)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table

        el = time.perf_counter() - self.t0
        t = Table(title=f"{self.done}/{self.total} trials · {duration(el)} elapsed · ETA "
                        f"{duration(self.eta_seconds())} · {self.stopped} stopped by ASHA · {self.failed} failed",
                  title_justify="left", expand=False)
        for col in ("asset/timeframe", "done", "running", "pending", "best val skill"):
            t.add_column(col, justify="left" if col == "asset/timeframe" else "right")
        for name, g in self.groups.items():
            pending = max(g["total"] - g["done"] - g["running"], 0)
            best = f"{g['best'] * 100:+.2f}%" if math.isfinite(g["best"]) else "—"
            t.add_row(name, str(g["done"]), str(g["running"]), str(pending), best)
        return t

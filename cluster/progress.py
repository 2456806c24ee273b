"""The sweep's terminal output: one line per finished or failed trial.

Ray's own progress table is too wide for many groups and is switched off (``verbose=0``);
:func:`cluster.ray_runtime.trial_end_callback` feeds :class:`Progress` as trials end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

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


class Progress:
    """One terminal line per finished trial: count, elapsed time, group, family, score."""

    def __init__(self, total: int, *, out: TextIO | None = None) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.t0 = time.perf_counter()
        self.out = out

    def line(self, trial: Any, *, error: bool = False) -> None:
        """Print the line of a trial that just ended (``error``: it failed)."""
        out = self.out or sys.stdout
        self.done += 1
        cfg, res = trial.config, trial.last_result or {}
        el = time.perf_counter() - self.t0
        head = f"[{self.done:>4}/{self.total}] {el:6.0f}s {cfg.get('group', '?'):<16} {cfg.get('family', '?'):<6}"
        if error:
            self.failed += 1
            print(f"{head} FAILED: {error_reason(trial)}", file=out, flush=True)
            return
        ratio = res.get(METRIC)
        skill = f"{(1 - ratio) * 100:+.2f}% vs persistence" if ratio else "no result"
        # Ray 2.60 marks a trial ASHA stopped with done=True on its last result too; only a
        # trial that ran to its end reports the test scores (in its final row).
        stopped = "test_rmse" not in res
        print(f"{head} val_rmse_best={res.get('val_rmse_best', float('nan')):.5g} ({skill}) "
              f"epochs={res.get('epoch', '?')}{' (stopped by ASHA)' if stopped else ''}",
              file=out, flush=True)

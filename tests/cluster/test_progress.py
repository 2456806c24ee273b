"""The sweep's terminal line per trial: finished, stopped by ASHA, failed."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

from cluster.progress import Progress


def _trial(last: dict[str, object], error_file: str = "") -> SimpleNamespace:
    return SimpleNamespace(config={"group": "BTC-USDT/1d", "family": "gru"}, last_result=last,
                           error_file=error_file)


def test_a_trial_asha_stopped_says_so_although_ray_marks_it_done() -> None:
    out = io.StringIO()
    prog = Progress(3, out=out)
    # Ray 2.60: a trial ASHA stopped carries done=True on its last row, without test scores.
    prog.line(_trial({"done": True, "epoch": 4, "val_rmse_best": 0.02, "val_ratio_best": 0.99}))
    prog.line(_trial({"done": True, "epoch": 9, "val_rmse_best": 0.02, "val_ratio_best": 0.98,
                      "test_rmse": 0.03}))
    first, second = out.getvalue().splitlines()
    assert first.startswith("[   1/3]") and first.endswith("epochs=4 (stopped by ASHA)")
    assert "+1.00% vs persistence" in first
    assert second.endswith("epochs=9") and "+2.00% vs persistence" in second


def test_a_failed_trial_line_gives_the_last_line_of_its_error_file(tmp_path: Path) -> None:
    err = tmp_path / "error.txt"
    err.write_text("Traceback ...\n  File x\nTrialDiverged: training loss became nan at epoch 1\n\n")
    out = io.StringIO()
    prog = Progress(1, out=out)
    prog.line(_trial({}, str(err)), error=True)
    assert out.getvalue().rstrip().endswith("FAILED: TrialDiverged: training loss became nan at epoch 1")
    assert prog.failed == 1

"""The sweep's terminal line per trial: finished, stopped by ASHA, failed."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest

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
    assert first.startswith("[   1/3]") and first.endswith("epochs=4 (stopped by ASHA) best +1.00%")
    assert "+1.00% vs persistence" in first
    assert second.endswith("epochs=9 best +2.00%") and "+2.00% vs persistence" in second
    assert prog.stopped == 1


def test_eta_is_remaining_trials_times_seconds_per_ended_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("cluster.progress.time.perf_counter", lambda: clock[0])
    out = io.StringIO()
    prog = Progress(5, groups={"BTC-USDT/1d": 5}, out=out)
    assert prog.eta_seconds() != prog.eta_seconds()  # NaN before the first trial ends
    prog.started(_trial({}))
    prog.started(_trial({}))
    assert prog.groups["BTC-USDT/1d"]["running"] == 2
    clock[0] = 130.0
    prog.line(_trial({"epoch": 2, "val_rmse_best": 0.02, "val_ratio_best": 0.99, "test_rmse": 0.03}))
    assert prog.eta_seconds() == pytest.approx(4 * 30.0)
    assert "ETA  2m00s" in out.getvalue()
    assert prog.groups["BTC-USDT/1d"] == {"total": 5, "done": 1, "running": 1, "best": pytest.approx(0.01)}


def test_resumed_progress_counts_earlier_trials_but_not_in_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("cluster.progress.time.perf_counter", lambda: clock[0])
    prog = Progress(10, out=io.StringIO(), done=6)
    clock[0] = 20.0
    prog.line(_trial({"epoch": 1, "val_ratio_best": 1.0, "val_rmse_best": 0.02}))
    assert prog.done == 7 and prog.eta_seconds() == pytest.approx(3 * 20.0)


def test_live_table_on_a_terminal_shows_groups_and_eta() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    prog = Progress(2, groups={"BTC-USDT/1d": 2}, out=out)
    prog.started(_trial({}))
    prog.line(_trial({"epoch": 2, "val_rmse_best": 0.02, "val_ratio_best": 0.97, "test_rmse": 0.03}))
    prog.close()
    text = out.getvalue()
    assert "1/2 trials" in text and "ETA" in text and "BTC-USDT/1d" in text and "+3.00%" in text
    assert "val_rmse_best=0.02" in text  # the trial line printed above the table


def test_a_failed_trial_line_gives_the_last_line_of_its_error_file(tmp_path: Path) -> None:
    err = tmp_path / "error.txt"
    err.write_text("Traceback ...\n  File x\nTrialDiverged: training loss became nan at epoch 1\n\n")
    out = io.StringIO()
    prog = Progress(1, out=out)
    prog.line(_trial({}, str(err)), error=True)
    assert out.getvalue().rstrip().endswith("FAILED: TrialDiverged: training loss became nan at epoch 1")
    assert prog.failed == 1

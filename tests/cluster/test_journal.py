"""The Optuna journal in the run folder: what optuna-dashboard and optuna.load_study read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from reports.collect import load_run

ROOT = Path(__file__).resolve().parents[2]


def _study(path: Path, group: str) -> optuna.Study:
    return optuna.load_study(study_name=group, storage=JournalStorage(JournalFileBackend(str(path))))


def test_journal_of_a_finished_sweep_holds_every_trial_as_told(small_run: Path) -> None:
    study = _study(small_run / "optuna.journal", "BTC-USDT/1d")
    run = load_run(small_run)
    by_id = {t.trial_id: t for t in run.trials}
    trials = study.get_trials(deepcopy=False)
    assert sorted(str(t.user_attrs["tune_trial_id"]) for t in trials) == sorted(by_id)
    for t in trials:
        tr = by_id[str(t.user_attrs["tune_trial_id"])]
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.value == pytest.approx((tr.final or tr.history[-1])["val_ratio_best"])
        # what Optuna was told is the subset that trained (issue 13, item 5)
        assert t.user_attrs["indicators"] == tr.config["indicators"]


SPEC = """\
name: live
data: {assets: [BTC-USDT], timeframes: [1d], start: 2021-01-01}
window: {lookback: 4}
features: {pool: [log_return, rsi, hl_spread], min_size: 1, always: [log_return_1]}
model: {families: {mlp: {units: {type: choice, values: [4, 8]}}}}
training: {max_epochs: 2, patience: 2, batch_size: 64}
search: {algorithm: optuna-tpe, num_samples: 6, seed: 1, max_concurrent: 1}
scheduler: {kind: none}
resources: {cpus: 1}
"""


def test_journal_of_a_running_sweep_loads_with_every_trial_finished_so_far(tmp_path: Path) -> None:
    spec = tmp_path / "live.yaml"
    spec.write_text(SPEC)
    journal = tmp_path / "runs" / "live" / "optuna.journal"
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run", str(spec), "--storage",
                             str(tmp_path / "runs"), "--num-cpus", "2", "-q"], cwd=ROOT,
                            env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        mid: list[optuna.trial.FrozenTrial] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.is_file():
                mid = _study(journal, "BTC-USDT/1d").get_trials()
                if 1 <= len(mid) < 6:
                    break
            time.sleep(0.5)
        still_running = proc.poll() is None
        _out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert still_running and 1 <= len(mid) < 6, "the journal never showed a part-finished sweep"
    for t in mid:  # every trial the live journal showed had finished with that value
        res = (tmp_path / "runs" / "live" / f"trial_{t.user_attrs['tune_trial_id']}" / "result.json").read_text()
        assert "test_rmse" in res.splitlines()[-1]
    final = _study(journal, "BTC-USDT/1d").get_trials()
    assert len(final) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in final)
    assert len({t.user_attrs["tune_trial_id"] for t in final}) == 6

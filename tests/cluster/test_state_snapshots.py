"""Experiment state on a time budget (issue 16, item 2): small per trial, and resume still exact.

Tune snapshots its state every ~10 s or more instead of after every trial, so a driver
killed mid-sweep leaves trials the snapshot never saw; ``reconcile_state`` folds them back
in from the trial folders and the Optuna journal before ``Tuner.restore``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.helpers import BIN, ROOT, descendants, ray_env, stop_tree


def _write_rows(d: Path, rows: list[dict[str, Any]], config: dict[str, Any]) -> None:
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps(config))
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_reconcile_adopts_trials_that_ended_after_the_snapshot_and_reissues_the_rest(
        tmp_path: Path, tiny_spec_text: str) -> None:
    from cluster.experiment_state import reconcile_state
    from cluster.searcher import GroupedSearcher
    from search_spaces.loader import load_spec

    raw = yaml.safe_load(tiny_spec_text)
    raw["search"]["num_samples"] = 6
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp_path / "s.yaml").spec
    run = tmp_path / "run"
    run.mkdir()
    g = "BTC-USDT/1d"
    live = GroupedSearcher(spec, metric="val_ratio_best", mode="min", journal=str(run / "optuna.journal"))
    cfg = {t: live.suggest(t) for t in ("t0", "t1", "t2")}
    live.on_trial_complete("t0", {"val_ratio_best": 0.9})
    # The last snapshot: t0 ended, t1 and t2 running.
    live.save(str(run / "searcher-state-2026-01-01_00-00-00.pkl"))

    def trial(tid: str, status: str) -> list[str]:
        return [json.dumps({"trial_id": tid, "status": status, "relative_logdir": f"trial_{tid}"}),
                json.dumps({"last_result": {}, "num_failures": 0})]

    (run / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(
        {"trial_data": [trial("t0", "TERMINATED"), trial("t1", "RUNNING"), trial("t2", "RUNNING")],
         "runner_data": {}, "stats": {}}))
    # After it: t1 finished (told), t2 still running; t3..t5 started. t3 stopped by ASHA
    # (told), t4 still running, t5 finished but the driver died before telling the searcher.
    cfg.update({t: live.suggest(t) for t in ("t3", "t4", "t5")})
    final = {"epoch": 2, "done": True, "test_rmse": 0.1}
    live.on_trial_complete("t1", {"val_ratio_best": 0.8})
    live.on_trial_complete("t3", {"val_ratio_best": 0.95})
    _write_rows(run / "trial_t0", [{"epoch": 1, "val_ratio_best": 0.9}, {**final, "val_ratio_best": 0.9}], cfg["t0"])
    _write_rows(run / "trial_t1", [{"epoch": 1, "val_ratio_best": 0.8}, {**final, "val_ratio_best": 0.8}], cfg["t1"])
    _write_rows(run / "trial_t2", [{"epoch": 1, "val_ratio_best": 1.2}], cfg["t2"])
    _write_rows(run / "trial_t3", [{"epoch": 1, "val_ratio_best": 0.95, "done": True}], cfg["t3"])
    _write_rows(run / "trial_t4", [{"epoch": 1, "val_ratio_best": 1.1}], cfg["t4"])
    _write_rows(run / "trial_t5", [{"epoch": 1, "val_ratio_best": 0.7}, {**final, "val_ratio_best": 0.7}], cfg["t5"])

    fixed = reconcile_state(str(run))

    assert fixed == {"finished": ["t1"], "cleared": ["t2"], "adopted": ["t3", "t5"], "discarded": ["t4"]}
    assert sorted(p.name for p in run.glob("trial_*")) == ["trial_t0", "trial_t1", "trial_t2", "trial_t3", "trial_t5"]
    state = json.loads((run / "experiment_state-2026-01-01_00-00-00.json").read_text())
    assert [json.loads(t)["status"] for t, _ in state["trial_data"]] == ["TERMINATED", "TERMINATED", "RUNNING"]

    resumed = GroupedSearcher(spec, metric="val_ratio_best", mode="min")  # what Tune's restore does
    resumed.restore(str(run / "searcher-state-2026-01-01_00-00-00.pkl"))
    trials = resumed.studies[g].trials
    assert [(t.state.name, t.value) for t in trials] == [
        ("COMPLETE", 0.9), ("COMPLETE", 0.8), ("RUNNING", None), ("COMPLETE", 0.95)]  # t5: not in the journal
    assert trials[3].params == live.studies[g].trials[3].params
    assert resumed.live == {"t2": (g, 2)}
    assert [resumed.suggest("u0")["trial_number"], resumed.suggest("u1")] == [4, "FINISHED"]  # t4's number again


def test_tune_keeps_statistics_of_the_sweep_metric_only() -> None:
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    from cluster.ray_runtime import track_only

    try:
        track_only("val_ratio_best")
        meta = _TrainingRunMetadata()
        for step in (1, 2):
            for k, v in {"val_ratio_best": 0.9 / step, "test_rmse": 0.1, "loss": 1.0}.items():
                meta.update_metric(k, v, step=step)
        assert list(meta.metric_analysis) == ["val_ratio_best"] and list(meta.metric_n_steps) == ["val_ratio_best"]
        assert meta.metric_analysis["val_ratio_best"]["min"] == 0.45
    finally:
        track_only(None)
    meta = _TrainingRunMetadata()
    meta.update_metric("loss", 1.0)
    assert list(meta.metric_analysis) == ["loss"]  # None: Tune's default, every metric


def _ended(run: Path) -> dict[str, bytes]:
    out = {}
    for d in run.glob("trial_*"):
        f = d / "result.json"
        if f.is_file() and any('"done": true' in ln for ln in f.read_text().splitlines()):
            out[d.name] = f.read_bytes()
    return out


def test_sigkill_between_rare_snapshots_then_resume_runs_each_trial_number_once(
        tmp_path: Path, tiny_spec_text: str) -> None:
    """Stand-in trials (no TensorFlow), one snapshot an hour: most ended trials are unknown to the state."""
    raw = yaml.safe_load(tiny_spec_text)
    raw["data"]["timeframes"] = ["1d", "4h"]
    raw["search"]["num_samples"] = 300
    raw["scheduler"] = {"kind": "asha", "grace_period": 1, "reduction_factor": 2}
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(raw))
    run = tmp_path / "runs" / "k"
    # PYTHONPATH: the `tunefactory` script of an editable install imports the checkout it was
    # installed from, which need not be this one (a git worktree sharing the venv).
    env = {**ray_env(None), "TUNEFACTORY_SYNTHETIC_EPOCHS": "2", "TUNE_GLOBAL_CHECKPOINT_S": "3600",
           "PYTHONPATH": str(ROOT)}
    env.pop("RAY_AUTH_MODE", None)
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        driver = subprocess.Popen([str(BIN / "tunefactory"), "run", str(spec), "--name", "k", "--storage",
                                   str(tmp_path / "runs"), "--num-cpus", "2"], cwd=ROOT, env=env, stdout=fh,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    tree: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None and len(_ended(run) if run.is_dir() else {}) < 30:
            time.sleep(0.2)
        assert driver.poll() is None, f"the sweep ended before it could be killed:\n{log.read_text()[-3000:]}"
        tree = descendants(driver.pid)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        stop_tree(tree, grace=10)
    before = _ended(run)
    assert 30 <= len(before) < 600

    res = subprocess.run([str(BIN / "tunefactory"), "resume", str(run), "--num-cpus", "2"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "ended after the last state snapshot" in res.stdout + res.stderr  # the snapshot really was behind

    numbers: dict[str, list[int]] = {}
    for d in run.glob("trial_*"):
        cfg = json.loads((d / "params.json").read_text())
        numbers.setdefault(cfg["group"], []).append(cfg["trial_number"])
        rows = [json.loads(ln) for ln in (d / "result.json").read_text().splitlines() if ln.strip()]
        assert sum(r.get("done") is True for r in rows) == 1, d.name
        epochs = [r["epoch"] for r in rows if "test_rmse" not in r]
        assert len(epochs) == len(set(epochs)), f"{d.name}: epochs trained twice: {epochs}"
    assert {g: sorted(n) for g, n in numbers.items()} == {g: list(range(300)) for g in ("BTC-USDT/1d", "BTC-USDT/4h")}
    for name, content in before.items():  # ended before the kill: kept as they were, not run again
        assert (run / name / "result.json").read_bytes() == content, name


def test_next_trial_to_start_is_fifos_choice_without_its_scan() -> None:
    import random

    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler

    from cluster.searcher import WaitingFirstFIFO

    class _Trial:
        def __init__(self, status: str) -> None:
            self.status = status

    class _Controller:  # what the schedulers read of Tune's controller
        def __init__(self, trials: list[_Trial]) -> None:
            self.trials = trials
            self._pending_trials = {t for t in trials if t.status == Trial.PENDING}
            self._paused_trials = {t for t in trials if t.status == Trial.PAUSED}

        def get_trials(self) -> list[_Trial]:
            return self.trials

    rng = random.Random(0)
    statuses = [Trial.TERMINATED, Trial.ERROR, Trial.RUNNING, Trial.PENDING, Trial.PAUSED]
    for case in range(300):
        n = rng.randint(0, 40)
        trials = [_Trial(rng.choice(statuses[: 3 + case % 3])) for _ in range(n)]
        ctl = _Controller(trials)
        assert WaitingFirstFIFO().choose_trial_to_run(ctl) is FIFOScheduler().choose_trial_to_run(ctl)
    assert WaitingFirstFIFO().choose_trial_to_run(_Controller([])) is None

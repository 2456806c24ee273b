"""Kill the sweep driver with SIGKILL mid-sweep, ``tunefactory resume``, and nothing is lost or run twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster.helpers import BIN, ROOT, descendants, ray_env, stop_tree


def _final_rows(trial_dir: Path) -> list[dict[str, object]]:
    rows = [json.loads(ln) for ln in (trial_dir / "result.json").read_text().splitlines() if ln.strip()]
    return [r for r in rows if r.get("done") is True and "test_rmse" in r]


def _finished(run: Path) -> dict[str, bytes]:
    """trial folder name -> result.json bytes, for trials with a final row."""
    out = {}
    for d in sorted(run.glob("trial_*")):
        if (d / "result.json").is_file() and _final_rows(d):
            out[d.name] = (d / "result.json").read_bytes()
    return out


def test_sigkill_then_resume_finishes_every_trial_exactly_once(tmp_path: Path, tiny_spec_text: str) -> None:
    raw = yaml.safe_load(tiny_spec_text)
    raw["search"]["num_samples"] = 5
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(raw))
    storage = tmp_path / "runs"
    run = storage / "kr"
    env = ray_env(None)
    env.pop("RAY_AUTH_MODE", None)
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        driver = subprocess.Popen(
            [str(BIN / "tunefactory"), "run", str(spec), "--name", "kr", "--storage", str(storage),
             "--num-cpus", "2"], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    tree: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            if run.is_dir() and len(_finished(run)) >= 2:
                break
            time.sleep(0.5)
        assert driver.poll() is None, f"the sweep ended before it could be killed:\n{log.read_text()[-3000:]}"
        assert len(_finished(run)) >= 2, log.read_text()[-3000:]
        tree = descendants(driver.pid)  # Ray's processes started by the driver, before they are orphaned
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        stop_tree(tree, grace=10)
    before = _finished(run)
    assert 2 <= len(before) < 5, "the kill must land mid-sweep"
    # Killed: no sweep-finished marker, so a report built now is partial while a trial had not ended.
    from reports.build import build_report
    from reports.collect import FINISHED_MARKER, load_run

    assert not (run / FINISHED_MARKER).exists()
    killed = load_run(run)
    build_report(run)
    summary = json.loads((run / "report" / "summary.json").read_text())
    open_trials = sum(not t.closed for t in killed.trials)
    assert summary["partial"] == ({"missing": open_trials, "total": len(killed.trials)} if open_trials else None)

    res = subprocess.run([str(BIN / "tunefactory"), "resume", str(run), "--num-cpus", "2"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    trials = sorted(run.glob("trial_*"))
    assert len(trials) == 5, [t.name for t in trials]
    for d in trials:
        finals = _final_rows(d)
        assert len(finals) == 1, f"{d.name}: {len(finals)} final results"
        epochs = [json.loads(ln)["epoch"] for ln in (d / "result.json").read_text().splitlines()
                  if ln.strip() and "test_rmse" not in ln]
        assert len(epochs) == len(set(epochs)), f"{d.name}: epochs trained twice: {epochs}"
    for name, content in before.items():  # finished before the kill: untouched, not re-run
        assert (run / name / "result.json").read_bytes() == content, name

    import pandas as pd

    board = pd.read_csv(run / "report" / "leaderboard.csv")
    assert sorted(board["trial_id"].astype(str)) == sorted(t.name.removeprefix("trial_") for t in trials)
    assert set(board["status"]) == {"finished"}
    # resume saw the sweep end: the marker is back and the report it wrote is not partial
    assert json.loads((run / FINISHED_MARKER).read_text())["finished"]
    assert json.loads((run / "report" / "summary.json").read_text())["partial"] is None


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_stop_cleanly_then_resume_finishes_every_trial_once(
        tmp_path: Path, tiny_spec_text: str, sig: signal.Signals, code: int) -> None:
    raw = yaml.safe_load(tiny_spec_text)
    raw["search"]["num_samples"] = 5
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(raw))
    run = tmp_path / "runs" / "sig"
    env = ray_env(None)
    env.pop("RAY_AUTH_MODE", None)
    driver = subprocess.Popen(
        [str(BIN / "tunefactory"), "run", str(spec), "--name", "sig", "--storage", str(tmp_path / "runs"),
         "--num-cpus", "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    tree: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None and not (run.is_dir() and _finished(run)):
            time.sleep(0.3)
        assert driver.poll() is None, "the sweep ended before the signal"
        tree = descendants(driver.pid)
        os.kill(driver.pid, sig)
        out, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
        stop_tree(tree, grace=10)
    assert driver.returncode == code, out[-2000:] + err[-3000:]
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert last.startswith(f"tunefactory: sweep interrupted by {sig.name}") and f"`tunefactory resume {run}`" in last
    assert "Traceback" not in err and "sweep finished" not in out
    before = _finished(run)
    assert 1 <= len(before) < 5

    res = subprocess.run([str(BIN / "tunefactory"), "resume", str(run), "--num-cpus", "2"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    trials = sorted(run.glob("trial_*"))
    assert len(trials) == 5
    for d in trials:
        assert len(_final_rows(d)) == 1, d.name
    for name, content in before.items():
        assert (run / name / "result.json").read_bytes() == content, name

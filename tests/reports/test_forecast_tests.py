"""The report's forecast-comparison tests on a real small run: DM per trial, SPA per group, exclusions, verdicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from reports.backtest import backtest
from reports.build import _headline, _verdict, build_report
from reports.collect import load_run
from reports.forecast_tests import GroupTests, group_losses, report_alpha
from reports.statistics import DMResult, MCSResult, SPAResult, diebold_mariano
from tests.reports.conftest import copy_run, winner_dir
from trainables.errors import RunError
from trainables.predictions import predictions_csv, read_predictions

GROUP = "BTC-USDT/1d"


def test_report_shows_dm_and_spa_in_every_file(built_run: Path) -> None:
    out = built_run / "report"
    board = pd.read_csv(out / "leaderboard.csv")
    assert {"dm_stat", "dm_pvalue"} <= set(board.columns)
    trials = json.loads((out / "leaderboard.json").read_text())["trials"]
    assert len(trials) == 4
    for rec in trials:  # every trial of the tiny run finished: each has its DM test
        assert 0.0 <= rec["dm_pvalue"] <= 1.0 and math.isfinite(rec["dm_stat"])
    # The winner's DM, recomputed from its predictions on disk (compact: its own forecasts
    # plus the group's shared test span).
    win = winner_dir(built_run)
    ck = next(win.glob("checkpoint_*"))
    assert not (ck / "predictions.csv").exists()
    span = pd.read_csv(built_run / "test_span" / "BTC-USDT_1d.csv")
    pred = span.assign(y_pred=np.load(ck / "predictions.npy", allow_pickle=False))
    dm = diebold_mariano((pred["y_pred"] - pred["y_true"]) ** 2, (pred["y_persistence"] - pred["y_true"]) ** 2,
                         horizon=1)
    rec = next(r for r in trials if r["trial_id"] == win.name.removeprefix("trial_"))
    assert rec["dm_pvalue"] == pytest.approx(dm.pvalue) and rec["dm_stat"] == pytest.approx(dm.statistic)

    (g,) = json.loads((out / "summary.json").read_text())["groups"]
    t = g["tests"]
    assert t["alpha"] == 0.05 and t["entered"] == 4 and t["n_obs"] == len(pred) and t["excluded"] == {}
    spa = t["spa"]
    assert spa["status"] == "ok" and 0.0 <= spa["consistent"] <= 1.0 and spa["n_models"] == 4
    assert spa["block_size"] >= 1 and spa["reps"] == 1000 and spa["seed"] == 7  # the spec's search.seed
    assert t["winner_dm"]["pvalue"] == pytest.approx(dm.pvalue)
    # Deflated Sharpe sits beside the raw Sharpe of the same backtest.
    d = t["deflated_sharpe"]
    assert d["n_trials"] == 4 and d["sharpe"] == pytest.approx(g["backtest"]["strategy"]["sharpe"])
    assert d["sharpe"] == pytest.approx(backtest(pred, target="multiplier", horizon=1, timeframe="1d").strategy.sharpe)
    assert d["status"] == "ok" and 0.0 <= d["deflated_sharpe"] <= 1.0
    # The verdict carries the numbers, and the page shows them one click away.
    assert g["verdict"]["details"] == (f"DM p = {dm.pvalue:.3g}; SPA p = {spa['consistent']:.3g} over 4 configs; "
                                       "alpha 0.05")
    html = (out / "index.html").read_text()
    assert f"<summary>Tests against persistence: {g['verdict']['details']}</summary>" in html
    assert f"consistent p = {spa['consistent']:.3g}" in html
    assert f"class=\"dsr\">{d['deflated_sharpe'] * 100:.1f}%" in html


def _as_old_csv(ck: Path) -> Path:
    """Turn a checkpoint's compact predictions into the old ``predictions.csv`` (same table)."""
    f = ck / "predictions.csv"
    f.write_text(predictions_csv(read_predictions(ck)))
    (ck / "predictions.npy").unlink()
    (ck / "predictions.json").unlink()
    return f


def test_trial_whose_predictions_miss_test_rows_is_excluded_and_listed(small_run: Path, tmp_path: Path) -> None:
    run = copy_run(small_run, tmp_path / "run")
    win = winner_dir(run)
    others = sorted(d for d in run.glob("trial_*") if d != win)
    # Old-format checkpoints (predictions.csv) enter beside compact ones (the winner's): the
    # third one does; the first two are damaged.
    short, shifted, _ = (_as_old_csv(next(d.glob("checkpoint_*"))) for d in others)
    lines = short.read_text().splitlines(keepends=True)
    short.write_text("".join(lines[:10] + lines[11:]))  # one test row missing
    df = pd.read_csv(shifted)
    df.loc[0, "timestamp"] = "2020-01-01T00:00:00Z"  # same length, another first sample
    df.to_csv(shifted, index=False)

    gl = group_losses(load_run(run), GROUP)
    n = json.loads((run / "groups.json").read_text())["groups"][GROUP]["samples"]["test"]
    short_id, shifted_id = (d.name.removeprefix("trial_") for d in others[:2])
    assert gl.excluded[short_id] == f"{n - 1} prediction rows, the test span has {n} samples"
    assert gl.excluded[shifted_id].startswith("predictions cover 2020-01-01T00:00:00Z → ")
    assert sorted(gl.trial_ids) == sorted({d.name.removeprefix("trial_") for d in run.glob("trial_*")}
                                          - {short_id, shifted_id})
    assert gl.losses.shape == (n, 2) and len(gl.persistence) == n

    build_report(run)
    (g,) = json.loads((run / "report" / "summary.json").read_text())["groups"]
    assert g["tests"]["entered"] == 2 and set(g["tests"]["excluded"]) == {short_id, shifted_id}
    assert g["tests"]["spa"]["n_models"] == 2
    assert g["tests"]["deflated_sharpe"]["n_trials"] == 4  # configs tried: every finished trial
    recs = {r["trial_id"]: r for r in json.loads((run / "report" / "leaderboard.json").read_text())["trials"]}
    assert recs[short_id]["dm_pvalue"] is None and recs[shifted_id]["dm_pvalue"] is None
    html = (run / "report" / "index.html").read_text()
    assert f"<code>{short_id}</code>: {n - 1} prediction rows, the test span has {n} samples" in html


def _tests(dm_p: float | None, spa_p: float | None, *, n_models: int = 12, alpha: float = 0.05) -> GroupTests:
    dm = DMResult(-2.0, dm_p, 200, 1, -1e-5, "acf", "less")
    spa = SPAResult("ok" if spa_p is not None else "not enough finished configs for the SPA test (1 < 2)", spa_p,
                    spa_p, spa_p, n_models, 200, 2, "rule", 1000, 0)
    return GroupTests(GROUP, alpha, 200, ["w"], {"stopped": [], "failed": [], "running": []}, {}, {"w": dm}, spa,
                      MCSResult("ok"))


def test_verdict_says_beats_only_when_spa_and_dm_are_both_below_alpha() -> None:
    win = {"trial_id": "w", "test_skill": 0.004, "val_skill": 0.001, "test_rmse": 1.0}
    both = _verdict(win, None, None, None, tests=_tests(0.01, 0.03))
    assert both["level"] == "warn" and "beats persistence on the test span by +0.40%" in both["text"]
    assert both["details"] == "DM p = 0.01; SPA p = 0.03 over 12 configs; alpha 0.05"
    for dm_p, spa_p in ((0.01, 0.2), (0.2, 0.01), (0.01, None), (None, 0.01), (0.05, 0.01)):
        v = _verdict(win, None, None, None, tests=_tests(dm_p, spa_p))
        assert v["level"] == "bad", (dm_p, spa_p)
        assert v["text"].startswith("the winner's test skill is +0.40%, but with 12 configs tried that is not "
                                    "distinguishable from persistence")
    assert "SPA: not enough finished configs" in _verdict(win, None, None, None, tests=_tests(0.01, None))["details"]
    # A looser alpha from the spec lets the same numbers through.
    assert _verdict(win, None, None, None, tests=_tests(0.01, 0.08, alpha=0.1))["level"] == "warn"
    # The headline counts such a winner as "cannot be told from persistence".
    v = _verdict(win, None, None, None, tests=_tests(0.01, 0.2))
    assert _headline([{"winner": win, "verdict": v}])["text"] == ("The winner cannot be told from persistence "
                                                                 "(“next close = last close”).")


def test_report_alpha_is_read_from_the_run_spec(small_run: Path, tmp_path: Path) -> None:
    run = copy_run(small_run, tmp_path / "run")
    assert report_alpha(load_run(run)) == 0.05  # the tiny spec has no report section: the default
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    (run / "spec.yaml").write_text(yaml.safe_dump({**spec, "report": {"alpha": 0.2}}))
    assert report_alpha(load_run(run)) == 0.2
    build_report(run)
    assert json.loads((run / "report" / "summary.json").read_text())["groups"][0]["tests"]["alpha"] == 0.2
    (run / "spec.yaml").write_text(yaml.safe_dump({**spec, "report": {"alpha": 0.6}}))
    with pytest.raises(RunError, match=rf"^{run / 'spec.yaml'}: report\.alpha: must be <= 0\.5; got 0\.6$"):
        build_report(run)


def test_confirmation_verdict_follows_the_seed_averaged_dm_test() -> None:
    win = {"trial_id": "w", "test_skill": 0.004, "val_skill": 0.001, "test_rmse": 1.0}
    conf = {"test_skill_mean": 0.003, "test_skill_std": 0.001, "runs": 6, "verdict": "beats persistence",
            "dm_n": 260, "dm_runs": 6}
    meta = {"seeds": 3, "folds": 2}
    good = _verdict(win, {**conf, "dm_pvalue": 0.01}, None, meta, tests=_tests(0.01, 0.03))
    assert good["level"] == "good" and "still beats it, averaged over seeds" in good["text"]
    assert good["details"].endswith("re-trained, averaged over seeds: DM p = 0.01 over 260 samples (6 runs)")
    # A tight spread is not enough: the averaged loss differential must be significant too.
    noise = _verdict(win, {**conf, "dm_pvalue": 0.3}, None, meta, tests=_tests(0.01, 0.03))
    assert noise["level"] == "bad"
    assert "averaged over seeds, it is not distinguishable from persistence" in noise["text"]

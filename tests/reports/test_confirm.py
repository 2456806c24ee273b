"""Confirmation: walk-forward folds, the plan, and a tiny real confirmation sweep."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cluster.confirm import plan_confirmation, walk_forward
from reports.confirmation import NOT_DISTINGUISHABLE, aggregate
from tests.reports.conftest import copy_run
from trainables.errors import RunError


@pytest.fixture(scope="module")
def prepared() -> object:
    from trainables.data.candles import load_candles
    from trainables.features.dataset import prepare
    from trainables.features.indicators import make_member

    return prepare(load_candles("BTC-USDT", "1d"), [make_member("log_return")], horizon=2, max_lookback=8)


def test_walk_forward_folds_step_back_by_one_test_span(prepared) -> None:  # type: ignore[no-untyped-def]
    p = prepared
    folds = walk_forward(p, 3)
    last = folds[-1]
    assert np.array_equal(last.train_idx, p.train_idx) and np.array_equal(last.test_idx, p.test_idx)
    for f, nxt in itertools.pairwise(folds):
        assert len(f.test_idx) == len(p.test_idx)
        assert f.test_idx[-1] < nxt.test_idx[0]  # consecutive, non-overlapping test spans
    for f in folds:
        assert f.train_idx[-1] + p.horizon <= f.val_idx[0]  # purged: no label reaches the next span
        assert f.val_idx[-1] + p.horizon <= f.test_idx[0]
        assert len(np.intersect1d(f.train_idx, f.test_idx)) == 0
    assert len(folds[0].train_idx) < len(folds[1].train_idx) < len(folds[2].train_idx)
    with pytest.raises(RunError, match="use fewer folds"):
        walk_forward(p, 20)


def test_plan_and_argument_errors(small_run: Path) -> None:
    plan = plan_confirmation(small_run, top_k=2, seeds=3, folds=2)
    assert len(plan) == 2 * 3 * 2
    assert {e["search_rank"] for e in plan} == {1, 2}
    # Common random numbers: both configs get the same seeds.
    seeds = {t: sorted({e["seed"] for e in plan if e["trial_id"] == t}) for t in {p["trial_id"] for p in plan}}
    assert len({tuple(v) for v in seeds.values()}) == 1 and len(next(iter(seeds.values()))) == 3
    assert all(e["config"]["group"] == f"BTC-USDT/1d#fold{e['fold']}" for e in plan)
    with pytest.raises(RunError, match="--top-k must be >= 1"):
        plan_confirmation(small_run, top_k=0, seeds=1)
    with pytest.raises(RunError, match="--seeds must be >= 1"):
        plan_confirmation(small_run, top_k=1, seeds=0)
    with pytest.raises(RunError, match="--folds must be >= 1"):
        plan_confirmation(small_run, top_k=1, seeds=1, folds=0)


def test_cli_confirm_error_exits_2(small_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    assert main(["confirm", str(small_run), "--top-k", "0"]) == 2
    assert capsys.readouterr().err.strip() == "--top-k must be >= 1; got 0"


def test_aggregate_ranks_by_mean_test_rmse_and_flags_noise() -> None:
    runs = pd.DataFrame([
        {"group": "A/1d", "trial_id": "x", "search_rank": 1, "family": "gru", "status": "finished",
         "test_rmse": r, "test_skill": s, "val_rmse_best": r, "test_diracc": 0.5}
        for r, s in [(2.0, 0.01), (2.2, -0.01), (2.1, 0.005)]] + [
        {"group": "A/1d", "trial_id": "y", "search_rank": 2, "family": "mlp", "status": "finished",
         "test_rmse": r, "test_skill": s, "val_rmse_best": r, "test_diracc": 0.5}
        for r, s in [(1.0, 0.05), (1.1, 0.06)]] + [
        {"group": "A/1d", "trial_id": "y", "search_rank": 2, "family": "mlp", "status": "failed",
         "test_rmse": math.nan, "test_skill": math.nan, "val_rmse_best": math.nan, "test_diracc": math.nan}])
    agg = aggregate(runs).set_index("trial_id")
    assert agg.loc["y", "confirm_rank"] == 1 and agg.loc["x", "confirm_rank"] == 2
    assert agg.loc["y", "runs"] == 2 and agg.loc["y", "failed"] == 1
    assert agg.loc["x", "test_skill_std"] == pytest.approx(np.std([0.01, -0.01, 0.005], ddof=1))
    assert agg.loc["x", "verdict"] == NOT_DISTINGUISHABLE
    assert agg.loc["y", "verdict"] == "beats persistence"


def test_confirmation_on_a_tiny_run_matches_a_recomputation(small_run: Path, tmp_path: Path,
                                                            ray_local: None) -> None:
    from cluster.confirm import run_confirmation
    from reports.build import build_report

    run = copy_run(small_run, tmp_path / "run")
    summary = run_confirmation(run, top_k=1, seeds=2, folds=2)
    exp = run / "confirm" / summary["experiment"]
    plan = {e["index"]: e for e in json.loads((exp / "plan.json").read_text())["plan"]}
    assert len(plan) == 4

    # Recompute from the per-run result files, independently of read_runs/aggregate.
    per: dict[str, list[tuple[float, float]]] = {}
    for d in exp.glob("trial_*"):
        idx = json.loads((d / "params.json").read_text())["index"]
        final = [json.loads(x) for x in (d / "result.json").read_text().splitlines()][-1]
        assert final["done"] is True
        per.setdefault(plan[idx]["trial_id"], []).append((final["test_rmse"], final["test_skill"]))
    assert sum(len(v) for v in per.values()) == 4
    (row,) = summary["ranking"]
    rmse, skill = np.array(per[row["trial_id"]]).T
    assert row["runs"] == 4
    assert row["test_rmse_mean"] == pytest.approx(rmse.mean())
    assert row["test_rmse_std"] == pytest.approx(rmse.std(ddof=1))
    assert row["test_skill_mean"] == pytest.approx(skill.mean())
    assert row["test_skill_std"] == pytest.approx(skill.std(ddof=1))
    expected = NOT_DISTINGUISHABLE if abs(skill.mean()) <= skill.std(ddof=1) else None
    if expected:
        assert row["verdict"] == expected
    # Fold 1 is the sweep's own split: its persistence RMSE is the run's test baseline.
    groups = json.loads((run / "groups.json").read_text())["groups"]
    fold1 = [r for r in summary["runs"] if r["fold"] == 1]
    assert all(r["test_persistence_rmse"] == pytest.approx(groups["BTC-USDT/1d"]["persistence_rmse"]["test"])
               for r in fold1)

    build_report(run)
    html = (run / "report" / "index.html").read_text()
    assert "Confirmation (re-trained; ranked by mean test RMSE)" in html and row["verdict"] in html
    s = json.loads((run / "report" / "summary.json").read_text())
    assert s["groups"][0]["confirmation"]["trial_id"] == row["trial_id"]

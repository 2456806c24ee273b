"""Confirmation: walk-forward folds, the plan, and a tiny real confirmation sweep."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cluster.confirm import fold_datasets, plan_confirmation, walk_forward
from reports.confirmation import NOT_DISTINGUISHABLE, aggregate, read_runs
from reports.statistics import diebold_mariano
from tests.reports.conftest import copy_run
from trainables.errors import RunError
from trainables.predictions import read_predictions, span_file


@pytest.fixture(scope="module")
def prepared() -> object:
    from trainables.data.candles import load_candles
    from trainables.features.dataset import prepare
    from trainables.features.indicators import make_member

    return prepare(load_candles("BTC-USDT", "1d"), [make_member("log_return")], horizon=2, max_lookback=8)


@pytest.mark.parametrize("embargo", [0, 3])
def test_walk_forward_scores_only_samples_after_the_selection_span(prepared, embargo: int) -> None:  # type: ignore[no-untyped-def]
    p = prepared
    folds = walk_forward(p, 3, embargo=embargo)
    # The chunks are consecutive and cover the sweep's test span exactly.
    assert np.array_equal(np.concatenate([f.test_idx for f in folds]), p.test_idx)
    assert [len(f.test_idx) for f in folds] == [len(c) for c in np.array_split(p.test_idx, 3)]
    for f in folds:
        # Every scored sample lies strictly after the span that ranked the configs ...
        assert f.test_idx[0] > p.val_idx[-1]
        # ... and after the fold's own training data, the horizon purge and the embargo.
        learned = np.union1d(f.train_idx, f.val_idx)
        assert learned[-1] + p.horizon + embargo <= f.test_idx[0]
        assert f.train_idx[-1] + p.horizon <= f.val_idx[0]  # purge before the early-stopping slice
        assert len(f.val_idx) == len(p.val_idx)  # training data long enough: the sweep's length
        # The fold learns from everything before its chunk (less purge and embargo).
        before = np.union1d(np.union1d(p.train_idx, p.val_idx), p.test_idx)
        before = before[before + p.horizon + embargo <= f.test_idx[0]]
        assert np.array_equal(learned, np.setdiff1d(before, before[(before > f.val_idx[0] - p.horizon)
                                                                   & (before < f.val_idx[0])]))
    for a, b in itertools.pairwise(folds):
        assert a.train_idx[-1] < b.train_idx[-1] and len(a.train_idx) < len(b.train_idx)  # expanding
        assert a.train_idx[0] == b.train_idx[0]
    if embargo == 0:  # fold 0 trains exactly as the sweep did
        assert np.array_equal(folds[0].train_idx, p.train_idx) and np.array_equal(folds[0].val_idx, p.val_idx)


def test_walk_forward_too_few_samples_is_one_line_naming_fold_and_counts(prepared) -> None:  # type: ignore[no-untyped-def]
    p = prepared
    n = len(p.test_idx) // 9 + 1  # chunks of at most 9 samples
    with pytest.raises(RunError, match=rf"^BTC-USDT/1d: --folds {n}: fold 0 would train on \d+ samples \(need at "
                       rf"least 30\), validate on \d+ \(need 10\) and score [0-9] \(need 10\); use fewer folds$"):
        walk_forward(p, n)
    short = dataclasses.replace(p, train_idx=p.train_idx[:20])  # too little before the test span
    with pytest.raises(RunError, match=r"fold 0 would train on ([0-9]|[12][0-9]) samples \(need at least 30\)"):
        walk_forward(short, 2, embargo=len(p.val_idx))
    with pytest.raises(RunError, match="--embargo must be >= 0"):
        walk_forward(p, 2, embargo=-1)


def test_fold_spans_and_read_runs_carry_iso_train_and_eval_bounds(prepared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, spans = fold_datasets({"BTC-USDT/1d": prepared}, 2, embargo=1)
    plan = [{"index": i, "group": "BTC-USDT/1d", "trial_id": "t", "search_rank": 1, "family": "mlp",
             "seed_index": 0, "seed": 7, "fold": i} for i in range(2)]
    (tmp_path / "plan.json").write_text(json.dumps({"folds_spans": spans, "plan": plan}))
    runs = read_runs(tmp_path)
    assert {"fold", "train_end", "eval_start", "eval_end"} <= set(runs.columns)
    assert list(runs["fold"]) == [0, 1] and set(runs["status"]) == {"missing"}
    for col in ("train_end", "eval_start", "eval_end"):
        assert runs[col].str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z").all()
    t = runs[["train_end", "eval_start", "eval_end"]].apply(lambda c: pd.to_datetime(c, utc=True))
    assert (t["train_end"] < t["eval_start"]).all() and (t["eval_start"] <= t["eval_end"]).all()
    assert t["eval_end"][0] < t["eval_start"][1] and t["train_end"][0] < t["train_end"][1]
    assert runs["eval_start"][0] == prepared.span(prepared.test_idx)[0]
    assert runs["eval_end"][1] == prepared.span(prepared.test_idx)[1]
    # Without folds: the sweep's own split, its test span scored.
    _, own = fold_datasets({"BTC-USDT/1d": prepared}, None)
    assert own["BTC-USDT/1d"][0]["eval_start"] == prepared.span(prepared.test_idx)[0]
    assert own["BTC-USDT/1d"][0]["train_end"] == prepared.span(prepared.val_idx)[1]


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
    assert main(["confirm", str(small_run), "--embargo", "-1", "--folds", "2"]) == 2
    assert capsys.readouterr().err.strip() == "--embargo must be >= 0; got -1"
    assert main(["confirm", str(small_run), "--embargo", "3"]) == 2
    assert capsys.readouterr().err.strip().startswith("--embargo needs --folds")


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


def test_confirmation_on_a_tiny_run_matches_a_recomputation(small_run: Path, tmp_path: Path, ray_local: None,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.confirm import run_confirmation
    from reports.build import build_report

    run = copy_run(small_run, tmp_path / "run")
    summary = run_confirmation(run, top_k=1, seeds=2, folds=2)
    lines = capsys.readouterr().out.splitlines()  # confirm shows its progress as the sweep does
    assert lines[0].startswith("tunefactory: confirming 4 runs (1 config(s) x 2 seed(s) x 2 fold(s) per group)")
    progress = [ln for ln in lines if ln.startswith("[")]
    assert [ln[:8] for ln in progress] == ["[   1/4]", "[   2/4]", "[   3/4]", "[   4/4]"]
    assert all(" ETA " in ln and "BTC-USDT/1d#fold" in ln for ln in progress), progress
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
    # The folds score the sweep's test span, in two consecutive chunks, never its validation
    # span (which ranked the configs); runs.csv says what each run learned from and scored.
    spans = json.loads((run / "groups.json").read_text())["groups"]["BTC-USDT/1d"]["spans"]
    runs = pd.read_csv(run / "confirm" / "runs.csv")
    assert len(runs) == 4 and sorted(runs["fold"]) == [0, 0, 1, 1]
    t = runs[["train_end", "eval_start", "eval_end"]].apply(lambda c: pd.to_datetime(c, utc=True, format="ISO8601"))
    assert (t["eval_start"] > pd.Timestamp(spans["val"][1])).all() and (t["train_end"] < t["eval_start"]).all()
    by_fold = runs.drop_duplicates("fold").set_index("fold")
    assert by_fold.loc[0, "eval_start"] == spans["test"][0] and by_fold.loc[1, "eval_end"] == spans["test"][1]
    assert pd.Timestamp(by_fold.loc[0, "eval_end"]) < pd.Timestamp(by_fold.loc[1, "eval_start"])
    assert by_fold.loc[0, "train_end"] == spans["val"][1]  # fold 0 learns from what the sweep learned from
    # The ranking's means and stds, recomputed from runs.csv.
    ranking = pd.read_csv(run / "confirm" / "ranking.csv").set_index("trial_id")
    for tid, g in runs[runs["status"] == "finished"].groupby("trial_id"):
        assert ranking.loc[tid, "test_rmse_mean"] == pytest.approx(g["test_rmse"].mean())
        assert ranking.loc[tid, "test_rmse_std"] == pytest.approx(g["test_rmse"].std(ddof=1))
        assert ranking.loc[tid, "test_skill_mean"] == pytest.approx(g["test_skill"].mean())
        assert ranking.loc[tid, "test_skill_std"] == pytest.approx(g["test_skill"].std(ddof=1))

    # DM per run, and the config's combined DM (loss differential averaged over the seeds per
    # sample, folds concatenated in order), recomputed from the predictions files.
    by_index = runs.set_index("index")
    per_fold: dict[int, list[np.ndarray]] = {}
    for d in exp.glob("trial_*"):
        e = plan[json.loads((d / "params.json").read_text())["index"]]
        pred = read_predictions(next(d.glob("checkpoint_*")))  # compact, against the fold's span file
        assert len(pred) == sum(1 for _ in (exp / "test_span" / span_file(f"{e['group']}#fold{e['fold']}")
                                            ).open()) - 1
        diff = ((pred["y_pred"] - pred["y_true"]) ** 2 - (pred["y_persistence"] - pred["y_true"]) ** 2).to_numpy()
        one = diebold_mariano(diff, np.zeros_like(diff), horizon=1)
        assert by_index.loc[e["index"], "dm_pvalue"] == pytest.approx(one.pvalue)
        per_fold.setdefault(e["fold"], []).append(diff)
    series = np.concatenate([np.mean(per_fold[f], axis=0) for f in sorted(per_fold)])
    dm = diebold_mariano(series, np.zeros_like(series), horizon=1)
    assert row["dm_stat"] == pytest.approx(dm.statistic) and row["dm_pvalue"] == pytest.approx(dm.pvalue)
    assert row["dm_n"] == len(series) and row["dm_runs"] == 4
    assert row["dm_verdict"] == ("beats persistence" if dm.pvalue < 0.05 else NOT_DISTINGUISHABLE)

    build_report(run)
    html = (run / "report" / "index.html").read_text()
    assert "Confirmation (re-trained; ranked by mean test RMSE)" in html and row["verdict"] in html
    assert f"re-trained, averaged over seeds: DM p = {dm.pvalue:.3g} over {len(series)} samples (4 runs)" in html
    s = json.loads((run / "report" / "summary.json").read_text())
    assert s["groups"][0]["confirmation"]["trial_id"] == row["trial_id"]

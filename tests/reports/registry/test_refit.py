"""Select → score → refit → forecast: the production model next to the scored one.

A real small training on the embedded BTC daily candles: the session's small run is
exported with a production refit on candles cut at ``CUT``, then refit on the full file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.registry.forecast import forecast
from reports.registry.winners import load_winner
from trainables.data.candles import EMBEDDED_DIR
from trainables.features.dataset import Scaler

DAY = pd.Timedelta(days=1)
CUT = pd.Timestamp("2025-06-30", tz="UTC")  # last candle kept for the export
LAST = pd.Timestamp("2026-01-05", tz="UTC")  # last embedded candle


def _candles(dst: Path, until: pd.Timestamp | None) -> Path:
    """A folder holding the embedded BTC 1d candles up to ``until`` (inclusive; None: all)."""
    dst.mkdir(parents=True, exist_ok=True)
    raw = pd.read_csv(EMBEDDED_DIR / "BTC-USDT_1d.csv", dtype=str)
    if until is not None:
        raw = raw[pd.to_datetime(raw["timestamp"], utc=True) <= until]
    raw.to_csv(dst / "BTC-USDT_1d.csv", index=False)
    return dst


def _iso(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%dT%H:%MZ")


@pytest.fixture(scope="module")
def prod(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A registry exported by the CLI with a production refit on candles up to ``CUT``."""
    import contextlib
    import io

    from cluster.cli import main

    d = tmp_path_factory.mktemp("prod")
    cut = _candles(d / "cut", CUT)
    reg = d / "winners"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["export", str(small_run), "--registry", str(reg), "--data", str(cut)]) == 0
    return {"reg": reg, "cut": cut, "out": out.getvalue(), "dir": d}


def test_export_keeps_the_scored_model_and_trains_production_through_the_last_known_target(prod: dict) -> None:
    reg = prod["reg"]
    assert "production model trained through 2025-06-29T00:00Z" in prod["out"]
    w = load_winner(reg, "BTC-USDT", "1d")
    assert {p.name for p in (w.path / "selection").iterdir()} >= {"model.keras", "scaler.json", "predictions.csv"}
    assert w.production_dir is not None
    assert {p.name for p in w.production_dir.iterdir()} >= {"model.keras", "scaler.json", "trial.json"}
    m = w.metrics
    # horizon 1: the last candle (CUT) has no known target; the one before is the last learned from.
    assert m["trained_through"] == _iso(CUT - DAY) == m["production"]["trained_through"]
    assert m["production"]["epochs"] == m["best_epoch"] >= 1
    groups = json.loads((Path(m["run"]) / "groups.json").read_text())["groups"]["BTC-USDT/1d"]
    assert m["selection"]["spans"] == groups["spans"]
    assert m["selection"]["trained_through"] == groups["spans"]["train"][1]
    assert m["selection"]["metrics"]["test_skill"] == m["test_skill"]
    # the refit starts where the run's data start and holds every labelled sample up to CUT,
    # so far more than the selection model's training span (which ended mid-2024)
    assert m["production"]["trained_from"] == groups["spans"]["train"][0]
    assert m["production"]["samples"] > groups["samples"]["train"] + groups["samples"]["val"]


def test_production_scaler_is_fitted_on_the_refit_span(prod: dict) -> None:
    from trainables.pipeline import DataRecipe, prepare_refit

    w = load_winner(prod["reg"], "BTC-USDT", "1d")
    assert w.production_dir is not None
    sel = json.loads((w.path / "selection" / "scaler.json").read_text())
    pro = json.loads((w.production_dir / "scaler.json").read_text())
    assert sel["columns"] == pro["columns"]
    assert not np.allclose(sel["mean"], pro["mean"]) and sel["y_mean"] != pro["y_mean"]
    recipe = DataRecipe.from_dict(json.loads((w.path / "recipe.json").read_text()))
    p = prepare_refit(recipe, path=prod["cut"])
    idx = p.train_idx
    assert pd.Timestamp(int(p.timestamps[idx[-1]]), tz="UTC") == CUT - DAY
    cols = p.column_index(pro["columns"])
    rows = p.features[: idx[-1] + 1, cols].astype(np.float64)
    np.testing.assert_allclose(pro["mean"], rows.mean(axis=0), rtol=1e-5, atol=1e-7)
    assert pro["y_mean"] == pytest.approx(float(p.y[idx].mean()), rel=1e-9)
    # the label of the last refit sample is the move into CUT: inside the refit span
    close = pd.read_csv(prod["cut"] / "BTC-USDT_1d.csv")["close"].to_numpy(dtype=float)
    assert p.y[idx[-1]] == pytest.approx(close[-1] / close[-2], rel=1e-9)


def test_forecast_selection_reproduces_predictions_and_production_is_the_default(prod: dict) -> None:
    reg = prod["reg"]
    pred = pd.read_csv(reg / "BTC-USDT_1d" / "selection" / "predictions.csv")
    r = pred.iloc[40]
    t = pd.Timestamp(r["timestamp"])
    sel = forecast("BTC-USDT", "1d", registry=reg, now=t + DAY, model="selection")
    assert sel.model == "selection" and sel.value == pytest.approx(r["y_pred"], rel=1e-6, abs=1e-7)
    text = "\n".join(sel.lines())
    assert "model       selection, trained through" in text

    fc = forecast("BTC-USDT", "1d", registry=reg, data=prod["cut"] / "BTC-USDT_1d.csv", now=CUT + DAY)
    assert fc.model == "production" and fc.trained_through == CUT - DAY and fc.last_open == CUT
    text = "\n".join(fc.lines())
    assert f"model       production, trained through {_iso(CUT - DAY)}" in text
    # fresh: no staleness warning (a "did not beat persistence" warning depends on the tiny
    # run's skill, which this test does not fix)
    assert "warning: the production model" not in text
    assert fc.value != pytest.approx(sel.value)  # a different model

    # Forecasting from the full file: the production model ended 190 candles before the data.
    old = forecast("BTC-USDT", "1d", registry=reg, now=LAST + DAY, max_age=30)
    (warn,) = [line for line in old.lines() if line.startswith("warning: the production model")]
    assert _iso(CUT - DAY) in warn and _iso(LAST) in warn and "refit" in warn
    assert not [x for x in forecast("BTC-USDT", "1d", registry=reg, now=LAST + DAY, max_age=400).lines()
                if x.startswith("warning: the production")]


def test_refit_on_newer_candles_moves_trained_through_and_keeps_the_previous_version(
        prod: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main
    from trainables.trial.keras_runtime import load_model

    reg = prod["dir"] / "refit-winners"
    shutil.copytree(prod["reg"], reg, symlinks=True)
    before = load_winner(reg, "BTC-USDT", "1d")
    full = _candles(prod["dir"] / "full", None)
    assert main(["refit", str(reg), "--asset", "BTC-USDT", "--timeframe", "1d", "--data", str(full)]) == 0
    out = capsys.readouterr().out
    assert f"retrained through {_iso(LAST - DAY)} (was {_iso(CUT - DAY)})" in out
    after = load_winner(reg, "BTC-USDT", "1d")
    assert after.path != before.path and after.metrics["trained_through"] == _iso(LAST - DAY)
    # the selection model and its scores are untouched
    assert (after.path / "selection" / "predictions.csv").read_bytes() == \
        (before.path / "selection" / "predictions.csv").read_bytes()
    assert after.metrics["selection"] == before.metrics["selection"]
    assert after.metrics["production"]["epochs"] == before.metrics["production"]["epochs"]
    # the previous version stays on disk and loadable
    assert before.path.is_dir() and before.production_dir is not None
    assert load_model(before.production_dir / "model.keras").count_params() == before.metrics["n_params"]
    last = json.loads((reg / "history.jsonl").read_text().splitlines()[-1])
    assert last["refit"] is True and last["previous_version"] == before.path.name
    assert last["after"]["trained_through"] == _iso(LAST - DAY)
    fc = forecast("BTC-USDT", "1d", registry=reg, now=LAST + DAY)
    assert fc.model == "production" and fc.trained_through == LAST - DAY
    assert not [x for x in fc.lines() if x.startswith("warning: the production")]


def test_no_refit_exports_the_selection_model_only_and_forecast_says_so(
        small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    reg = tmp_path / "winners"
    assert main(["export", str(small_run), "--registry", str(reg), "--no-refit"]) == 0
    assert "no production refit" in capsys.readouterr().out
    w = load_winner(reg, "BTC-USDT", "1d")
    assert w.production_dir is None and not (w.path / "production").exists()
    assert w.metrics["production"] is None
    assert w.metrics["trained_through"] == w.metrics["selection"]["trained_through"]
    pred = pd.read_csv(w.path / "selection" / "predictions.csv")
    r = pred.iloc[-1]
    t = pd.Timestamp(r["timestamp"])
    assert main(["forecast", "--asset", "BTC-USDT", "--timeframe", "1d", "--registry", str(reg),
                 "--at", _iso(t + DAY)]) == 0
    out = capsys.readouterr().out
    assert "no production model" in out and "model       selection, trained through" in out
    assert f"{_iso(t)}" in out and "warning: the selection model learned from candles through" in out
    scaler = Scaler.from_json(json.loads((w.path / "selection" / "scaler.json").read_text()))
    assert scaler.y_std > 0


def test_a_failing_refit_publishes_nothing_and_keeps_the_current_winner(prod: dict) -> None:
    from reports.registry.winners import export_run, refit_registry
    from tests.reports.conftest import copy_run, rewrite_results, winner_dir
    from trainables.errors import RunError

    reg = prod["dir"] / "failing"
    shutil.copytree(prod["reg"], reg, symlinks=True)
    before = load_winner(reg, "BTC-USDT", "1d")
    history = (reg / "history.jsonl").read_text()

    def boom(recipe, config, epochs, out):  # type: ignore[no-untyped-def]
        out.mkdir()
        (out / "model.keras").write_text("half written")
        raise RunError(f"{recipe.group}: the production refit diverged")

    with pytest.raises(RunError, match="diverged"):
        refit_registry(reg, boom)
    better = copy_run(Path(before.metrics["run"]), prod["dir"] / "better")
    rewrite_results(winner_dir(better), lambda r: {**r, "val_rmse_best": r["val_rmse_best"] * 0.5}
                    if "val_rmse_best" in r else r)
    with pytest.raises(RunError, match="diverged"):
        export_run(better, reg, refit=boom)
    after = load_winner(reg, "BTC-USDT", "1d")
    assert after.path == before.path and after.metrics == before.metrics
    assert (reg / "history.jsonl").read_text() == history
    assert [p.name for p in (reg / ".versions" / "BTC-USDT_1d").iterdir() if p.name.startswith(".")] == []

"""The spine end to end: a real 4-trial sweep → leaderboard with an honest baseline → export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainables.data.candles import EMBEDDED_DIR


def test_sweep_writes_ranked_leaderboard_with_independent_persistence(small_run: Path) -> None:
    board = pd.read_csv(small_run / "report" / "leaderboard.csv")
    assert len(board) == 4
    assert set(board["status"]) <= {"finished", "stopped"}
    assert board["rank"].tolist() == [1, 2, 3, 4]
    assert board["val_rmse_best"].is_monotonic_increasing
    html = (small_run / "report" / "index.html").read_text()
    assert "BTC-USDT/1d" in html and "persistence" in html

    # Persistence ("next close = last close", multiplier 1) recomputed from the raw CSV.
    groups = json.loads((small_run / "groups.json").read_text())["groups"]
    first, last = groups["BTC-USDT/1d"]["spans"]["test"]
    raw = pd.read_csv(EMBEDDED_DIR / "BTC-USDT_1d.csv", parse_dates=["timestamp"])
    raw["y"] = raw["close"].shift(-1) / raw["close"]
    span = raw[(raw["timestamp"] >= pd.Timestamp(first)) & (raw["timestamp"] <= pd.Timestamp(last))]
    assert len(span) == groups["BTC-USDT/1d"]["samples"]["test"]
    expected = float(np.sqrt(np.mean((span["y"] - 1.0) ** 2)))
    assert board["test_persistence_rmse"].iloc[0] == pytest.approx(expected, rel=1e-9)
    fin = board[board["status"] == "finished"]
    np.testing.assert_allclose(fin["test_skill"], 1 - fin["test_rmse"] / expected, rtol=1e-6)


def test_trials_have_distinct_configs_and_seeds(small_run: Path) -> None:
    params = [json.loads(p.read_text()) for p in small_run.glob("trial_*/params.json")]
    assert len({p["seed"] for p in params}) == 4
    for p in params:
        assert p["columns"][0] == "log_return_1"  # always-on member
        assert 1 <= len(p["columns"]) <= 3


def test_exported_winner_reloads_and_reproduces_predictions(small_run: Path, tmp_path: Path) -> None:
    import keras
    import yaml

    from reports.registry.winners import export_run
    from search_spaces.loader import load_spec
    from trainables.features.dataset import Scaler, windows

    lines = export_run(small_run, tmp_path / "winners")
    assert "BTC-USDT/1d: exported trial" in lines[0]
    top = tmp_path / "winners" / "BTC-USDT_1d"
    d = top / "selection"  # the scored model (export_run without a refit writes no production/)
    assert {p.name for p in top.iterdir()} >= {"config.yaml", "metrics.json", "selection"}
    assert {p.name for p in d.iterdir()} >= {"model.keras", "scaler.json", "predictions.csv"}
    cfg = yaml.safe_load((top / "config.yaml").read_text())
    model = keras.models.load_model(d / "model.keras")
    sc = json.loads((d / "scaler.json").read_text())
    scaler = Scaler.from_json(sc)

    from cluster.sweep import prepare_groups

    p = prepare_groups(load_spec(small_run / "spec.yaml").spec)["BTC-USDT/1d"]
    cols = p.column_index(sc["columns"])
    x = windows(p, cols, p.test_idx, int(cfg["trial"]["lookback"]), scaler)
    pred = model.predict(x, verbose=0)[:, 0] * scaler.y_std + scaler.y_mean
    saved = pd.read_csv(d / "predictions.csv")
    assert list(saved.columns[:4]) == ["timestamp", "close", "y_true", "y_pred"]
    np.testing.assert_allclose(pred, saved["y_pred"], rtol=1e-5)
    np.testing.assert_allclose(p.y[p.test_idx], saved["y_true"], rtol=1e-9)
    metrics = json.loads((top / "metrics.json").read_text())
    rmse = float(np.sqrt(np.mean((saved["y_true"] - saved["y_pred"]) ** 2)))
    assert metrics["test_rmse"] == pytest.approx(rmse, rel=1e-6)


def test_trials_reuse_worker_processes(small_run: Path) -> None:
    # 4 trials, 2 CPUs, 1 CPU per trial: at most 2 worker processes, so at least one worker
    # ran a second trial without a new process or TensorFlow import.
    rows = [json.loads(p.read_text().splitlines()[-1]) for p in small_run.glob("trial_*/result.json")]
    assert len(rows) == 4
    assert len({r["worker_pid"] for r in rows}) <= 2
    assert max(r["worker_trial"] for r in rows) >= 2
    assert all(0 < r["worker_rss_mb"] < 4096 for r in rows)

"""Baselines against independent computations; groups.json summary; reproducible trials."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trainables.data.candles import Candles, GapReport, load_candles, resample
from trainables.evaluation.baselines import (
    ar_forecast,
    baselines,
    drift_forecast,
    garch_forecast,
    persistence_forecast,
    select_ar_order,
)
from trainables.features.dataset import Split, prepare
from trainables.features.indicators import make_member

MEMBERS = [make_member("log_return")]


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)) / len(a))


def _synthetic(days: int, *, seed: int, garch: bool = False) -> tuple[Candles, pd.DataFrame]:
    """Hourly candles with AR(1) daily-scale drift (or GARCH-like bursts) and their daily resample."""
    rng = np.random.default_rng(seed)
    n = days * 24
    if garch:
        r = np.empty(n)
        s2 = 1e-4
        for i in range(n):
            s2 = 2e-6 + 0.08 * (r[i - 1] ** 2 if i else 1e-4) + 0.9 * s2
            r[i] = math.sqrt(s2) * rng.standard_normal()
    else:
        # Hourly noise plus an AR(1) daily drift, so the daily returns have AR structure.
        daily = np.zeros(days)
        for d in range(1, days):
            daily[d] = 0.4 * daily[d - 1] + rng.normal(0, 0.01)
        r = rng.normal(0, 0.004, n) + np.repeat(daily, 24) / 24
    close = 100 * np.exp(np.cumsum(r))
    ts = pd.date_range("2023-01-01", periods=n, freq="h", tz="UTC")
    hourly = pd.DataFrame({"timestamp": ts, "open": close, "high": close * 1.001, "low": close * 0.999,
                           "close": close, "volume": 1.0})
    return Candles("SYN-USDT", "1d", resample(hourly, "1h", "1d"), Path("mem"), "1h", GapReport(0, 0)), hourly


@pytest.fixture(scope="module")
def walk() -> Candles:
    return _synthetic(400, seed=3)[0]


def test_persistence_and_drift_rmse_match_numpy(walk: Candles) -> None:
    close = walk.frame["close"].to_numpy()
    for target, h in (("multiplier", 1), ("log_return", 3), ("price", 2)):
        p = prepare(walk, MEMBERS, target=target, horizon=h, max_lookback=4, split=Split(0.6, 0.2, 0.2))
        rows = p.test_idx + p.meta["warmup_rows"]  # rows of the original frame
        truth = {"multiplier": close[rows + h] / close[rows], "log_return": np.log(close[rows + h] / close[rows]),
                 "price": close[rows + h]}[target]
        persist = {"multiplier": np.ones(len(rows)), "log_return": np.zeros(len(rows)),
                   "price": close[rows]}[target]
        train_rows = p.train_idx + p.meta["warmup_rows"]
        mult = close[train_rows + h] / close[train_rows]
        drift = {"multiplier": np.full(len(rows), mult.mean()),
                 "log_return": np.full(len(rows), np.log(mult).mean()),
                 "price": close[rows] * mult.mean()}[target]
        b = baselines(p)
        assert b["persistence"]["test_rmse"] == pytest.approx(_rmse(truth, persist), rel=1e-10)
        assert b["drift"]["test_rmse"] == pytest.approx(_rmse(truth, drift), rel=1e-10)
        np.testing.assert_allclose(persistence_forecast(p)[p.test_idx], persist)
        np.testing.assert_allclose(drift_forecast(p)[p.test_idx], drift)
        assert b["persistence"]["test_skill"] == 0.0
        if target != "price":
            assert b["persistence"]["test_price_rmse"] == pytest.approx(_rmse(close[rows + h], close[rows]))


def test_ar_rmse_matches_an_independent_ols_with_lags_known_at_t(walk: Candles) -> None:
    import statsmodels.api as sm

    for target, h, order in (("multiplier", 1, 2), ("log_return", 3, 3), ("price", 2, 1)):
        p = prepare(walk, MEMBERS, target=target, horizon=h, max_lookback=4, split=Split(0.6, 0.2, 0.2))
        close = p.close
        # The AR series: the label (for price: the multiplier), whose value at t - h is known at t.
        z = [math.nan if t + h >= len(close) else math.log(close[t + h] / close[t]) if target == "log_return"
             else close[t + h] / close[t] for t in range(len(close))]

        def lags(t: int, z: list[float] = z, h: int = h, order: int = order) -> list[float]:
            return [z[t - h - j] for j in range(order)]

        rows = [int(t) for t in p.train_idx if t - h - order + 1 >= 0]
        fit = sm.OLS([z[t] for t in rows], sm.add_constant(np.array([lags(t) for t in rows]), has_constant="add")).fit()
        for idx in (p.val_idx, p.test_idx):
            zhat = np.array([fit.params[0] + float(np.dot(fit.params[1:], lags(int(t)))) for t in idx])
            pred = close[idx] * zhat if target == "price" else zhat
            got, k, coef = ar_forecast(p, order)
            assert k == order
            np.testing.assert_allclose(coef, fit.params, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(got[idx], pred, rtol=1e-10)
            assert _rmse(p.y[idx], got[idx]) == pytest.approx(_rmse(p.y[idx], pred), rel=1e-10)
        # No lag inside the label window: changing closes after t leaves the forecast at t unchanged.
        t = int(p.test_idx[0])
        p2 = prepare(Candles(walk.asset, walk.timeframe, walk.frame.assign(
            close=np.where(np.arange(len(walk.frame)) > t + p.meta["warmup_rows"], walk.frame["close"] * 1.5,
                           walk.frame["close"])), walk.source, walk.resampled_from, walk.gaps),
            MEMBERS, target=target, horizon=h, max_lookback=4, split=Split(0.6, 0.2, 0.2))
        assert ar_forecast(p2, order)[0][t] == pytest.approx(ar_forecast(p, order)[0][t], rel=1e-12)


def test_ar_order_is_chosen_by_bic_and_used(walk: Candles) -> None:
    p = prepare(walk, MEMBERS, target="log_return", horizon=1, max_lookback=4)
    k = select_ar_order(p)
    assert 1 <= k <= 5
    b = baselines(p)
    assert b["ar"]["order"] == k
    assert b["ar"]["test_rmse"] == pytest.approx(_rmse(p.y[p.test_idx], ar_forecast(p, k)[0][p.test_idx]))


@pytest.mark.parametrize(("target", "h"), [("volatility", 1), ("volatility_q", 3)])
def test_garch_matches_arch_forecast_with_fixed_training_parameters(target: str, h: int) -> None:
    from arch import arch_model

    candles, hourly = _synthetic(260, seed=5, garch=True)
    p = prepare(candles, MEMBERS, target=target, horizon=h, max_lookback=4, split=Split(0.6, 0.2, 0.2),
                intraday=hourly)
    got, params = garch_forecast(p)
    r = np.diff(np.log(p.close)) * 100
    last = int(p.train_idx[-1])
    res = arch_model(r[:last], mean="Constant", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off")
    assert params["alpha"] == pytest.approx(res.params["alpha[1]"])
    # arch's own recursion: the full series with the training parameters fixed (no refit).
    fixed = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, rescale=False).fix(res.params.to_numpy())
    var = fixed.forecast(horizon=h, start=0, reindex=False).variance.to_numpy()
    for idx in (p.val_idx, p.test_idx):
        # The forecast made at row t uses returns up to row t: arch's row for return index t - 1.
        expect = np.sqrt(var[idx - 1].sum(axis=1) / h * 365) / 100
        if target == "volatility_q":
            expect = expect ** 0.25
        np.testing.assert_allclose(got[idx], expect, rtol=1e-7)
    b = baselines(p)
    expect = np.sqrt(var[p.test_idx - 1].sum(axis=1) / h * 365) / 100
    expect = expect ** 0.25 if target == "volatility_q" else expect
    assert b["garch"]["test_rmse"] == pytest.approx(_rmse(p.y[p.test_idx], expect), rel=1e-7)
    assert {"persistence", "drift", "ar", "garch"} <= set(b)
    assert "test_spike_1.1_f1" in b["garch"]


def test_group_summary_carries_baselines_as_strict_json(walk: Candles) -> None:
    from cluster.sweep import group_summary

    p = prepare(walk, MEMBERS, target="multiplier", max_lookback=4)
    g = group_summary(p)
    assert g["persistence_rmse"]["test"] == pytest.approx(g["baselines"]["persistence"]["test_rmse"])
    assert set(g["baselines"]) == {"persistence", "drift", "ar"}
    json.dumps(g, allow_nan=False)


# ------------------------------------------------------------------ reproducibility

@pytest.fixture(scope="module")
def btc_daily() -> Candles:
    c = load_candles("BTC-USDT", "1d")
    f = c.frame[c.frame["timestamp"] >= pd.Timestamp("2022-01-01", tz="UTC")].reset_index(drop=True)
    return Candles(c.asset, c.timeframe, f, c.source, c.resampled_from, c.gaps)


def _config(family: str, model: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {"family": family, "model": model, "columns": columns, "lookback": 8, "batch_size": 64,
            "learning_rate": 3e-3, "loss": "mse", "optimizer": "adam", "weight_decay": 0.0, "max_epochs": 2,
            "patience": 0, "seed": 11, "jit_compile": False, "steps_per_execution": 4}


def test_same_config_and_seed_give_the_same_validation_rmse(btc_daily: Candles) -> None:
    from trainables.trial.fit import fit_trial  # lazy: imports TensorFlow (seconds); only these tests train

    pool = [make_member("log_return"), make_member("rsi"), make_member("hl_spread")]
    p = prepare(btc_daily, pool, max_lookback=8)
    for family, model in (("mlp", {"layers": 1, "units": 8}), ("gru", {"layers": 1, "units": 4})):
        cfg = _config(family, model, p.columns)
        a = fit_trial(cfg, p, sink=lambda row: None)
        b = fit_trial(cfg, p, sink=lambda row: None)
        assert a["val_rmse_best"] == pytest.approx(b["val_rmse_best"], rel=1e-6), family
        assert a["test_rmse"] == pytest.approx(b["test_rmse"], rel=1e-6), family
        assert "test_price_rmse" in a and "test_mape" in a


def test_fit_trial_on_volatility_reports_spike_metrics(btc_daily: Candles) -> None:
    from trainables.trial.fit import fit_trial  # lazy: imports TensorFlow (seconds); only these tests train

    hourly = load_candles("BTC-USDT", "1h").frame
    p = prepare(btc_daily, [make_member("log_return"), make_member("realized_vol")], target="volatility",
                max_lookback=8, intraday=hourly)
    out = fit_trial(_config("mlp", {"layers": 1, "units": 8}, p.columns), p, sink=lambda row: None)
    for t in ("1.0", "1.1", "1.2", "1.3"):
        assert sum(out[f"test_spike_{t}_{k}"] for k in ("tp", "fn", "tn", "fp")) == len(p.test_idx)
    assert "val_spike_1.0_f1" not in out and "test_price_rmse" not in out
    assert out["test_persistence_rmse"] == pytest.approx(_rmse(p.y[p.test_idx], p.persistence[p.test_idx]))

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


# ------------------------------------------------------------------ HAR-RV

def _rv_by_hand(hourly: pd.DataFrame, timeframe: str) -> tuple[pd.Series, pd.Series]:
    """Daily realised volatility (annualised, from 1h log returns) known at each candle's close, and the label.

    Written without the library: pandas on the hourly closes. For 1d candles, day D's value is
    ``sqrt(365 * sum of its 24 squared hourly returns)`` (the first from the previous day's last
    close); for 1h candles, the value at hour t covers hours t-23..t. Both are indexed by candle
    open time; the label of candle t is the value one candle later (horizon 1 on 1d, 24 on 1h).
    """
    r2 = np.log(hourly.set_index("timestamp")["close"]).diff() ** 2
    if timeframe == "1d":
        g = r2.groupby(r2.index.floor("D"))
        day = np.sqrt(365.0 * g.sum(min_count=1)).where(g.count() == 24)
        return day, day.shift(-1)
    day = np.sqrt(8760.0 / 24 * r2.rolling(24, min_periods=24).sum())
    return day, day.shift(-24)


@pytest.mark.parametrize(("target", "timeframe"), [("volatility", "1d"), ("volatility_q", "1d"),
                                                   ("volatility", "1h")])
def test_har_rv_coefficients_equal_an_ols_fit_by_hand(target: str, timeframe: str) -> None:
    from trainables.evaluation.baselines import har_forecast

    days = 150 if timeframe == "1d" else 75
    candles, hourly = _synthetic(days, seed=7, garch=True)
    h = 1
    if timeframe == "1h":
        candles, h = Candles("SYN-USDT", "1h", hourly, Path("mem"), None, GapReport(0, 0)), 24
    p = prepare(candles, MEMBERS, target=target, horizon=h, max_lookback=4, split=Split(0.6, 0.2, 0.2),
                intraday=hourly)
    day, label = _rv_by_hand(hourly, timeframe)
    if target == "volatility_q":
        day, label = day ** 0.25, label ** 0.25
    step = pd.Timedelta(days=1)
    # Corsi's regressors in the target's own measure: the day, the mean of the last 5 days, of 22.
    xd = day
    xw = sum(day.shift(freq=step * i) for i in range(5)).reindex(day.index) / 5  # type: ignore[union-attr]
    xm = sum(day.shift(freq=step * i) for i in range(22)).reindex(day.index) / 22  # type: ignore[union-attr]
    ts = pd.DatetimeIndex(p.timestamps.astype("datetime64[ns]")).tz_localize("UTC")
    x = np.column_stack([np.ones(len(ts)), xd.reindex(ts), xw.reindex(ts), xm.reindex(ts)])
    y = label.reindex(ts).to_numpy()
    np.testing.assert_allclose(y[p.test_idx], p.y[p.test_idx], rtol=1e-10)  # the same target as the library's
    tr = p.train_idx[np.isfinite(x[p.train_idx]).all(axis=1)]
    assert len(tr) > 20 and len(tr) < len(p.train_idx)  # the first month lacks lags: left out of the fit
    coef, *_ = np.linalg.lstsq(x[tr], y[tr], rcond=None)
    got, info = har_forecast(p)
    np.testing.assert_allclose([info["b0"], info["b_day"], info["b_week"], info["b_month"]], coef, rtol=1e-8)
    assert info["n_fit"] == len(tr)
    np.testing.assert_allclose(got[p.test_idx], x[p.test_idx] @ coef, rtol=1e-10)
    b = baselines(p)["har"]
    assert b["test_rmse"] == pytest.approx(_rmse(y[p.test_idx], x[p.test_idx] @ coef), rel=1e-9)
    assert b["b_week"] == pytest.approx(coef[2]) and "test_spike_1.0_f1" in b


def test_har_rv_fits_on_training_rows_only_and_fills_unknown_lags_with_the_training_mean() -> None:
    from trainables.evaluation.baselines import har_forecast

    candles, hourly = _synthetic(150, seed=7, garch=True)
    p = prepare(candles, MEMBERS, target="volatility", max_lookback=4, split=Split(0.6, 0.2, 0.2), intraday=hourly)
    got, info = har_forecast(p)
    # A test-span value changes (here: every test label, and the hourly moves after the test span starts):
    # the coefficients do not; the forecasts of test rows still follow their own (changed) regressors.
    p.y[p.test_idx] *= 5.0
    assert har_forecast(p)[1] == info
    start = pd.Timestamp(int(p.timestamps[p.test_idx[0]]), tz="UTC")
    later = hourly["timestamp"] > start
    r = np.log(hourly["close"]).diff().fillna(0.0)
    wild = hourly.assign(close=100 * np.exp(np.cumsum(np.where(later, 3 * r, r))))
    wild_daily = Candles("SYN-USDT", "1d", resample(wild, "1h", "1d"), Path("mem"), "1h", GapReport(0, 0))
    p2 = prepare(wild_daily, MEMBERS, target="volatility", max_lookback=4, split=Split(0.6, 0.2, 0.2), intraday=wild)
    np.testing.assert_array_equal(p2.train_idx, p.train_idx)
    got2, info2 = har_forecast(p2)
    assert info2 == pytest.approx(info, rel=1e-12)
    assert not np.allclose(got2[p.test_idx], got[p.test_idx])
    # Rows whose lags are unknown (the first 21 days of rows) get the training-mean label.
    first = int(np.flatnonzero(np.isfinite(har_forecast(p)[0]))[0])
    assert got[first] == pytest.approx(float(np.mean(p.y[p.train_idx])))


def test_har_rv_is_skipped_with_a_warning_when_no_training_row_has_a_month_of_lags(walk: Candles) -> None:
    from trainables.evaluation.baselines import har_forecast

    candles, hourly = _synthetic(60, seed=2)
    p = prepare(candles, MEMBERS, target="volatility", max_lookback=4, split=Split(0.3, 0.35, 0.35), intraday=hourly)
    assert p.timestamps[p.train_idx[-1]] - p.timestamps[0] < 22 * 86_400_000_000_000  # shorter than a month
    with pytest.warns(UserWarning, match="HAR-RV baseline skipped: 0 training samples with every HAR lag known"):
        b = baselines(p)
    assert "har" not in b and "garch" in b
    with pytest.raises(ValueError, match="HAR-RV forecasts a volatility target, not 'multiplier'"):
        har_forecast(prepare(walk, MEMBERS, target="multiplier", max_lookback=4))

"""Targets against hand-computed values on tiny series; metrics and spike classification by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainables.data.candles import Candles, GapReport, load_candles, resample
from trainables.errors import TunefactoryError
from trainables.evaluation.scores import (
    directional_accuracy,
    mape,
    scores,
    span_scores,
    spike_labels,
    spike_metrics,
)
from trainables.features.dataset import Split, prepare
from trainables.features.indicators import make_member
from trainables.features.targets import HOURS_PER_YEAR, TARGETS, TargetContext

CLOSE = np.array([10.0, 11.0, 10.5, 12.0, 12.5])
HOUR = pd.Timedelta(hours=1).value


def _ctx(close: np.ndarray, h: int) -> TargetContext:
    return TargetContext(np.asarray(close, dtype=np.float64), h)


def test_every_target_is_tested_here() -> None:
    assert set(TARGETS) == {"multiplier", "log_return", "price", "volatility", "volatility_q"}


def test_price_like_targets_align_h_candles_ahead() -> None:
    c = CLOSE
    m = TARGETS["multiplier"].label(_ctx(c, 2))
    np.testing.assert_allclose(m[:3], [10.5 / 10, 12 / 11, 12.5 / 10.5])
    assert np.isnan(m[3:]).all()
    lr = TARGETS["log_return"].label(_ctx(c, 1))
    np.testing.assert_allclose(lr[:4], [math.log(11 / 10), math.log(10.5 / 11), math.log(12 / 10.5),
                                        math.log(12.5 / 12)])
    assert np.isnan(lr[4])
    pr = TARGETS["price"].label(_ctx(c, 2))
    np.testing.assert_array_equal(pr[:3], [10.5, 12.0, 12.5])
    assert np.isnan(pr[3:]).all()
    # Persistence: known at t.
    np.testing.assert_array_equal(TARGETS["multiplier"].persistence(_ctx(c, 2)), np.ones(5))
    np.testing.assert_array_equal(TARGETS["log_return"].persistence(_ctx(c, 2)), np.zeros(5))
    np.testing.assert_array_equal(TARGETS["price"].persistence(_ctx(c, 2)), c)
    # Converted to price: close[t] * multiplier == close[t+h] for the true values.
    for name in ("multiplier", "log_return", "price"):
        tg = TARGETS[name]
        y = tg.label(_ctx(c, 2))
        np.testing.assert_allclose(tg.to_price(y[:3], c[:3]), c[2:], err_msg=name)


# ------------------------------------------------------------------ realised volatility

def _hourly(closes: list[float], start: str = "2024-01-01T23:00Z") -> pd.DataFrame:
    ts = pd.date_range(start, periods=len(closes), freq="h", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "close": np.asarray(closes, dtype=np.float64)})


# Hourly closes at 23:00 (of the day before) and 00:00 .. 07:00: 2h candles open at
# 00, 02, 04, 06 and close with the 01, 03, 05, 07 hourly closes.
HC = [100.0, 101.0, 99.0, 100.0, 104.0, 103.0, 103.5, 102.0, 101.0]


def _vol_ctx(h: int, hourly: pd.DataFrame | None = None, hc: list[float] | None = None) -> TargetContext:
    hc = hc or HC
    ts = pd.date_range("2024-01-02T00:00Z", periods=4, freq="2h", tz="UTC").as_unit("ns").asi8
    close = np.array([hc[2], hc[4], hc[6], hc[8]])
    return TargetContext(close, h, ts, "2h", _hourly(hc) if hourly is None else hourly)


def _rv(closes: list[float]) -> float:
    """Hand formula: sqrt(8760 / n * sum r_i^2) over consecutive closes (n returns)."""
    r = np.diff(np.log(closes))
    return math.sqrt(HOURS_PER_YEAR / len(r) * float(np.sum(r ** 2)))


def test_volatility_label_is_next_candles_realised_vol_by_hand() -> None:
    vol = TARGETS["volatility"]
    y1 = vol.label(_vol_ctx(1))
    # t = 0 (candle 00-02, closes at HC[2]): next candle covers hours 02, 03 -> closes HC[2..4].
    assert y1[0] == pytest.approx(_rv(HC[2:5]))
    assert y1[1] == pytest.approx(_rv(HC[4:7]))
    assert y1[2] == pytest.approx(_rv(HC[6:9]))
    assert np.isnan(y1[3])
    y2 = vol.label(_vol_ctx(2))
    assert y2[0] == pytest.approx(_rv(HC[2:7]))  # candles 1 and 2: four hourly returns
    assert y2[1] == pytest.approx(_rv(HC[4:9]))
    assert np.isnan(y2[2:]).all()
    # Persistence = the same over the last h candles, ending with candle t.
    p1 = vol.persistence(_vol_ctx(1))
    np.testing.assert_allclose(p1, [_rv(HC[0:3]), _rv(HC[2:5]), _rv(HC[4:7]), _rv(HC[6:9])])
    p2 = vol.persistence(_vol_ctx(2))
    assert np.isnan(p2[0])
    np.testing.assert_allclose(p2[1:], [_rv(HC[0:5]), _rv(HC[2:7]), _rv(HC[4:9])])
    # The persistence at t is the label at t - h.
    np.testing.assert_allclose(p2[3], y2[1])
    # The ^(1/4) kind.
    q = TARGETS["volatility_q"]
    np.testing.assert_allclose(q.label(_vol_ctx(2))[:2], y2[:2] ** 0.25)
    np.testing.assert_allclose(q.persistence(_vol_ctx(1)), p1 ** 0.25)


def test_volatility_label_reads_only_candles_t_plus_1_to_t_plus_h() -> None:
    vol = TARGETS["volatility"]
    base_y, base_p = vol.label(_vol_ctx(1)), vol.persistence(_vol_ctx(1))
    # Change the hours after candle t+1 = 1 (hours 04..07): y[0] and persistence[0..1] stay.
    later = HC[:5] + [x * 1.3 for x in HC[5:]]
    y, p = vol.label(_vol_ctx(1, hc=later)), vol.persistence(_vol_ctx(1, hc=later))
    assert y[0] == base_y[0] and (p[:2] == base_p[:2]).all()
    assert y[1] != base_y[1]
    # Change an hour inside candle t+1 (hour 02): y[0] moves, persistence[0] does not.
    inside = [*HC[:3], HC[3] * 1.1, *HC[4:]]
    assert vol.label(_vol_ctx(1, hc=inside))[0] != base_y[0]
    assert vol.persistence(_vol_ctx(1, hc=inside))[0] == base_p[0]


def test_volatility_is_nan_where_an_hour_is_missing() -> None:
    hourly = _hourly(HC).drop(index=4).reset_index(drop=True)  # the 03:00 candle is missing
    y = TARGETS["volatility"].label(_vol_ctx(1, hourly=hourly))
    # Candle 1 lacks hour 03; candle 2's first return (from 03:00) is missing too.
    assert np.isnan(y[0]) and np.isnan(y[1])
    assert y[2] == pytest.approx(_rv(HC[6:9]))


def test_volatility_on_1h_uses_the_candles_own_returns_and_refuses_horizon_1() -> None:
    c = np.array([100.0, 101.0, 99.0, 100.0, 104.0, 103.0])
    ts = pd.date_range("2024-01-01", periods=len(c), freq="h", tz="UTC").as_unit("ns").asi8
    y = TARGETS["volatility"].label(TargetContext(c, 3, ts, "1h"))
    assert y[0] == pytest.approx(_rv(list(c[0:4])))
    assert y[2] == pytest.approx(_rv(list(c[2:6])))
    assert np.isnan(y[3:]).all()
    with pytest.raises(TunefactoryError, match="needs horizon >= 2"):
        TARGETS["volatility"].label(TargetContext(c, 1, ts, "1h"))
    with pytest.raises(TunefactoryError, match="needs the asset's 1h candles"):
        ts4 = pd.date_range("2024-01-01", periods=2, freq="4h", tz="UTC").as_unit("ns").asi8
        TARGETS["volatility"].label(TargetContext(c[:2], 1, ts4, "4h"))


def test_daily_volatility_matches_a_direct_pandas_computation_on_real_candles() -> None:
    day = load_candles("BTC-USDT", "1d").frame.iloc[-200:].reset_index(drop=True)
    hourly = load_candles("BTC-USDT", "1h").frame
    ts = day["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    y = TARGETS["volatility"].label(TargetContext(day["close"].to_numpy(), 1, ts, "1d", hourly))
    t = 100
    d = day["timestamp"].iloc[t + 1]
    s = hourly.set_index("timestamp")["close"]
    closes = s[(s.index >= d - pd.Timedelta(hours=1)) & (s.index < d + pd.Timedelta(days=1))]
    assert len(closes) == 25
    r = np.diff(np.log(closes.to_numpy()))
    assert y[t] == pytest.approx(math.sqrt(365 * float(np.sum(r ** 2))), rel=1e-12)


def _synthetic_candles(days: int, seed: int = 0) -> tuple[Candles, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = days * 24
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    ts = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    hourly = pd.DataFrame({"timestamp": ts, "open": close, "high": close * 1.001, "low": close * 0.999,
                           "close": close, "volume": 1.0})
    daily = resample(hourly, "1h", "1d")
    return Candles("SYN-USDT", "1d", daily, Path("mem"), "1h", GapReport(0, 0)), hourly


def test_prepare_volatility_keeps_labels_persistence_and_realised_return_aligned() -> None:
    candles, hourly = _synthetic_candles(80)
    p = prepare(candles, [make_member("log_return")], target="volatility", horizon=2, max_lookback=4,
                split=Split(0.6, 0.2, 0.2), intraday=hourly)
    warm = p.meta["warmup_rows"]
    close = candles.frame["close"].to_numpy()
    h_close = hourly["close"].to_numpy()
    for t in np.concatenate([p.train_idx[:3], p.test_idx[-3:]]):
        row = t + warm
        # candle `row` closes at hour 24*row + 23; the label covers hours 24(row+1) .. 24(row+3)-1.
        end = 24 * row + 23
        assert p.y[t] == pytest.approx(_rv(list(h_close[end:end + 49])))
        assert p.persistence[t] == pytest.approx(_rv(list(h_close[end - 48:end + 1])))
        assert p.ret[t] == pytest.approx(close[row + 2] / close[row] - 1)
    # Without the 1h candles the target cannot be computed.
    with pytest.raises(TunefactoryError, match="1h candles"):
        prepare(candles, [make_member("log_return")], target="volatility", max_lookback=4)


# ------------------------------------------------------------------ metrics

def test_scores_with_price_conversion_and_mape_by_hand() -> None:
    y = np.array([1.1, 0.9, 1.0, 1.2])
    pred = np.array([1.0, 1.0, 1.1, 1.1])
    close_t = np.array([100.0, 200.0, 50.0, 10.0])
    close_ahead = close_t * y
    s = scores("multiplier", y, pred, np.ones(4), "test", close_t=close_t, close_ahead=close_ahead)
    assert s["test_rmse"] == pytest.approx(math.sqrt((0.01 + 0.01 + 0.01 + 0.01) / 4))
    assert s["test_mape"] == pytest.approx(100 / 4 * (0.1 / 1.1 + 0.1 / 0.9 + 0.1 / 1.0 + 0.1 / 1.2))
    err = close_t * pred - close_ahead  # [-10, 20, 5, -1]
    assert s["test_price_rmse"] == pytest.approx(math.sqrt(np.mean(err ** 2)))
    assert s["test_price_mae"] == pytest.approx(np.mean(np.abs(err)))
    assert s["test_price_mape"] == pytest.approx(100 * np.mean(np.abs(err) / close_ahead))
    assert s["test_price_persistence_rmse"] == pytest.approx(math.sqrt(np.mean((close_ahead - close_t) ** 2)))
    # realised moves: +, -, flat (left out), +; predicted: flat, flat, +, +  -> 1 of 3
    assert s["test_diracc"] == pytest.approx(1 / 3)
    lr = scores("log_return", np.log(y), np.log(pred), np.zeros(4), "v", close_t=close_t, close_ahead=close_ahead)
    assert "v_mape" not in lr  # returns cross zero: no relative error in target units
    assert lr["v_price_rmse"] == pytest.approx(s["test_price_rmse"])
    # The price target: its MAPE is the prior art's "% error"; direction is measured from close[t].
    pr = scores("price", close_ahead, close_t * pred, close_t, "test", close_t=close_t, close_ahead=close_ahead)
    assert pr["test_mape"] == pytest.approx(s["test_price_mape"])
    assert pr["test_rmse"] == pytest.approx(pr["test_price_rmse"])
    assert pr["test_diracc"] == pytest.approx(1 / 3)
    assert mape(np.array([0.0, 2.0]), np.array([1.0, 1.0])) == pytest.approx(50.0)


def test_directional_accuracy_of_volatility_is_measured_from_last_period() -> None:
    y = np.array([0.5, 0.3, 0.8])
    last = np.array([0.4, 0.4, 0.8])
    pred = np.array([0.45, 0.5, 0.9])  # up (right), up (wrong), realised flat: left out
    assert directional_accuracy("volatility", y, pred, last) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="reference"):
        directional_accuracy("volatility", y, pred)


def test_spike_metrics_confusion_counts_by_hand() -> None:
    y_true = np.array([1.25, 1.05, 0.90, 1.40, 1.15, 0.80, 1.30, 1.00])
    y_pred = np.array([1.10, 1.20, 1.00, 0.95, 1.15, 1.05, 1.35, 0.70])
    prev = np.array([1.00, 1.10, 0.80, 1.20, 1.30, 0.70, 1.30, 0.90])  # last known volatility (persistence)
    m = spike_metrics(y_true, y_pred, prev, (1.0, 1.1, 1.2, 1.3))
    # Volatility rose (y >= prev) for samples 0, 2, 3, 5, 6 (equal counts), 7; not for 1 and 4.
    # T=1.0: actual {0,3,6,7}; predicted {0,1,2,4,5,6} -> TP 2 (0,6), FN 2 (3,7), FP 4 (1,2,4,5), TN 0
    assert [m[f"test_spike_1.0_{k}"] for k in ("tp", "fn", "fp", "tn")] == [2, 2, 4, 0]
    assert m["test_spike_1.0_precision"] == pytest.approx(2 / 6)
    assert m["test_spike_1.0_recall"] == pytest.approx(2 / 4)
    assert m["test_spike_1.0_f1"] == pytest.approx(2 * 2 / (2 * 2 + 4 + 2))
    # T=1.1: actual {0,3,6}; predicted {0,1,4,6} -> TP 2, FN 1, FP 2, TN 3
    assert [m[f"test_spike_1.1_{k}"] for k in ("tp", "fn", "fp", "tn")] == [2, 1, 2, 3]
    # T=1.2: actual {0,3,6}; predicted {1,6} -> TP 1, FN 2, FP 1, TN 4
    assert [m[f"test_spike_1.2_{k}"] for k in ("tp", "fn", "fp", "tn")] == [1, 2, 1, 4]
    # T=1.3: actual {3,6}; predicted {6} -> TP 1, FN 1, FP 0, TN 6
    assert [m[f"test_spike_1.3_{k}"] for k in ("tp", "fn", "fp", "tn")] == [1, 1, 0, 6]
    assert m["test_spike_1.3_precision"] == 1.0 and m["test_spike_1.3_recall"] == 0.5
    # No spikes at all: precision, recall and F1 are undefined (NaN), counts still add up.
    none = spike_metrics(np.zeros(3), np.zeros(3), np.ones(3), (1.0,), prefix="val")
    assert none["val_spike_1.0_tn"] == 3 and math.isnan(none["val_spike_1.0_f1"])
    assert math.isnan(none["val_spike_1.0_precision"]) and math.isnan(none["val_spike_1.0_recall"])


def test_predicted_spike_never_depends_on_what_is_realised() -> None:
    rng = np.random.default_rng(0)
    y_pred = rng.uniform(0.7, 1.5, 200)
    y_true, prev = rng.uniform(0.7, 1.5, 200), rng.uniform(0.7, 1.5, 200)
    for t in (1.0, 1.1, 1.2, 1.3):
        base = spike_labels(y_true, y_pred, prev, t)[1]
        assert base.any() and not base.all()
        for _ in range(5):  # any other outcome (realised volatility, last value): same predicted labels
            other = spike_labels(rng.uniform(0.0, 3.0, 200), y_pred, rng.uniform(0.0, 3.0, 200), t)[1]
            np.testing.assert_array_equal(other, base)
    # Through a prepared group: a different realised return (or realised volatility) on the test
    # span leaves the number of predicted spikes (TP + FP) unchanged.
    candles, hourly = _synthetic_candles(80, seed=1)
    p = prepare(candles, [make_member("log_return")], target="volatility", max_lookback=4, intraday=hourly)
    idx = p.test_idx
    pred = np.full(len(idx), 1.05)
    pred[::3] = 0.5
    a = span_scores(p, idx, pred, "test", spikes=True)
    assert p.ret is not None
    p.ret[idx] = -p.ret[idx]
    p.y[idx] = p.y[idx] * 3.0
    b = span_scores(p, idx, pred, "test", spikes=True)
    for t in ("1.0", "1.1", "1.2", "1.3"):
        assert a[f"test_spike_{t}_tp"] + a[f"test_spike_{t}_fp"] == int((pred >= float(t)).sum())
        assert b[f"test_spike_{t}_tp"] + b[f"test_spike_{t}_fp"] == int((pred >= float(t)).sum())


def test_span_scores_add_spike_metrics_for_volatility_targets_only() -> None:
    candles, hourly = _synthetic_candles(80, seed=1)
    members = [make_member("log_return")]
    pv = prepare(candles, members, target="volatility", max_lookback=4, intraday=hourly)
    idx = pv.test_idx
    s = span_scores(pv, idx, pv.persistence[idx], "test", spikes=True)
    assert s["test_skill"] == 0.0 and "test_spike_1.2_f1" in s and "test_price_rmse" not in s
    assert sum(s[f"test_spike_1.0_{k}"] for k in ("tp", "fn", "fp", "tn")) == len(idx)
    pm = prepare(candles, members, target="multiplier", max_lookback=4)
    s = span_scores(pm, pm.test_idx, np.ones(len(pm.test_idx)), "test", spikes=True)
    assert "test_spike_1.0_f1" not in s
    assert s["test_price_rmse"] == pytest.approx(s["test_price_persistence_rmse"])

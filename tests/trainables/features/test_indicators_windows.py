"""Indicators against hand-computed values; no look-ahead; windows aligned with labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trainables.data.candles import Candles, GapReport, load_candles
from trainables.errors import TunefactoryError
from trainables.features.dataset import Split, fit_scaler, labels, prepare, windows
from trainables.features.indicators import INDICATORS, compute_features, make_member

CLOSE = [10.0, 11.0, 10.5, 12.0, 12.5, 12.0, 13.0]


def frame(close: list[float] | None = None) -> pd.DataFrame:
    c = np.asarray(close or CLOSE)
    n = len(c)
    return pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC"),
        "open": c * 0.99, "high": c * 1.02, "low": c * 0.97, "close": c,
        "volume": np.arange(1, n + 1, dtype=float) * 10,
    })


def ind(name: str, f: pd.DataFrame, **params: float) -> np.ndarray:
    return INDICATORS[name].fn(f, **params)


def test_registry_has_at_least_12_indicators() -> None:
    assert len(INDICATORS) >= 12
    for name in ("log_return", "ema_ratio", "sma_ratio", "rsi", "macd", "bollinger_b", "atr_ratio",
                 "hl_spread", "co_spread", "realized_vol", "volume_change", "obv_change"):
        assert name in INDICATORS


def test_hand_computed_values() -> None:
    f = frame()
    lr = ind("log_return", f, lag=2)
    assert math.isnan(lr[1]) and lr[2] == pytest.approx(math.log(10.5 / 10.0))
    assert ind("sma_ratio", f, period=3)[2] == pytest.approx(10.5 / ((10 + 11 + 10.5) / 3) - 1)
    # EMA span 3 → alpha 0.5, started at the first close.
    ema = [10.0]
    for c in CLOSE[1:]:
        ema.append(0.5 * c + 0.5 * ema[-1])
    assert ind("ema_ratio", f, period=3)[3] == pytest.approx(12.0 / ema[3] - 1)
    assert ind("hl_spread", f)[0] == pytest.approx(0.05)
    assert ind("co_spread", f)[0] == pytest.approx(1 / 0.99 - 1)
    # RSI(2), Wilder smoothing alpha 1/2: diffs +1, -0.5, +1.5
    up, dn = 1.0, 0.0  # first diff
    up, dn = 0.5 * 0 + 0.5 * up, 0.5 * 0.5 + 0.5 * dn
    up, dn = 0.5 * 1.5 + 0.5 * up, 0.5 * 0 + 0.5 * dn
    assert ind("rsi", f, period=2)[3] == pytest.approx(up / (up + dn))
    rv = ind("realized_vol", f, period=3)
    r = np.diff(np.log(CLOSE))
    assert rv[3] == pytest.approx(np.std(r[0:3], ddof=1))
    vc = ind("volume_change", f, lag=1)
    assert vc[1] == pytest.approx(math.log1p(20) - math.log1p(10))
    # OBV change over 3: signs of diffs at rows 1..3 = +, -, + with volumes 20, 30, 40
    assert ind("obv_change", f, period=3)[3] == pytest.approx((20 - 30 + 40) / (20 + 30 + 40))
    b = ind("bollinger_b", f, period=3, k=2.0)
    m, sd = np.mean(CLOSE[0:3]), np.std(CLOSE[0:3])
    assert b[2] == pytest.approx((10.5 - (m - 2 * sd)) / (4 * sd))
    tr = [0.05 * 10.0]  # first true range = high - low
    for i in range(1, 4):
        hi, lo, prev = CLOSE[i] * 1.02, CLOSE[i] * 0.97, CLOSE[i - 1]
        tr.append(max(hi - lo, abs(hi - prev), abs(lo - prev)))
    atr = tr[0]
    for x in tr[1:]:
        atr = atr + (x - atr) / 2
    assert ind("atr_ratio", f, period=2)[3] == pytest.approx(atr / CLOSE[3])


def test_no_look_ahead_in_features() -> None:
    base = load_candles("BTC-USDT", "1d").frame.iloc[:400].reset_index(drop=True)
    members = [make_member(n) for n in INDICATORS]
    a, names, _ = compute_features(base, members)
    cut = 300
    changed = base.copy()
    rng = np.random.default_rng(0)
    for col in ("open", "high", "low", "close", "volume"):
        changed.loc[cut:, col] = changed.loc[cut:, col] * rng.uniform(0.5, 1.5, len(changed) - cut)
    changed["high"] = changed[["open", "high", "low", "close"]].max(axis=1)
    changed["low"] = changed[["open", "high", "low", "close"]].min(axis=1)
    b, _, _ = compute_features(changed, members)
    np.testing.assert_array_equal(a[:cut], b[:cut], err_msg=f"look-ahead in {names}")
    assert not np.allclose(a[cut:], b[cut:], equal_nan=True)


def _candles(f: pd.DataFrame, tf: str = "1d") -> Candles:
    return Candles("BTC-USDT", tf, f, __import__("pathlib").Path("mem"), None, GapReport(0, 0))


def test_scaler_fit_on_training_rows_only() -> None:
    f = load_candles("BTC-USDT", "1d").frame.iloc[:600].reset_index(drop=True)
    members = [make_member("log_return"), make_member("rsi")]
    p = prepare(_candles(f), members, max_lookback=8)
    cols = p.column_index(p.columns)
    s1 = fit_scaler(p, cols)
    g = f.copy()
    last_train_row = int(p.train_idx[-1]) + p.meta["warmup_rows"]
    # Change everything after the last training label (row t + h) — validation/test only.
    g.loc[last_train_row + p.horizon + 1:, ["open", "high", "low", "close"]] *= 3.0
    p2 = prepare(_candles(g), members, max_lookback=8)
    s2 = fit_scaler(p2, cols)
    np.testing.assert_allclose(s1.mean, s2.mean)
    np.testing.assert_allclose(s1.std, s2.std)
    # labels: the last train label looks h=1 ahead but never past the purge boundary.
    assert p.train_idx[-1] + p.horizon <= p.val_idx[0]
    assert s1.y_mean == pytest.approx(s2.y_mean)


def test_windows_align_with_targets_and_split_is_chronological() -> None:
    n = 120
    close = list(100 * np.cumprod(1 + 0.01 * np.sin(np.arange(n))))
    f = frame(close)
    p = prepare(_candles(f), [make_member("log_return")], horizon=2, max_lookback=5,
                split=Split(0.6, 0.2, 0.2))
    assert p.meta["warmup_rows"] == 1
    assert p.train_idx.max() < p.val_idx.min() < p.val_idx.max() < p.test_idx.min()
    cols = p.column_index(["log_return_1"])
    sc = fit_scaler(p, cols)
    x = windows(p, cols, p.test_idx, 3, sc)
    y = labels(p, p.test_idx, sc) * sc.y_std + sc.y_mean
    for k, t in enumerate(p.test_idx[:5]):
        row = t + 1  # row in the original frame (1 warm-up row dropped)
        expect_x = [math.log(close[r] / close[r - 1]) for r in (row - 2, row - 1, row)]
        np.testing.assert_allclose(x[k, :, 0] * sc.std[0] + sc.mean[0], expect_x, rtol=1e-5)
        assert y[k] == pytest.approx(close[row + 2] / close[row], rel=1e-6)
    assert p.persistence[p.test_idx].tolist() == [1.0] * len(p.test_idx)


def test_windows_never_span_a_gap() -> None:
    f = frame(list(np.linspace(100, 130, 80)))
    f = f.drop(index=range(40, 43)).reset_index(drop=True)  # a 3-day hole
    p = prepare(_candles(f), [make_member("log_return")], max_lookback=4, horizon=1, split=Split(0.5, 0.25, 0.25))
    ts = p.timestamps
    day = pd.Timedelta(days=1).value
    for t in np.concatenate([p.train_idx, p.val_idx, p.test_idx]):
        assert np.all(np.diff(ts[t - 3: t + 2]) == day)
    assert p.gaps_dropped > 0


def test_too_short_data_is_a_clear_error() -> None:
    with pytest.raises(TunefactoryError, match=r"only \d+ usable samples .* need at least 30"):
        prepare(_candles(frame()), [make_member("log_return")], max_lookback=2)

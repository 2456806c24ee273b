"""As-of alignment of metric tables to candles: look-ahead, publication lags, staleness.

The look-ahead test defines "published" on its own (daily row stamped D → D+1 00:00,
8-hourly row stamped T → T+8h, funding rate stamped T → T), changes every value published
after a cut time in a copy of each file, and requires every feature of every
metric-derived indicator on candles closing at or before the cut to stay the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainables.data.asof import align_to_candles
from trainables.data.candles import TIMEFRAMES, load_candles
from trainables.data.tables import read_funding_rates, read_metric_table
from trainables.features.indicators import INDICATORS, PoolMember, compute_features, make_member
from trainables.features.table_indicators import METRIC_INDICATORS, attach_metrics

from .helpers import DAILY, DAY, EIGHT_H, FUNDING, GLASSNODE, HOUR, _at, _candles, _ts

# --------------------------------------------------------------------------- look-ahead


def _alter_after(src: Path, dst: Path, cut: pd.Timestamp, publish_lag: pd.Timedelta, seed: int, *,
                 allow_empty: bool = True) -> int:
    """Copy ``src`` to ``dst`` changing every value published after ``cut``; return cells changed.

    Changes: each value scaled by a random factor in [0.5, 2] (sign kept) plus noise, 10 % of
    values blanked and half of the empty cells filled (wide tables), 10 % of rows deleted
    (funding, where empty rates are not allowed).
    """
    raw = pd.read_csv(src, dtype=str, keep_default_na=False)
    late = (pd.to_datetime(raw["timestamp"], utc=True) + publish_lag > cut).to_numpy()
    rng = np.random.default_rng(seed)
    cols = [c for c in raw.columns if c not in ("timestamp", "source")]
    # Work on floats: unchanged cells are written back as repr(float(text)), which parses
    # to exactly the same value, so only late cells differ after reading.
    v = raw[cols].replace("", np.nan).astype(np.float64).to_numpy()
    scale = np.nanmean(np.abs(v), axis=0)
    new = v * rng.uniform(0.5, 2.0, v.shape) + scale * rng.normal(0, 0.1, v.shape)
    if allow_empty:
        new[rng.random(v.shape) < 0.1] = np.nan
        fill = np.isnan(v) & (rng.random(v.shape) < 0.5)
        new[fill] = (scale * rng.uniform(0.5, 2.0, v.shape))[fill]
    out = np.where(late[:, None], new, v)
    changed = int((~((out == v) | (np.isnan(out) & np.isnan(v)))).sum())
    altered = pd.DataFrame(out, columns=cols)
    altered.insert(0, "timestamp", raw["timestamp"])
    if "source" in raw.columns:
        altered["source"] = raw["source"]
    if not allow_empty:
        altered = altered[~(late & (rng.random(len(raw)) < 0.1))]
    altered.to_csv(dst, index=False, na_rep="")
    return changed


_BASE: dict[tuple[str, str], pd.DataFrame] = {}


def _glassnode_base(tf: str, start: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candles and their Glassnode-attached frame, computed once per session."""
    candles = _candles(tf, start, "2021-03-01")
    if (tf, start) not in _BASE:
        _BASE[tf, start] = attach_metrics(candles, tf, metric_files=[GLASSNODE])
    return candles, _BASE[tf, start]


def _metric_members(frame: pd.DataFrame) -> list[PoolMember]:
    """Every metric-derived indicator whose column is in ``frame``; changes at lag 1 and 5."""
    members = []
    for name, col in sorted(METRIC_INDICATORS.items()):
        if col not in frame.columns:
            continue
        searched = {"lag": [1, 5]} if "lag" in INDICATORS[name].defaults else None
        members.append(make_member(name, searched=searched))
    return members


def _assert_no_lookahead(candles: pd.DataFrame, tf: str, cut: pd.Timestamp, base: pd.DataFrame,
                         altered: pd.DataFrame) -> tuple[int, int]:
    """Features and m: columns equal on candles closing <= cut; returns (compared finite, changed later)."""
    members = _metric_members(base)
    x0, cols, _ = compute_features(base, members)
    x1, cols1, _ = compute_features(altered, members)
    assert cols == cols1
    m_cols = [c for c in base.columns if c.startswith("m:")]
    x0 = np.column_stack([x0, base[m_cols].to_numpy(np.float32)])
    x1 = np.column_stack([x1, altered[m_cols].to_numpy(np.float32)])
    names = [*cols, *m_cols]
    early = (candles["timestamp"] + TIMEFRAMES[tf] <= cut).to_numpy()
    same = (x0 == x1) | (np.isnan(x0) & np.isnan(x1))
    bad = ~same[early].all(axis=0)
    assert not bad.any(), (f"{tf}, cut {cut}: features of candles closing <= cut changed when only values "
                           f"published after the cut changed: {[n for n, b in zip(names, bad, strict=True) if b][:10]}")
    return int(np.isfinite(x0[early]).sum()), int((~same[~early]).sum())


CUTS = ["2021-01-15T00:00:00Z", "2021-01-15T23:00:00Z", "2021-01-07T07:30:00Z", "2021-02-10T00:00:00Z"]


@pytest.mark.parametrize("cut", CUTS)
def test_no_lookahead_fixture_tables_and_funding(tmp_path: Path, cut: str) -> None:
    t = pd.Timestamp(cut)
    alt_daily, alt_8h, alt_fund = tmp_path / "daily.csv", tmp_path / "8h.csv", tmp_path / "funding.csv"
    assert _alter_after(DAILY, alt_daily, t, DAY, 1) > 20
    assert _alter_after(EIGHT_H, alt_8h, t, pd.Timedelta(hours=8), 2) >= 0
    assert _alter_after(FUNDING, alt_fund, t, pd.Timedelta(0), 3, allow_empty=False) > 1000
    for tf in ("1h", "8h", "1d"):
        candles = _candles(tf, "2020-12-25", "2021-03-05")
        base = attach_metrics(candles, tf, funding_file=FUNDING, metric_files=[DAILY, EIGHT_H])
        alt = attach_metrics(candles, tf, funding_file=alt_fund, metric_files=[alt_daily, alt_8h])
        # funding: level + change; 7 table metrics x (level, change, logchange), except the
        # two signed ones (exchange net flow, basis) which have no logchange.
        assert len(_metric_members(base)) == 2 + 7 * 3 - 2
        compared, changed = _assert_no_lookahead(candles, tf, t, base, alt)
        assert compared > 0 and changed > 0  # not vacuous: early rows have values, late rows moved


@pytest.mark.skipif(not GLASSNODE.is_file(), reason="shared Glassnode copy not present")
@pytest.mark.parametrize("cut", ["2020-11-15T00:00:00Z", "2021-01-31T13:00:00Z"])
def test_no_lookahead_glassnode(tmp_path: Path, cut: str) -> None:
    t = pd.Timestamp(cut)
    alt = tmp_path / "BTC_glassnode_daily.csv"  # a test-local altered copy, deleted with tmp_path
    assert _alter_after(GLASSNODE, alt, t, DAY, 4) > 1000
    for tf, start in (("1h", "2020-08-01"), ("1d", "2017-08-17")):
        candles, base = _glassnode_base(tf, start)
        altered = attach_metrics(candles, tf, metric_files=[alt])
        assert len(_metric_members(base)) > 300
        compared, changed = _assert_no_lookahead(candles, tf, t, base, altered)
        assert compared > 0 and changed > 0


def test_lookahead_check_catches_a_leak(tmp_path: Path) -> None:
    """Sanity check of the check: aligning a daily table by its stamp (no shift) leaks."""
    t = pd.Timestamp("2021-01-15T23:00:00Z")
    _alter_after(DAILY, tmp_path / "d.csv", t, DAY, 1)
    candles = _candles("1h", "2021-01-01", "2021-02-01")
    a, b = read_metric_table(DAILY).frame, read_metric_table(tmp_path / "d.csv").frame
    kw = {"metric_period": pd.Timedelta(0), "staleness": 2 * DAY}
    leaky0 = align_to_candles(a, candles["timestamp"], "1h", **kw).to_numpy()
    leaky1 = align_to_candles(b, candles["timestamp"], "1h", **kw).to_numpy()
    early = (candles["timestamp"] + HOUR <= t).to_numpy()
    assert not np.array_equal(leaky0[early], leaky1[early], equal_nan=True)


# --------------------------------------------------------------------------- alignment rules


def test_daily_value_first_appears_when_its_day_is_over() -> None:
    table = read_metric_table(DAILY).frame.set_index("timestamp")["addresses/active_count"]
    d1 = attach_metrics(_candles("1d", "2020-12-25", "2021-03-05"), "1d", metric_files=[DAILY])
    h1 = attach_metrics(_candles("1h", "2020-12-25", "2021-03-05"), "1h", metric_files=[DAILY])
    col = "m:addresses/active_count"
    checked = 0
    for day, value in table.items():
        prev = table.get(day - DAY, np.nan)
        # 1d candle opening D closes at D+1 00:00, the instant day D is complete: first to
        # carry D's value. The candle of D-1 (closing D 00:00) cannot have it.
        assert _at(d1, str(day), col) == value
        assert _at(d1, str(day - DAY), col) != value
        # 1h: the candle 22:00-23:00 of day D still shows D-1; 23:00-24:00 shows D.
        before = _at(h1, str(day + 22 * HOUR), col)
        assert before == prev or (np.isnan(prev) and before != value)
        assert _at(h1, str(day + 23 * HOUR), col) == value
        checked += 1
    assert checked == len(table) == 56


def test_eight_hourly_table_shifts_by_eight_hours() -> None:
    table = read_metric_table(EIGHT_H)
    assert table.period == pd.Timedelta(hours=8) == table.publish_lag
    s = table.frame.set_index("timestamp")["derivatives/futures_open_interest_sum"]
    h1 = attach_metrics(_candles("1h", "2020-12-31", "2021-01-20"), "1h", metric_files=[EIGHT_H])
    col = "m:derivatives/futures_open_interest_sum"
    for stamp, value in s.items():
        assert _at(h1, str(stamp + 7 * HOUR), col) == value      # closes stamp + 8h
        assert _at(h1, str(stamp + 6 * HOUR), col) != value      # closes before publication


def test_funding_rate_at_settlement_is_used_by_the_candle_closing_then() -> None:
    rates = read_funding_rates(FUNDING).frame.set_index("timestamp")["funding_rate"]
    h1 = attach_metrics(load_candles("BTC-USDT", "1h").frame, "1h", funding_file=FUNDING)
    by_open = h1.set_index("timestamp")["m:funding_rate"]
    # The 1h candle opening 07:00 closes at 08:00: the 08:00 settlement is its feature.
    assert by_open[_ts("2019-09-10T07:00:00Z")] == rates[_ts("2019-09-10T08:00:00Z")]
    assert np.isnan(by_open[_ts("2019-09-10T06:00:00Z")])  # before the first settlement
    opens = rates.index - HOUR
    have = opens.isin(by_open.index)
    np.testing.assert_array_equal(by_open[opens[have]].to_numpy(), rates.to_numpy()[have])
    assert have.sum() > 5000
    # And the candle before it still shows the previous settlement.
    prev = rates.shift(1)[(rates.index - pd.Timedelta(hours=8)).isin(rates.index)]
    prev_opens = prev.index - 2 * HOUR
    ok = prev_opens.isin(by_open.index)
    np.testing.assert_array_equal(by_open[prev_opens[ok]].to_numpy(), prev.to_numpy()[ok])
    assert ok.sum() > 5000


def test_vendored_funding_rates_attach_to_btc_8h_candles() -> None:
    candles = load_candles("BTC-USDT", "8h")
    assert candles.resampled_from == "1h"
    rates = read_funding_rates(FUNDING).frame.set_index("timestamp")["funding_rate"]
    f = attach_metrics(candles.frame, "8h", funding_file=FUNDING)
    closes = f["timestamp"] + pd.Timedelta(hours=8)
    on = closes.isin(rates.index).to_numpy()
    np.testing.assert_array_equal(f["m:funding_rate"].to_numpy()[on], rates[closes[on]].to_numpy())
    assert on.sum() > 4500
    # The 2023-06-22 → 2024-12-31 hole in the file: NaN (stale), not carried forward.
    hole = ((closes > _ts("2023-06-23T00:00:00Z")) & (closes < _ts("2024-12-31T00:00:00Z"))).to_numpy()
    assert hole.sum() > 1500 and np.isnan(f["m:funding_rate"].to_numpy()[hole]).all()
    x, names, warm = compute_features(f, [make_member("funding_rate"), make_member("funding_rate_change")])
    assert names == ["funding_rate", "funding_rate_change_1"] and warm == 1
    assert np.isfinite(x).all(axis=1).sum() > 4500


def test_staleness_limit() -> None:
    candles = _candles("1h", "2021-01-15", "2021-02-20")
    col = "m:addresses/active_count"
    two = attach_metrics(candles, "1h", metric_files=[DAILY])                      # default: 2 periods
    one = attach_metrics(candles, "1h", metric_files=[DAILY], staleness=DAY)
    table = read_metric_table(DAILY).frame.set_index("timestamp")
    v19, v23 = table.loc[_ts("2021-01-19"), "addresses/active_count"], table.loc[_ts("2021-01-23"),
                                                                                 "addresses/active_count"]
    # Days 20-22 are missing; 19's value is public from 01-20 00:00 on.
    assert _at(two, "2021-01-21T23:00:00Z", col) == v19       # closes 01-22 00:00: 2 days old, kept
    assert np.isnan(_at(two, "2021-01-22T00:00:00Z", col))    # 2 days 1 hour old: stale
    assert np.isnan(_at(two, "2021-01-23T22:00:00Z", col))
    assert _at(two, "2021-01-23T23:00:00Z", col) == v23       # 23's value is public at 01-24 00:00
    assert _at(one, "2021-01-20T23:00:00Z", col) == v19
    assert np.isnan(_at(one, "2021-01-21T00:00:00Z", col))
    nan2 = two[col].isna().sum()
    nan1 = one[col].isna().sum()
    assert nan2 == 47 and nan1 == 71
    # An empty cell falls back to the previous day's value, judged by that value's age.
    s = "m:indicators/sopr"
    v09 = table.loc[_ts("2021-02-09"), "indicators/sopr"]
    assert np.isnan(table.loc[_ts("2021-02-10"), "indicators/sopr"])
    assert _at(two, "2021-02-10T23:00:00Z", s) == v09          # would have been 02-10's value
    assert _at(one, "2021-02-10T23:00:00Z", s) == v09          # 1 day old: kept
    assert np.isnan(_at(one, "2021-02-11T00:00:00Z", s))       # 1 day 1 hour: stale
    # Before a metric has any value: NaN. mvrv starts on 01-03, public at 01-04 00:00.
    early = attach_metrics(_candles("1h", "2021-01-01", "2021-01-06"), "1h", metric_files=[DAILY])
    assert np.isnan(_at(early, "2021-01-03T22:00:00Z", "m:market/mvrv"))
    assert _at(early, "2021-01-03T23:00:00Z", "m:market/mvrv") == table.loc[_ts("2021-01-03"), "market/mvrv"]
    # The level indicator passes the aligned column through, NaN included.
    x, _, _ = compute_features(two, [make_member("gn_addresses_active_count")])
    np.testing.assert_array_equal(x[:, 0], two[col].to_numpy(np.float32))

"""Metric tables and candle files: look-ahead, staleness, alignment, validation, resampling.

The look-ahead test defines "published" on its own (daily row stamped D → D+1 00:00,
8-hourly row stamped T → T+8h, funding rate stamped T → T), changes every value published
after a cut time in a copy of each file, and requires every feature of every
metric-derived indicator on candles closing at or before the cut to stay the same.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainables.data.candles import (
    EMBEDDED_DIR,
    TIMEFRAMES,
    available,
    incomplete_buckets,
    load_candles,
    read_candles,
    resample,
)
from trainables.data.tables import (
    METRIC_INDICATORS,
    align_to_candles,
    attach_metrics,
    metric_indicator_name,
    read_funding_rates,
    read_metric_table,
    register_metric,
    register_metric_indicators,
)
from trainables.errors import DataError, TunefactoryError
from trainables.features.indicators import INDICATORS, PoolMember, compute_features, make_member

ROOT = Path(__file__).resolve().parents[3]
FIX = ROOT / "tests" / "fixtures" / "metrics"
DAILY = FIX / "BTC_metrics_daily.csv"
EIGHT_H = FIX / "BTC_metrics_8h.csv"
FUNDING = ROOT / "data" / "funding" / "BTC-USDT_perp_funding_rate_8h.csv"
GLASSNODE = Path("/work/shared/data/onchain/BTC_glassnode_daily.csv.gz")
DAY, HOUR = pd.Timedelta(days=1), pd.Timedelta(hours=1)


def _ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC") if "Z" not in s and "+" not in s else pd.Timestamp(s)


def _candles(tf: str, start: str, end: str) -> pd.DataFrame:
    f = load_candles("BTC-USDT", tf).frame
    return f[(f["timestamp"] >= _ts(start)) & (f["timestamp"] < _ts(end))].reset_index(drop=True)


def _at(frame: pd.DataFrame, open_time: str, column: str) -> float:
    row = frame.loc[frame["timestamp"] == _ts(open_time), column]
    assert len(row) == 1, f"no candle opening at {open_time}"
    return float(row.iloc[0])


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


def test_metric_indicator_definitions() -> None:
    candles = _candles("1d", "2021-01-01", "2021-03-01")
    f = attach_metrics(candles, "1d", metric_files=[DAILY])
    assert metric_indicator_name("addresses/active_count") == "gn_addresses_active_count"
    x = f["m:addresses/active_count"].to_numpy()
    out, names, warm = compute_features(f, [make_member("gn_addresses_active_count_logchange", {"lag": 3}),
                                            make_member("gn_addresses_active_count_change", {"lag": 3})])
    assert names == ["gn_addresses_active_count_logchange_3", "gn_addresses_active_count_change_3"]
    assert warm == 3
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(out[3:, 0], np.log(x[3:] / x[:-3]).astype(np.float32), rtol=1e-5)
    np.testing.assert_allclose(out[3:, 1], (x[3:] - x[:-3]).astype(np.float32), rtol=1e-5)
    # Signed metric: difference only.
    assert "gn_transactions_transfers_volume_exchanges_net_change" in INDICATORS
    assert "gn_transactions_transfers_volume_exchanges_net_logchange" not in INDICATORS
    # A pool naming a metric indicator on a frame without the metric: a clear error.
    with pytest.raises(TunefactoryError, match=r"needs the column 'm:addresses/active_count'.*attach_metrics"):
        compute_features(candles, [make_member("gn_addresses_active_count")])
    with pytest.raises(TunefactoryError, match="lag must be a whole number >= 1"):
        compute_features(f, [make_member("gn_addresses_active_count_change", {"lag": 0})])
    with pytest.raises(TunefactoryError, match="'rsi' already exists"):
        register_metric("rsi", "some/metric")
    with pytest.raises(DataError, match=r"metric 'addresses/active_count' is also provided by"):
        attach_metrics(candles, "1d", metric_files=[DAILY, DAILY])


# --------------------------------------------------------------------------- malformed files

H = b"timestamp,open,high,low,close,volume\n"
R1 = b"2021-01-01T00:00:00Z,10,12,9,11,5\n"
R2 = b"2021-01-01T01:00:00Z,11,13,10,12,6\n"
R3 = b"2021-01-01T02:00:00Z,12,14,11,13,7\n"
GOOD = H + R1 + R2 + R3

# (id, file bytes, gz?, pattern after the path). Every pattern names the line and the rule
# where trainables.data.candles reports a line; the header/empty/gzip/encoding messages of
# trainables.data.candles carry no line number (see the report), so those match the rule only.
CANDLE_CASES = [
    ("unsorted", H + R1 + R3 + R2, False, r"line 4: timestamp 2021-01-01T01:00:00Z is earlier than the line "
                                          r"before .*sort the file"),
    ("duplicate", H + R1 + R2 + R2, False, r"line 4: duplicate timestamp 2021-01-01T01:00:00Z"),
    ("nan", H + R1 + b"2021-01-01T01:00:00Z,11,13,10,NaN,6\n", False,
     r"line 3: close 'NaN' is not a finite number"),
    ("negative_price", H + R1 + b"2021-01-01T01:00:00Z,-11,13,10,12,6\n", False, r"line 3: prices must be > 0"),
    ("high_below_low", H + R1 + b"2021-01-01T01:00:00Z,11,9,10,12,6\n", False, r"line 3: high must be >= low"),
    ("mixed_time_zones", H + R1 + b"2021-01-01T03:00:00+02:00,11,13,10,12,6\n", False,
     r"line 3: timestamp '2021-01-01T03:00:00\+02:00' is not UTC"),
    ("wrong_columns", b"time,open,high,low,close,vol\n" + R1, False, r"header: expected columns "
                                                                    r"timestamp,open,high,low,close,volume"),
    ("empty", b"", False, r"file is empty"),
    ("truncated_gzip", gzip.compress(GOOD * 300)[:-40], True, r"gzip stream is truncated or corrupt"),
    ("non_utf8", H + R1 + b"2021-01-01T01:00:00Z,11,13,10,12,6\xff\n", False, r"byte \d+: not UTF-8 text"),
    ("wrong_delimiter", GOOD.replace(b",", b";"), False, r"header: .*is the delimiter a comma\?"),
    ("future", H + R1 + b"2099-01-01T01:00:00Z,11,13,10,12,6\n", False, r"line 3: timestamp 2099-01-01T01:00:00Z "
                                                                       r"is in the future"),
    ("misaligned", H + R1 + b"2021-01-01T01:30:00Z,11,13,10,12,6\n", False, r"line 3: .* not aligned to 1h"),
]


@pytest.mark.parametrize(("case", "data", "gz", "pattern"), CANDLE_CASES, ids=[c[0] for c in CANDLE_CASES])
def test_malformed_candle_files_are_rejected(tmp_path: Path, case: str, data: bytes, gz: bool,
                                             pattern: str) -> None:
    path = tmp_path / f"BTC-USDT_1h.csv{'.gz' if gz else ''}"
    path.write_bytes(data)
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + pattern) as e:
        read_candles(path)
    assert "\n" not in str(e.value)


def test_candle_file_far_future_year_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "BTC-USDT_1h.csv"
    path.write_bytes(H + R1 + b"2999-01-01T01:00:00Z,11,13,10,12,6\n")
    with pytest.raises(DataError, match=r"line 3: .*in the future"):
        read_candles(path)


MH = b"timestamp,addresses/active_count,market/mvrv\n"
M1 = b"2021-01-01T00:00:00Z,1000,2.5\n"
M2 = b"2021-01-02T00:00:00Z,1100,\n"
M3 = b"2021-01-03T00:00:00Z,1200,2.7\n"
MGOOD = MH + M1 + M2 + M3

METRIC_CASES = [
    ("unsorted", MH + M1 + M3 + M2, r"line 4: timestamp 2021-01-02T00:00:00Z is earlier than the line before"),
    ("duplicate", MH + M1 + M2 + M2, r"line 4: duplicate timestamp 2021-01-02T00:00:00Z"),
    ("nan_text", MH + M1 + b"2021-01-02T00:00:00Z,NaN,2.6\n",
     r"line 3: column 'addresses/active_count': value 'NaN' is not a finite number; leave the cell empty"),
    ("infinite", MH + M1 + b"2021-01-02T00:00:00Z,1100,inf\n",
     r"line 3: column 'market/mvrv': value 'inf' is not a finite number"),
    ("text_value", MH + M1 + M2 + b"2021-01-03T00:00:00Z,1.2k,2.7\n",
     r"line 4: column 'addresses/active_count': value '1.2k' is not a finite number"),
    ("mixed_time_zones", MH + M1 + b"2021-01-02T01:00:00+01:00,1100,2.6\n",
     r"line 3: timestamp '2021-01-02T01:00:00\+01:00' is not UTC"),
    ("no_time_zone", MH + M1 + b"2021-01-02T00:00:00,1100,2.6\n", r"line 3: timestamp '2021-01-02T00:00:00' "
                                                                r"has no time zone"),
    ("wrong_columns", b"date,addresses/active_count\n" + M1, r"line 1: header: expected timestamp,<metric>"),
    ("no_metric_column", b"timestamp\n2021-01-01T00:00:00Z\n", r"line 1: header: expected"),
    ("duplicate_column", b"timestamp,a,a\n2021-01-01T00:00:00Z,1,2\n", r"line 1: header: column 'a' appears "
                                                                       r"more than once"),
    ("empty", b"", r"line 1: file is empty"),
    ("header_only", MH, r"line 2: file has a header but no rows"),
    ("truncated_gzip", None, r"line \d+: gzip stream is truncated \(it ends after line \d+\)"),
    ("non_utf8", MH + M1 + b"2021-01-02T00:00:00Z,1100,2.6\xe9\n", r"line 3: byte \d+ is not UTF-8 text"),
    ("wrong_delimiter", MGOOD.replace(b",", b";"), r"line 1: header: .*is the delimiter a comma\?"),
    ("future", MH + M1 + b"2999-01-02T00:00:00Z,1100,2.6\n", r"line 3: timestamp 2999-01-02T00:00:00Z is in "
                                                            r"the future"),
    ("short_row", MH + M1 + b"2021-01-02T00:00:00Z,1100\n" + M3, r"line 3: row has 2 fields; the header has 3"),
    ("blank_line", MH + M1 + b"\n" + M3, r"line 3: row is blank"),
    ("misaligned", MH + M1 + b"2021-01-02T12:00:00Z,1100,2.6\n" + b"2021-01-03T12:00:00Z,1,2\n",
     r"line 3: timestamp 2021-01-02T12:00:00Z is not aligned to the table's 1d period"),
    ("not_a_date", MH + M1 + b"yesterday,1100,2.6\n", r"line 3: timestamp 'yesterday' has no time zone"),
]


@pytest.mark.parametrize(("case", "data", "pattern"), METRIC_CASES, ids=[c[0] for c in METRIC_CASES])
def test_malformed_metric_tables_are_rejected(tmp_path: Path, case: str, data: bytes | None,
                                              pattern: str) -> None:
    if data is None:  # a long table whose gzip stream is cut off
        rows = b"".join(f"{d:%Y-%m-%dT%H:%M:%SZ},{i},{i / 7:.6f}\n".encode() for i, d in
                        enumerate(pd.date_range("2010-01-01", periods=3000, freq="D")))
        data = gzip.compress(MH + rows)[:-200]
        path = tmp_path / "BTC_glassnode_daily.csv.gz"
    else:
        path = tmp_path / "BTC_glassnode_daily.csv"
    path.write_bytes(data)
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + pattern) as e:
        read_metric_table(path)
    assert "\n" not in str(e.value)


FH = b"timestamp,funding_rate,source\n"
FUNDING_CASES = [
    ("empty_rate", FH + b"2021-01-01T00:00:00Z,0.0001,x\n2021-01-01T08:00:00Z,,x\n",
     r"line 3: column 'funding_rate': value '' is not a finite number; leave out rows"),
    ("wrong_header", b"timestamp,rate\n2021-01-01T00:00:00Z,0.0001\n", r"line 1: header: expected "
                                                                      r"timestamp,funding_rate\[,source\]"),
    ("unsorted", FH + b"2021-01-01T08:00:00Z,0.0001,x\n2021-01-01T00:00:00Z,0.0001,x\n",
     r"line 3: timestamp 2021-01-01T00:00:00Z is earlier"),
]


@pytest.mark.parametrize(("case", "data", "pattern"), FUNDING_CASES, ids=[c[0] for c in FUNDING_CASES])
def test_malformed_funding_files_are_rejected(tmp_path: Path, case: str, data: bytes, pattern: str) -> None:
    path = tmp_path / "BTC-USDT_perp_funding_rate_8h.csv"
    path.write_bytes(data)
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + pattern):
        read_funding_rates(path)


def test_valid_metric_table_reads() -> None:
    t = read_metric_table(DAILY)
    assert t.period == DAY == t.publish_lag
    assert t.columns == ["addresses/active_count", "market/mvrv", "transactions/transfers_volume_exchanges_net",
                         "indicators/sopr"]
    assert t.frame["market/mvrv"].isna().sum() == 2 and t.frame["indicators/sopr"].isna().sum() == 1
    f = read_funding_rates(FUNDING)
    assert f.publish_lag == pd.Timedelta(0) and f.period == pd.Timedelta(hours=8) and len(f.frame) == 5257


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("asset", sorted(available()))
def test_resampled_1h_equals_native_1d(asset: str) -> None:
    """Summing the embedded 1h candles to days reproduces the embedded 1d candles exactly."""
    h = read_candles(EMBEDDED_DIR / f"{asset}_1h.csv.gz")
    d = read_candles(EMBEDDED_DIR / f"{asset}_1d.csv").set_index("timestamp")
    r = resample(h, "1h", "1d").set_index("timestamp")
    incomplete = incomplete_buckets(h, "1h", "1d")
    # Days with missing hours are reported, never compared (resample drops them).
    assert not r.index.isin(incomplete.index).any()
    common = r.index.intersection(d.index)
    listed = ", ".join(f"{ts:%Y-%m-%d} ({n}/24 h)" for ts, n in incomplete.items())
    assert len(common) == len(r), f"{asset}: resampled days without a native daily candle"
    minimum = 3000 if asset in ("BTC-USDT", "ETH-USDT") else 1900
    assert len(common) > minimum, (f"{asset}: only {len(common)} complete days compared; "
                                   f"{len(incomplete)} days with missing hours: {listed}")
    a, b = r.loc[common], d.loc[common]
    for col in ("open", "high", "low", "close"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-9, atol=0,
                                   err_msg=f"{asset} {col}; {len(incomplete)} incomplete days not compared: "
                                           f"{listed}")
    np.testing.assert_allclose(a["volume"], b["volume"], rtol=1e-6, atol=1e-9, err_msg=f"{asset} volume")
    # Every native day is either compared or listed as incomplete in the 1h data.
    h_days = h["timestamp"].dt.floor("1D").unique()
    missing = d.index[d.index.isin(h_days) & ~d.index.isin(common)]
    assert set(missing) <= set(incomplete.index), f"{asset}: days neither compared nor reported: {missing[:5]}"


def test_nothing_is_registered_at_import_and_registration_is_explicit() -> None:
    assert not any(n.startswith(("funding_rate", "gn_")) for n in INDICATORS)
    names = register_metric_indicators(funding=True, metric_files=[DAILY])
    assert names[:2] == ["funding_rate", "funding_rate_change"]
    assert "gn_addresses_active_count_logchange" in names and len(names) == 2 + 4 * 3 - 1
    assert all(n in INDICATORS and n in METRIC_INDICATORS for n in names)

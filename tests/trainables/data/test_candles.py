"""Candle loader: real embedded files load; each bad-file case gets its one-line message; resampling."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainables.data.candles import (
    EMBEDDED_DIR,
    available,
    fill_gaps,
    gap_report,
    incomplete_buckets,
    load_candles,
    read_candles,
    resample,
)
from trainables.errors import DataError

HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = [
    "2024-01-01T00:00:00Z,100,110,95,105,10",
    "2024-01-01T01:00:00Z,105,106,100,101,12",
    "2024-01-01T02:00:00Z,101,103,99,102,0",
]


def write(tmp_path: Path, rows: list[str], name: str = "BTC-USDT_1h.csv", header: str = HEADER) -> Path:
    p = tmp_path / name
    p.write_text(header + "\n".join(rows) + "\n")
    return p


def test_embedded_set_loads_every_asset_and_reports_known_gaps() -> None:
    have = available()
    assert set(have) == {"BTC-USDT", "ETH-USDT", "BNB-USDT", "SOL-USDT", "XRP-USDT", "ADA-USDT"}
    c = load_candles("BTC-USDT", "1h")
    assert len(c.frame) == 73_404
    # trainables/data/embedded/README.md: 128 missing hours in 28 holes, the largest 33 after 2018-02-08T00:00Z.
    assert (c.gaps.missing, c.gaps.events) == (128, 28)
    assert c.gaps.largest[0] == ("2018-02-08T00:00Z", 33)
    d = load_candles("BTC-USDT", "1d")
    assert d.gaps.missing == 0 and d.resampled_from is None


def test_resampling_4h_keeps_only_complete_buckets() -> None:
    h1 = load_candles("ETH-USDT", "1h").frame
    h4 = load_candles("ETH-USDT", "4h")
    assert h4.resampled_from == "1h"
    first = h4.frame.iloc[1]  # 2017-08-17T04:00 is the first complete 4h bucket... check one by hand
    ts = first["timestamp"]
    part = h1[(h1["timestamp"] >= ts) & (h1["timestamp"] < ts + pd.Timedelta(hours=4))]
    assert len(part) == 4
    assert first["open"] == part["open"].iloc[0] and first["close"] == part["close"].iloc[-1]
    assert first["high"] == part["high"].max() and first["low"] == part["low"].min()
    assert np.isclose(first["volume"], part["volume"].sum())
    assert (h4.frame["timestamp"].dt.hour % 4 == 0).all()
    dropped = incomplete_buckets(h1, "1h", "4h")
    assert len(dropped) > 0 and not h4.frame["timestamp"].isin(dropped.index).any()


def test_resample_handmade() -> None:
    ts = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
    f = pd.DataFrame({"timestamp": ts, "open": [1, 2, 3, 4, 5, 6.0], "high": [2, 3, 4, 5, 6, 7.0],
                      "low": [0.5, 1, 2, 3, 4, 5.0], "close": [2, 3, 4, 5, 6, 7.0], "volume": [1.0] * 6})
    r = resample(f.drop(index=4).reset_index(drop=True), "1h", "3h")  # second bucket incomplete
    assert len(r) == 1
    assert r.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [1, 4, 0.5, 4, 3]


def test_gap_report_counts() -> None:
    ts = pd.to_datetime(["2024-01-01T00:00Z", "2024-01-01T01:00Z", "2024-01-01T05:00Z", "2024-01-01T07:00Z"])
    g = gap_report(ts, "1h")
    assert (g.missing, g.events) == (4, 2)
    assert g.largest[0] == ("2024-01-01T01:00Z", 3)


@pytest.mark.parametrize(("rows", "header", "match"), [
    (GOOD[::-1], HEADER, r"line 3: timestamp 2024-01-01T01:00:00Z is earlier than the line before .*sort the file"),
    ([GOOD[0], GOOD[0]], HEADER, r"line 3: duplicate timestamp 2024-01-01T00:00:00Z"),
    ([GOOD[0], "2024-01-01T01:00:00Z,105,,100,101,12"], HEADER, r"line 3: high '' is not a finite number"),
    ([GOOD[0], "2024-01-01T01:00:00Z,105,106,100,NaN,12"], HEADER, r"line 3: close 'NaN' is not a finite number"),
    (["2024-01-01T00:00:00Z,-1,110,-5,105,10"], HEADER, r"line 2: prices must be > 0; got min\(open, high, low, close\) = -5"),
    (["2024-01-01T00:00:00Z,100,90,95,92,10"], HEADER, r"line 2: high must be >= low; got high = 90.0, low = 95.0"),
    (["2024-01-01T00:00:00Z,100,104,95,105,10"], HEADER, r"line 2: need low <= open, close <= high"),
    (["2024-01-01T00:00:00Z,100,110,95,105,-3"], HEADER, r"line 2: volume must be >= 0; got volume = -3"),
    ([GOOD[0], "2024-01-01T03:00:00+02:00,105,106,100,101,12"], HEADER, r"line 3: timestamp '2024-01-01T03:00:00\+02:00' is not UTC"),
    (["yesterday,100,110,95,105,10"], HEADER, r"line 2: timestamp 'yesterday' is not an ISO-8601 date-time"),
    (["2024-01-01T00:30:00Z,100,110,95,105,10"], HEADER, r"line 2: timestamp 2024-01-01T00:30:00Z is not aligned to 1h"),
    (["2099-01-01T00:00:00Z,100,110,95,105,10"], HEADER, r"line 2: timestamp 2099-01-01T00:00:00Z is in the future"),
    (GOOD, "time,o,h,l,c,v\n", r"header: expected columns timestamp,open,high,low,close,volume; got time,o,h,l,c,v"),
    ([r.replace(",", ";") for r in GOOD], HEADER.replace(",", ";"), r"header: expected columns .* \(is the delimiter a comma\?\)"),
    ([], HEADER, r"file has a header but no candles"),
])
def test_bad_files_are_rejected_with_file_line_and_rule(tmp_path: Path, rows: list[str], header: str, match: str) -> None:
    p = write(tmp_path, rows, header=header)
    with pytest.raises(DataError, match=match) as e:
        read_candles(p)
    msg = str(e.value)
    assert msg.startswith(str(p)) and "\n" not in msg


def test_empty_truncated_gzip_and_non_utf8(tmp_path: Path) -> None:
    empty = tmp_path / "BTC-USDT_1h.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"BTC-USDT_1h.csv: file is empty"):
        read_candles(empty)
    gz = tmp_path / "ETH-USDT_1h.csv.gz"
    blob = gzip.compress((HEADER + "\n".join(GOOD * 200)).encode())
    gz.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"ETH-USDT_1h.csv.gz: gzip stream is truncated or corrupt"):
        read_candles(gz)
    latin = tmp_path / "XRP-USDT_1h.csv"
    latin.write_bytes((HEADER + GOOD[0] + ",caf\xe9\n").encode("latin-1"))
    with pytest.raises(DataError, match=r"XRP-USDT_1h.csv: .*not UTF-8"):
        read_candles(latin)


def test_missing_asset_names_what_exists(tmp_path: Path) -> None:
    write(tmp_path, GOOD, name="BTC-USDT_1h.csv")
    with pytest.raises(DataError, match=r"no candles for DOGE-USDT 4h .*found: BTC-USDT \['1h'\]"):
        load_candles("DOGE-USDT", "4h", path=tmp_path)
    with pytest.raises(DataError, match=r"timeframe '5m' is not supported; allowed: 1h, 2h"):
        load_candles("BTC-USDT", "5m", path=tmp_path)


def test_cli_reports_bad_data_in_one_line_exit_2(tmp_path: Path, tiny_spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    data = tmp_path / "data"
    data.mkdir()
    days = pd.date_range("2023-01-01", periods=400, freq="D").strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [f"{d},100,110,95,105,10" for d in days]
    rows[1], rows[2] = rows[2], rows[1]  # lines 3 and 4 swapped
    write(data, rows, name="BTC-USDT_1d.csv")
    runs = tmp_path / "runs"
    rc = main(["run", str(tiny_spec), "--storage", str(runs), "--set", f"data.path={data}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "BTC-USDT_1d.csv: line 4" in err and "sort the file" in err
    assert not runs.exists()  # nothing half-written


def test_embedded_dir_is_inside_the_package() -> None:
    # Inside trainables/, so the wheel carries it (tests/test_packaging.py installs one).
    assert EMBEDDED_DIR.is_dir() and (EMBEDDED_DIR.parents[3] / "pyproject.toml").is_file()
    assert EMBEDDED_DIR.parents[1].name == "data" and (EMBEDDED_DIR.parents[1] / "candles.py").is_file()


def test_fill_gaps_fills_short_holes_with_flat_candles_only() -> None:
    ts = pd.to_datetime(["2024-01-01T00:00Z", "2024-01-01T01:00Z", "2024-01-01T04:00Z", "2024-01-01T10:00Z"])
    f = pd.DataFrame({"timestamp": ts, "open": [1.0, 2, 3, 4], "high": [1.0, 2, 3, 4], "low": [1.0, 2, 3, 4],
                      "close": [1.5, 2.5, 3.5, 4.5], "volume": [1.0, 1, 1, 1]})
    out, n = fill_gaps(f, "1h", limit=2)
    assert n == 2  # the 2-hour hole is filled, the 5-hour hole is left
    added = out[out["volume"] == 0]
    assert added["timestamp"].dt.hour.tolist() == [2, 3]
    assert (added[["open", "high", "low", "close"]] == 2.5).all().all()
    assert gap_report(out["timestamp"], "1h").missing == 5


def test_ffill_policy_keeps_more_hourly_samples_than_drop_windows(tmp_path: Path) -> None:
    from cluster.sweep import prepare_groups
    from search_spaces.loader import load_spec

    spec = tmp_path / "s.yaml"
    spec.write_text("data: {assets: [BTC-USDT], timeframes: [1h], start: 2019-05-01, end: 2019-09-01}\n"
                    "window: {lookback: 8}\nfeatures: {pool: [log_return]}\nmodel: {families: {mlp: {}}}\n")
    drop = prepare_groups(load_spec(spec).spec)["BTC-USDT/1h"]
    ffill = prepare_groups(load_spec(spec, ["data.gap_policy=ffill", "data.ffill_limit=10"]).spec)["BTC-USDT/1h"]
    assert drop.gaps_dropped > 0 and ffill.meta["filled_candles"] > 0
    assert len(ffill.train_idx) + len(ffill.val_idx) + len(ffill.test_idx) > \
        len(drop.train_idx) + len(drop.val_idx) + len(drop.test_idx)


# --------------------------------------------------------------------------- malformed files (bytes)

H = b"timestamp,open,high,low,close,volume\n"
R1 = b"2021-01-01T00:00:00Z,10,12,9,11,5\n"
R2 = b"2021-01-01T01:00:00Z,11,13,10,12,6\n"
R3 = b"2021-01-01T02:00:00Z,12,14,11,13,7\n"
GOOD_BYTES = H + R1 + R2 + R3  # GOOD (rows as text) is taken above

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
    ("truncated_gzip", gzip.compress(GOOD_BYTES * 300)[:-40], True, r"gzip stream is truncated or corrupt"),
    ("non_utf8", H + R1 + b"2021-01-01T01:00:00Z,11,13,10,12,6\xff\n", False,
     r"line 3, byte 35: not UTF-8 \(byte 0xff\)"),
    ("wrong_delimiter", GOOD_BYTES.replace(b",", b";"), False, r"header: .*is the delimiter a comma\?"),
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

"""Metric tables and funding-rate files: each malformed file gets its one-line message."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pandas as pd
import pytest

from trainables.data.tables import read_funding_rates, read_metric_table
from trainables.errors import DataError

from .helpers import DAILY, DAY, FUNDING

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
    ("non_utf8", MH + M1 + b"2021-01-02T00:00:00Z,1100,2.6\xe9\n", r"line 3, byte 30: not UTF-8 \(byte 0xe9\)"),
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

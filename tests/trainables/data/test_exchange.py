"""Candle download: pagination, de-duplication, forming candle, resume, network errors.

The exchange is a replay of recorded ``fetch_ohlcv`` pages (real BTC/USDT 1h candles, see
tests/fixtures/exchange/); a script can make a call return an empty page, repeat the
previous page, overlap the previous page or raise ``ccxt.NetworkError``. Everything of
ours (paging, validation, atomic writes) runs for real against files in ``tmp_path``.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
import pytest

from trainables.data.candles import EMBEDDED_DIR, read_candles
from trainables.data.exchange import FetchResult, asset_symbol, fetch_candles, make_exchange
from trainables.errors import DataError, TunefactoryError

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "exchange" / "binance_btc_usdt_1h_pages.json"
EMBEDDED_1H = EMBEDDED_DIR / "BTC-USDT_1h.csv.gz"
HOUR = 3_600_000
T0 = 1_609_459_200_000  # 2021-01-01T00:00Z, first recorded candle
HEADER = "timestamp,open,high,low,close,volume\n"


def _ms(iso: str) -> int:
    return int(pd.Timestamp(iso).value // 1_000_000)


class ReplayExchange:
    """Serves recorded pages; ``script`` entries override successive calls."""

    id = "replay"
    rateLimit = 250  # ccxt's attribute name: milliseconds between requests
    timeframes = {"1h": "1h", "1d": "1d"}  # noqa: RUF012 - mirrors ccxt's class attribute

    def __init__(self, *, script: list[str] | None = None, clock: str = "2021-01-01T14:30:00Z",
                 last_candle: str | None = None) -> None:
        doc = json.loads(FIXTURE.read_text())
        self.recorded = {(p["request"]["since"], p["request"]["limit"]): p["response"] for p in doc["pages"]}
        rows = sorted({r[0]: r for p in doc["pages"] for r in p["response"]}.values())
        if last_candle is not None:  # an exchange whose data ends earlier
            rows = [r for r in rows if r[0] <= _ms(last_candle)]
            self.recorded = {}
        self.candles = rows
        self.script = list(script or [])
        self.calls: list[tuple[str, str, int | None, int | None]] = []
        self.clock = _ms(clock)
        self.last_page: list[list[Any]] = []

    def milliseconds(self) -> int:
        return self.clock

    def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", since: int | None = None,
                    limit: int | None = None, params: dict[str, Any] | None = None) -> list[list[Any]]:
        self.calls.append((symbol, timeframe, since, limit))
        assert symbol == "BTC/USDT" and timeframe == "1h"
        action = self.script.pop(0) if self.script else "serve"
        if action == "network":
            raise ccxt.NetworkError("binance GET https://api.binance.com/api/v3/klines 502 Bad Gateway")
        if action == "bad_symbol":
            raise ccxt.BadSymbol("binance does not have market symbol BTC/USDT")
        if action == "empty":
            return []
        if action == "repeat":
            return copy.deepcopy(self.last_page)
        start = (since or 0) - (2 * HOUR if action == "overlap" else 0)
        page = self.recorded.get((start, limit))
        if page is None:
            page = [r for r in self.candles if r[0] >= start][: limit or 500]
        self.last_page = page
        return copy.deepcopy(page)


def _expected_lines(first: str, last: str) -> str:
    """The embedded file's own lines for that range: the fetch must write them byte for byte."""
    with gzip.open(EMBEDDED_1H, "rt", encoding="utf-8") as f:
        lines = [ln for ln in f if first <= ln[:20] <= last]
    return "".join(lines)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _fetch(ex: ReplayExchange, tmp_path: Path, sleeps: Sleeps | None = None, **kw: Any) -> FetchResult:
    kw.setdefault("limit", 5)
    return fetch_candles(ex, "BTC-USDT", "1h", since="2021-01-01T00:00:00Z", out_dir=tmp_path,
                         sleep=sleeps if sleeps is not None else Sleeps(), **kw)


def test_progress_reports_every_page_with_new_candles_up_to_the_whole_span(tmp_path: Path) -> None:
    from trainables.data.exchange import FetchProgress

    seen: list[FetchProgress] = []
    ex = ReplayExchange(clock="2021-01-01T14:30:00Z")
    _fetch(ex, tmp_path, progress=seen.append)
    # 3 pages of 5 candles wanted 00:00..13:00 (14 complete candles)
    assert [p.fetched for p in seen] == [5, 10, 14]
    assert [p.requests for p in seen] == [1, 2, 3]
    assert [p.last for p in seen] == [pd.Timestamp(f"2021-01-01T{h:02d}:00Z") for h in (4, 9, 13)]
    assert [round(p.done, 4) for p in seen] == [round(5 / 14, 4), round(10 / 14, 4), 1.0]
    assert {p.label for p in seen} == {"replay BTC/USDT 1h"}


def test_paginates_rate_limits_and_drops_the_forming_candle(tmp_path: Path) -> None:
    ex, sleeps = ReplayExchange(clock="2021-01-01T14:30:00Z"), Sleeps()
    res = _fetch(ex, tmp_path, sleeps)
    # 3 pages of 5; the 14:00 candle closes at 15:00 > now, so it is still forming.
    assert [c[2] for c in ex.calls] == [T0, T0 + 5 * HOUR, T0 + 10 * HOUR]
    assert all(c[3] == 5 for c in ex.calls)
    assert sleeps == [0.25, 0.25]  # rateLimit between pages, none before the first
    path = tmp_path / "BTC-USDT_1h.csv"
    assert res == FetchResult(path, 14, 14, pd.Timestamp("2021-01-01T13:00:00Z"), True)
    assert path.read_text() == HEADER + _expected_lines("2021-01-01T00:00:00Z", "2021-01-01T13:00:00Z")
    frame = read_candles(path)
    assert len(frame) == 14 and frame["timestamp"].iloc[-1] == pd.Timestamp("2021-01-01T13:00:00Z")


def test_forming_candle_boundary_is_open_plus_timeframe(tmp_path: Path) -> None:
    # At exactly 15:00 the 14:00 candle is complete and kept.
    res = _fetch(ReplayExchange(clock="2021-01-01T15:00:00Z"), tmp_path)
    assert res.total == 15 and res.last == pd.Timestamp("2021-01-01T14:00:00Z")


def test_duplicate_and_overlapping_pages_are_deduplicated(tmp_path: Path) -> None:
    # page 1; then the same page again (ignored, asked again); then a page overlapping the
    # previous one by 2 candles; then normal pages.
    ex = ReplayExchange(script=["serve", "repeat", "overlap"])
    res = _fetch(ex, tmp_path)
    assert [c[2] for c in ex.calls] == [T0, T0 + 5 * HOUR, T0 + 5 * HOUR, T0 + 8 * HOUR, T0 + 13 * HOUR]
    assert res.total == 14 and res.complete
    assert (tmp_path / "BTC-USDT_1h.csv").read_text() == HEADER + _expected_lines(
        "2021-01-01T00:00:00Z", "2021-01-01T13:00:00Z")


def test_empty_page_midway_is_asked_again(tmp_path: Path) -> None:
    ex = ReplayExchange(script=["serve", "empty"])
    res = _fetch(ex, tmp_path)
    assert [c[2] for c in ex.calls] == [T0, T0 + 5 * HOUR, T0 + 5 * HOUR, T0 + 10 * HOUR]
    assert res.total == 14 and res.complete


def test_exchange_without_newer_candles_stops_and_resume_completes(tmp_path: Path) -> None:
    short = ReplayExchange(last_candle="2021-01-01T06:00:00Z")
    res = _fetch(short, tmp_path, retries=2)
    # After the data runs out: the empty page is asked twice more, then the fetch stops.
    assert [c[2] for c in short.calls] == [T0, T0 + 5 * HOUR, T0 + 7 * HOUR, T0 + 7 * HOUR, T0 + 7 * HOUR]
    assert res.total == 7 and not res.complete
    assert len(read_candles(res.path)) == 7
    res2 = _fetch(ReplayExchange(), tmp_path)
    assert res2.added == 7 and res2.total == 14 and res2.complete


def test_resume_appends_only_new_candles(tmp_path: Path) -> None:
    first = _fetch(ReplayExchange(clock="2021-01-01T05:30:00Z"), tmp_path)
    assert first.total == 5  # 05:00 is still forming at 05:30
    before = first.path.read_bytes()
    ex = ReplayExchange(clock="2021-01-01T14:30:00Z")
    res = _fetch(ex, tmp_path)
    assert ex.calls[0][2] == T0 + 5 * HOUR  # nothing before the file's last candle is asked for
    assert res.added == 9 and res.total == 14
    after = res.path.read_bytes()
    assert after.startswith(before)
    assert after.decode() == HEADER + _expected_lines("2021-01-01T00:00:00Z", "2021-01-01T13:00:00Z")
    # Up to date: a third run makes no request that returns anything new and writes nothing.
    again = _fetch(ReplayExchange(clock="2021-01-01T14:59:00Z"), tmp_path)
    assert again.added == 0 and again.complete and res.path.read_bytes() == after


def test_resume_keeps_gzip(tmp_path: Path) -> None:
    first = _fetch(ReplayExchange(clock="2021-01-01T07:10:00Z"), tmp_path, compress=True)
    assert first.path.name == "BTC-USDT_1h.csv.gz"
    res = _fetch(ReplayExchange(), tmp_path)  # compress=False: the existing .gz file wins
    assert res.path == first.path and not (tmp_path / "BTC-USDT_1h.csv").exists()
    with gzip.open(res.path, "rt") as f:
        assert f.read() == HEADER + _expected_lines("2021-01-01T00:00:00Z", "2021-01-01T13:00:00Z")
    assert len(read_candles(res.path)) == 14


def test_network_error_keeps_a_valid_file_and_resume_completes_it(tmp_path: Path) -> None:
    sleeps = Sleeps()
    ex = ReplayExchange(script=["serve", "network", "network", "network"])
    with pytest.raises(DataError, match=r"replay BTC/USDT 1h: network error at 2021-01-01T05:00:00Z after 3 "
                                        r"attempts \(NetworkError: binance GET .* 502 Bad Gateway\); .*"
                                        r"BTC-USDT_1h\.csv now ends at 2021-01-01T04:00Z .*run the fetch again"):
        _fetch(ex, tmp_path, sleeps, retries=2, backoff=0.5)
    assert sleeps == [0.25, 0.5, 1.0]  # page pause, then exponential backoff
    path = tmp_path / "BTC-USDT_1h.csv"
    assert path.read_text() == HEADER + _expected_lines("2021-01-01T00:00:00Z", "2021-01-01T04:00:00Z")
    assert len(read_candles(path)) == 5
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind
    res = _fetch(ReplayExchange(), tmp_path)
    assert res.added == 9 and res.complete
    assert path.read_text() == HEADER + _expected_lines("2021-01-01T00:00:00Z", "2021-01-01T13:00:00Z")


def test_transient_network_error_is_retried(tmp_path: Path) -> None:
    sleeps = Sleeps()
    res = _fetch(ReplayExchange(script=["serve", "network"]), tmp_path, sleeps, backoff=2.0)
    assert res.total == 14 and res.complete
    assert sleeps == [0.25, 2.0, 0.25]


def test_exchange_refusal_is_not_retried(tmp_path: Path) -> None:
    ex = ReplayExchange(script=["serve", "bad_symbol"])
    with pytest.raises(DataError, match=r"replay BTC/USDT 1h: exchange refused the request at 2021-01-01T05:00:00Z "
                                        r"\(BadSymbol: .*\); .*BTC-USDT_1h\.csv now ends at 2021-01-01T04:00Z "
                                        r"\(5 candles saved\)$"):
        _fetch(ex, tmp_path)
    assert len(ex.calls) == 2 and len(read_candles(tmp_path / "BTC-USDT_1h.csv")) == 5


def test_invalid_candles_from_the_exchange_leave_the_file_unchanged(tmp_path: Path) -> None:
    _fetch(ReplayExchange(clock="2021-01-01T05:30:00Z"), tmp_path)
    before = (tmp_path / "BTC-USDT_1h.csv").read_bytes()
    ex = ReplayExchange()
    ex.candles[7][2] = 1.0  # high 1.0 < low
    ex.recorded = {}
    with pytest.raises(DataError, match=r"BTC-USDT_1h\.csv: line 9: high must be >= low.*left unchanged"):
        _fetch(ex, tmp_path)
    assert (tmp_path / "BTC-USDT_1h.csv").read_bytes() == before


def test_invalid_existing_file_is_not_touched(tmp_path: Path) -> None:
    bad = tmp_path / "BTC-USDT_1h.csv"
    bad.write_text(HEADER + "2021-01-01T01:00:00Z,1,2,0.5,1,3\n2021-01-01T00:00:00Z,1,2,0.5,1,3\n")
    with pytest.raises(DataError, match=r"BTC-USDT_1h\.csv: line 3: .* sort the file"):
        _fetch(ReplayExchange(), tmp_path)
    assert bad.read_text().count("\n") == 3


def test_arguments_are_checked() -> None:
    assert asset_symbol("BTC-USDT") == "BTC/USDT"
    with pytest.raises(TunefactoryError, match="BASE-QUOTE"):
        asset_symbol("btcusdt")
    with pytest.raises(TunefactoryError, match="timeframe '5m' is not supported"):
        fetch_candles(ReplayExchange(), "BTC-USDT", "5m", out_dir="unused")


def test_make_exchange() -> None:
    ex = make_exchange("binance")  # constructing it needs no network
    assert ex.id == "binance" and ex.rateLimit > 0 and ex.enableRateLimit
    with pytest.raises(TunefactoryError, match=r"unknown exchange 'binanse'; did you mean binance"):
        make_exchange("binanse")

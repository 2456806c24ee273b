"""Download candles from an exchange with ccxt into the project's candle format.

The output is exactly what :mod:`trainables.data.candles` reads: ``<ASSET>_<TF>.csv[.gz]`` with
``timestamp,open,high,low,close,volume``, ``timestamp`` = candle **open** time as
``YYYY-MM-DDTHH:MM:SSZ``, numbers in Python's shortest round-trip form (as the embedded
files). A fetch is

* paginated — ``limit`` candles per request, the next request starting one candle after
  the newest one received;
* rate-limited — ``exchange.rateLimit`` milliseconds between requests;
* resumable — an existing file is validated and only candles after its last one are
  fetched and appended (existing lines are kept byte for byte);
* de-duplicated — overlapping or repeated pages contribute each candle once;
* complete-candles-only — the still-forming candle (open + timeframe > now) is dropped,
  otherwise its partial high/low/volume would be frozen into the file;
* atomic — the new file is validated in memory, written to a temp file in the same folder,
  fsync'ed and ``os.replace``'d, so a crash or a network error never leaves a broken file.
  On a network error that outlasts the retries, the candles fetched so far are saved
  (they are a valid, contiguous prefix) and :class:`DataError` is raised; running the
  fetch again resumes from there.
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from trainables.data.candles import COLUMNS, TIMEFRAMES, candle_file, read_candles, validate_candles
from trainables.data.timestamps import TS_FORMAT
from trainables.errors import DataError, TunefactoryError
from trainables.files import atomic_write


class OhlcvExchange(Protocol):
    """What :func:`fetch_candles` needs from a ccxt exchange (and what a test fake provides)."""

    rateLimit: float  # ccxt's attribute name (milliseconds between requests)

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None, limit: int | None) -> list[list[Any]]:
        """Candles ``[ms, open, high, low, close, volume]`` with open time >= ``since``."""
        ...

    def milliseconds(self) -> int:
        """The exchange clock, Unix milliseconds."""
        ...


@dataclass(frozen=True)
class FetchResult:
    """Outcome of :func:`fetch_candles`.

    Attributes:
        path: the candle file (may not exist when nothing was ever fetched).
        added: candles appended by this call.
        total: candles in the file now.
        last: open time of the newest candle in the file (None when empty).
        complete: True when the file reaches the last complete candle before ``now``;
            False when the exchange stopped returning newer candles earlier.
    """

    path: Path
    added: int
    total: int
    last: pd.Timestamp | None
    complete: bool


def make_exchange(name: str) -> Any:
    """Create a ccxt exchange with client-side rate limiting on.

    Args:
        name: ccxt exchange id, e.g. ``binance``.

    Returns:
        ``getattr(ccxt, name)({"enableRateLimit": True})``.

    Raises:
        TunefactoryError: ``name`` is not a ccxt exchange.
    """
    import ccxt  # lazy: ~0.7 s to import; only `data fetch` needs it, not every trial worker

    if name not in ccxt.exchanges:
        close = difflib.get_close_matches(name.lower(), ccxt.exchanges, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise TunefactoryError(f"unknown exchange {name!r}; {hint}ccxt {ccxt.__version__} knows "
                               f"{len(ccxt.exchanges)} exchanges (see ccxt.exchanges), e.g. binance, kraken, okx")
    return getattr(ccxt, name)({"enableRateLimit": True})


def asset_symbol(asset: str) -> str:
    """``BTC-USDT`` → ``BTC/USDT`` (ccxt's unified symbol)."""
    if not re.fullmatch(r"[A-Z0-9]+-[A-Z0-9]+", asset):
        raise TunefactoryError(f"asset {asset!r} must look like BASE-QUOTE in capitals, e.g. BTC-USDT")
    return asset.replace("-", "/")


def _to_ms(value: pd.Timestamp | str | int | float, what: str) -> int:
    """Timestamp-like → Unix ms (ints/floats are taken as ms already)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return int(value)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise TunefactoryError(f"{what} {value!r} is not a date-time; use e.g. 2024-01-31T00:00:00Z") from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)  # .value is ns whatever the unit


def _fmt_ms(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime(TS_FORMAT)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return data.decode("utf-8")


def _format_rows(rows: np.ndarray) -> str:
    """``[[ms, o, h, l, c, v], ...]`` → CSV lines in the embedded files' number format."""
    lines = [",".join([_fmt_ms(int(r[0])), *(repr(float(x)) for x in r[1:6])]) for r in rows]
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class FetchProgress:
    """Where a running fetch is, after one page.

    Attributes:
        label: ``exchange SYMBOL TF``.
        fetched: new candles so far (not yet written: the file is replaced once, at the end).
        requests: requests made so far, retries included.
        last: open time of the newest candle fetched.
        done: share of the wanted span covered, 0..1.
    """

    label: str
    fetched: int
    requests: int
    last: pd.Timestamp
    done: float


def fetch_candles(exchange: OhlcvExchange, asset: str, timeframe: str, *,
                  since: pd.Timestamp | str | int | None = None,
                  out_dir: Path | str,
                  now: pd.Timestamp | str | int | None = None,
                  limit: int = 1000,
                  sleep: Callable[[float], None] = time.sleep,
                  retries: int = 4,
                  backoff: float = 1.0,
                  compress: bool = False,
                  progress: Callable[[FetchProgress], None] | None = None) -> FetchResult:
    """Fetch complete candles into ``out_dir/<ASSET>_<TF>.csv[.gz]``, resuming an existing file.

    Args:
        exchange: a ccxt exchange (see :func:`make_exchange`) or anything with
            ``fetch_ohlcv(symbol, timeframe, since, limit)``, ``rateLimit`` (ms) and
            ``milliseconds()``.
        asset: ``BASE-QUOTE``, e.g. ``BTC-USDT`` (requested as ``BTC/USDT``).
        timeframe: key of :data:`trainables.data.candles.TIMEFRAMES`.
        since: first candle open time wanted (Timestamp, ISO string or Unix ms; default:
            the Unix epoch, i.e. everything the exchange has). Ignored where an existing
            file already goes further: then only candles after its last one are fetched.
        out_dir: folder of candle files; created if missing.
        now: clock deciding which candle is still forming (default:
            ``exchange.milliseconds()``).
        limit: candles per request.
        sleep: ``sleep(seconds)``; injectable so tests do not wait.
        retries: re-tries of a request failing with a ccxt ``NetworkError`` (and of an
            empty or all-duplicate page before the last complete candle).
        backoff: first retry wait in seconds, doubled per retry.
        compress: write ``.csv.gz`` for a new file (an existing file keeps its format).
        progress: called after every page that brought new candles (see
            :class:`FetchProgress`); the CLI throttles what it prints from it.

    Returns:
        A :class:`FetchResult`.

    Raises:
        DataError: the existing file is invalid, the exchange returned invalid candles
            (nothing is written), or a network error outlasted the retries (candles fetched
            so far are saved; run again to resume). One line each.
        TunefactoryError: bad asset, timeframe or argument.
    """
    import ccxt  # lazy: ~0.7 s to import; only `data fetch` needs it, not every trial worker

    if timeframe not in TIMEFRAMES:
        raise TunefactoryError(f"timeframe {timeframe!r} is not supported; allowed: {', '.join(TIMEFRAMES)}")
    if limit < 1 or retries < 0:
        raise TunefactoryError(f"limit must be >= 1 and retries >= 0; got limit={limit}, retries={retries}")
    symbol = asset_symbol(asset)
    tf_ms = int(TIMEFRAMES[timeframe] / pd.Timedelta(milliseconds=1))
    known = getattr(exchange, "timeframes", None)
    if isinstance(known, dict) and known and timeframe not in known:
        raise TunefactoryError(f"{getattr(exchange, 'id', 'exchange')} has no {timeframe} candles; "
                               f"it offers {', '.join(known)}")
    label = f"{getattr(exchange, 'id', type(exchange).__name__)} {symbol} {timeframe}"

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = candle_file(out, asset, timeframe) or out / f"{asset}_{timeframe}.csv{'.gz' if compress else ''}"
    is_gz = path.name.endswith(".gz")

    now_ms = _to_ms(now, "now") if now is not None else int(exchange.milliseconds())
    now_ts = pd.Timestamp(now_ms, unit="ms", tz="UTC")
    # Newest candle that is complete at `now`: open + tf <= now. Anything later is still
    # forming (its high/low/close/volume would change) and must not be stored.
    last_complete = (now_ms - tf_ms) // tf_ms * tf_ms

    existing_text = ""
    existing_n = 0
    cursor = _to_ms(since, "since") if since is not None else 0
    cursor = -(-cursor // tf_ms) * tf_ms  # round up to the candle grid
    last_ms: int | None = None
    if path.exists():
        old = read_candles(path, timeframe)  # invalid → DataError, file untouched
        existing_text = _read_text(path)
        if not existing_text.endswith("\n"):
            existing_text += "\n"
        existing_n = len(old)
        last_ms = int(old["timestamp"].iloc[-1].value // 1_000_000)
        cursor = max(cursor, last_ms + tf_ms)

    got: dict[int, list[float]] = {}   # open ms → [o, h, l, c, v], in cursor order
    # Where the fetched span starts: the cursor, or the exchange's first candle when
    # `since` lies before its listing (set from the first page).
    first_wanted = [cursor]
    pause = float(getattr(exchange, "rateLimit", 0) or 0) / 1000.0

    def save() -> FetchResult:
        """Validate existing + new candles in memory, then replace the file atomically."""
        if not got:
            return FetchResult(path, 0, existing_n, _ts(last_ms), (last_ms or -1) >= last_complete)
        rows = np.array([[k, *v] for k, v in sorted(got.items())], dtype=np.float64)
        new_text = _format_rows(rows)
        text = (existing_text or ",".join(COLUMNS) + "\n") + new_text
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        try:
            validate_candles(raw, path, timeframe, now=now_ts)
        except DataError as e:
            raise DataError(f"{e} (in candles fetched from {label}; the file was left unchanged)") from None
        atomic_write(path, text, compress=is_gz)
        last = int(rows[-1, 0])
        return FetchResult(path, len(rows), existing_n + len(rows), _ts(last), last >= last_complete)

    def pull() -> tuple[str, bool] | None:
        """Request pages until the last complete candle; a failure → (one-line description, retryable)."""
        nonlocal cursor
        requests = stalls = 0
        while cursor <= last_complete:
            if requests:
                sleep(pause)
            page = None
            for attempt in range(retries + 1):
                requests += 1
                try:
                    page = exchange.fetch_ohlcv(symbol, timeframe, cursor, limit)
                    break
                except ccxt.NetworkError as e:
                    if attempt == retries:
                        return (f"network error at {_fmt_ms(cursor)} after {retries + 1} attempts "
                                f"({type(e).__name__}: {_first_line(e)})", True)
                    sleep(backoff * 2 ** attempt)
                except ccxt.BaseError as e:  # bad symbol, auth, exchange-side refusal: no retry
                    return (f"exchange refused the request at {_fmt_ms(cursor)} "
                            f"({type(e).__name__}: {_first_line(e)})", False)
            # Keep only candles still needed: overlapping or repeated pages and the still-
            # forming candle fall out here; the dict keeps one row per open time.
            fresh = 0
            for c in page or []:
                ms = int(c[0])
                if cursor <= ms <= last_complete and ms not in got:
                    got[ms] = [np.nan if x is None else float(x) for x in c[1:6]]
                    fresh += 1
            if fresh:
                stalls = 0
                cursor = max(got) + tf_ms
                if progress is not None:
                    if len(got) == fresh:  # the first page: the span starts at the exchange's first candle
                        first_wanted[0] = max(first_wanted[0], min(got))
                    newest, start = max(got), first_wanted[0]
                    # Share of the wanted span covered so far, by time (pages are equal in
                    # candles, so by requests too).
                    done = (newest - start + tf_ms) / max(last_complete - start + tf_ms, tf_ms)
                    progress(FetchProgress(label=label, fetched=len(got), requests=requests,
                                           last=pd.Timestamp(newest, unit="ms", tz="UTC"), done=min(1.0, done)))
                continue
            # An empty or all-old page before the last complete candle: a glitch or the end
            # of the exchange's data. Ask again a few times, then stop (resumable later).
            stalls += 1
            if stalls > retries:
                break
        return None

    try:
        failure = pull()
    except BaseException:
        # Ctrl-C or a bug in the exchange client: keep the complete prefix, then re-raise.
        if got:
            with contextlib.suppress(DataError):
                save()
        raise
    result = save()
    if failure is not None:
        what, retryable = failure
        upto = f"now ends at {result.last:%Y-%m-%dT%H:%MZ}" if result.last else "was not created"
        hint = "; run the fetch again to resume" if retryable else ""
        raise DataError(f"{label}: {what}; {result.path} {upto} ({result.added} candles saved){hint}")
    return result


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else "no message"


def _ts(ms: int | None) -> pd.Timestamp | None:
    return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")

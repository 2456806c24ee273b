"""Candle files: find, parse, validate, resample and report gaps.

A candle file is ``<ASSET>_<TF>.csv`` or ``<ASSET>_<TF>.csv.gz`` with the columns
``timestamp,open,high,low,close,volume``; ``timestamp`` is the candle's **open** time in
UTC (ISO 8601). Every rule violation raises :class:`DataError` with one line naming the
file, the line and the rule, so the CLI can print it and exit 2.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.data.timestamps import (
    check_aligned,
    check_increasing,
    data_lines,
    file_lines,
    line_of,
    parse_utc,
)
from trainables.errors import DataError
from trainables.records import decode, excerpt, read_bytes

#: The folder of embedded candles shipped with the project, in the source tree and in the wheel
#: (Binance spot, see ``trainables/data/embedded/README.md``).
EMBEDDED_DIR: Path = Path(__file__).resolve().parent / "embedded" / "ohlcv"
#: Embedded Binance USDT-M perpetual funding rates (``<ASSET>_perp_funding_rate_8h.csv``).
EMBEDDED_FUNDING_DIR: Path = EMBEDDED_DIR.parent / "funding"

#: Supported timeframes and their length. Anything not native on disk is resampled from
#: the finest native timeframe that divides it.
TIMEFRAMES: dict[str, pd.Timedelta] = {
    "1h": pd.Timedelta(hours=1),
    "2h": pd.Timedelta(hours=2),
    "3h": pd.Timedelta(hours=3),
    "4h": pd.Timedelta(hours=4),
    "6h": pd.Timedelta(hours=6),
    "8h": pd.Timedelta(hours=8),
    "12h": pd.Timedelta(hours=12),
    "1d": pd.Timedelta(days=1),
}

COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class GapReport:
    """Missing candles between the first and the last timestamp of a series.

    Attributes:
        missing: number of expected candles absent from the file.
        events: number of separate holes.
        largest: up to five ``(timestamp_before_gap, missing_candles)`` pairs, largest first.
    """

    missing: int
    events: int
    largest: tuple[tuple[str, int], ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """One line for humans, e.g. ``128 missing in 28 gaps (largest 33 after 2018-02-08T00:00Z)``."""
        if not self.missing:
            return "no gaps"
        big = ", ".join(f"{n} after {ts}" for ts, n in self.largest[:3])
        return f"{self.missing} missing in {self.events} gaps (largest: {big})"


def _fmt_ts(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%MZ")


def gap_report(timestamps: pd.DatetimeIndex | pd.Series, timeframe: str) -> GapReport:
    """Count missing candles in a sorted, unique series of candle-open timestamps.

    Args:
        timestamps: candle open times, ascending.
        timeframe: key of :data:`TIMEFRAMES`.

    Returns:
        A :class:`GapReport`.
    """
    ts = pd.DatetimeIndex(timestamps)
    if len(ts) < 2:
        return GapReport(0, 0)
    step = TIMEFRAMES[timeframe]
    steps = np.asarray((ts[1:] - ts[:-1]) // step, dtype=np.int64)
    holes = np.flatnonzero(steps > 1)
    missing = steps[holes] - 1
    order = np.argsort(-missing, kind="stable")[:5]
    largest = tuple((_fmt_ts(ts[holes[i]]), int(missing[i])) for i in order)
    return GapReport(int(missing.sum()), len(holes), largest)


def candle_file(directory: Path, asset: str, timeframe: str) -> Path | None:
    """Return ``directory/<ASSET>_<TF>.csv[.gz]`` if it exists, else ``None``."""
    for suffix in (".csv", ".csv.gz"):
        p = directory / f"{asset}_{timeframe}{suffix}"
        if p.is_file():
            return p
    return None


def candle_source(directory: Path, asset: str, timeframe: str) -> tuple[Path, str] | None:
    """The file that serves (asset, timeframe): a native file, else the finest native divisor.

    The one copy of that rule: :func:`load_candles` reads what this returns, and the spec
    checks (``search_spaces.schema.inventory``) count candles from it.

    Returns:
        ``(file, its native timeframe)``, or None when no file can serve the timeframe.
    """
    target = TIMEFRAMES[timeframe]
    finer = sorted((tf for tf, d in TIMEFRAMES.items() if d < target and target % d == pd.Timedelta(0)),
                   key=TIMEFRAMES.__getitem__)
    for tf in [timeframe, *finer]:
        f = candle_file(directory, asset, tf)
        if f is not None:
            return f, tf
    return None


def available(directory: Path | None = None) -> dict[str, list[str]]:
    """Assets → native timeframes found in ``directory`` (default: the embedded set)."""
    directory = Path(directory) if directory else EMBEDDED_DIR
    out: dict[str, list[str]] = {}
    for p in sorted(directory.glob("*_*.csv*")):
        stem = p.name.split(".csv")[0]
        asset, _, tf = stem.rpartition("_")
        if tf in TIMEFRAMES and asset:
            out.setdefault(asset, []).append(tf)
    return out


def _read_raw(path: Path) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Read the CSV (and the editor lines of its rows when it has blank lines), turning
    decoder failures into one-line DataErrors."""
    # Through the reading layer: a size cap (a gzip bomb is refused while it expands) and
    # strict UTF-8 whose error names the exact line and byte.
    raw = read_bytes(path, error=DataError, hint="re-download or re-compress the file")
    try:
        if not raw:
            raise DataError(f"{path}: file is empty; expected a header line {','.join(COLUMNS)}")
        decode(raw, path=path, error=DataError)
        lines = data_lines(raw)
        try:
            # Fast path: numbers parsed by the C reader. Any unparsable cell raises and we
            # re-read everything as text so the message can quote the bad cell and line.
            fast = pd.read_csv(io.BytesIO(raw), dtype={c: (str if c == "timestamp" else np.float64) for c in COLUMNS})
            if list(fast.columns) == list(COLUMNS) and np.isfinite(fast[list(COLUMNS[1:])].to_numpy()).all():
                return fast, lines
        except (ValueError, TypeError, KeyError):
            pass
        return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False), lines
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty; expected a header line {','.join(COLUMNS)}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: byte {e.start}: not UTF-8 text ({e.reason}); save the file as UTF-8") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: gzip stream is truncated or corrupt ({e}); re-download or re-compress the file") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a valid CSV ({excerpt(str(e).splitlines()[0], 120)})") from None


def validate_candles(raw: pd.DataFrame, path: Path | str, timeframe: str | None = None,
                     *, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Parse and check a raw string frame; return typed candles indexed 0..n-1.

    Rules, in order: exact columns; ISO-8601 UTC timestamps (no other offsets); numeric,
    finite values; prices > 0; volume >= 0; low <= open, close <= high; strictly
    increasing timestamps (sorted, no duplicates); aligned to the timeframe; none in the
    future.

    Args:
        raw: the CSV read with every column as ``str``.
        path: the file, for messages.
        timeframe: when given, timestamps must be multiples of it (from the Unix epoch).
        now: the clock used for the future check (default: current UTC time).

    Returns:
        Frame with a UTC ``timestamp`` column and float64 OHLCV columns.

    Raises:
        DataError: naming the file, the line and the rule.
    """
    cols = [c.strip() for c in raw.columns]
    if cols != list(COLUMNS):
        hint = " (is the delimiter a comma?)" if len(cols) == 1 and len(cols[0]) > 12 else ""
        raise DataError(f"{path}: header: expected columns {','.join(COLUMNS)}; got {excerpt(','.join(cols), 120, plain=True)}{hint}")
    raw = raw.set_axis(cols, axis=1)
    if raw.empty:
        raise DataError(f"{path}: file has a header but no candles")

    ts_str, ts = parse_utc(path, raw["timestamp"], zone_required=False, example="2024-01-31T00:00:00Z", now=now)

    values = {}
    for c in COLUMNS[1:]:
        col = raw[c]
        v = col if col.dtype.kind == "f" else pd.to_numeric(col.str.strip(), errors="coerce")
        arr = v.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: line {line_of(i)}: {c} {excerpt(col.iloc[i])} is not a finite number; "
                            "missing candles must be left out, not written as empty/NaN")
        values[c] = arr

    o, h, lo, c, vol = (values[k] for k in ("open", "high", "low", "close", "volume"))
    checks = [
        ((np.minimum.reduce([o, h, lo, c]) <= 0), "prices must be > 0",
         lambda i: f"min(open, high, low, close) = {min(o[i], h[i], lo[i], c[i])}"),
        (vol < 0, "volume must be >= 0", lambda i: f"volume = {vol[i]}"),
        (h < lo, "high must be >= low", lambda i: f"high = {h[i]}, low = {lo[i]}"),
        ((h < np.maximum(o, c)) | (lo > np.minimum(o, c)), "need low <= open, close <= high",
         lambda i: f"open = {o[i]}, high = {h[i]}, low = {lo[i]}, close = {c[i]}"),
    ]
    for mask, rule, got in checks:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise DataError(f"{path}: line {line_of(i)}: {rule}; got {got(i)}")

    ns = check_increasing(path, ts_str, ts, what="candle")
    if timeframe is not None:
        check_aligned(path, ts_str, ns, TIMEFRAMES[timeframe],
                      to=f"{timeframe} candles; timestamps are candle open times")
    out = pd.DataFrame({"timestamp": ts.reset_index(drop=True)})
    for k in COLUMNS[1:]:
        out[k] = values[k]
    return out


def read_candles(path: Path | str, timeframe: str | None = None) -> pd.DataFrame:
    """Read and validate one candle file.

    Args:
        path: ``.csv`` or ``.csv.gz`` file.
        timeframe: expected timeframe (inferred from a ``<ASSET>_<TF>`` name when omitted).

    Returns:
        Validated candles (see :func:`validate_candles`).

    Raises:
        DataError: on the first violated rule.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {'is a folder, not a candle file' if path.is_dir() else 'no such file'}")
    if timeframe is None:
        tf = path.name.split(".csv")[0].rpartition("_")[2]
        timeframe = tf if tf in TIMEFRAMES else None
    raw, lines = _read_raw(path)
    with file_lines(lines):
        return validate_candles(raw, path, timeframe)


def resample(candles: pd.DataFrame, base_tf: str, target_tf: str) -> pd.DataFrame:
    """Aggregate candles to a coarser timeframe, keeping only complete buckets.

    Buckets start at multiples of ``target_tf`` from the Unix epoch (for 1d: 00:00 UTC),
    and the result is stamped with the bucket **open** time, as the source is. A bucket
    with any missing base candle is dropped rather than built from partial data (a
    partial daily candle would understate the range and volume), so gaps stay gaps.

    Args:
        candles: validated candles at ``base_tf``.
        base_tf: timeframe of ``candles``.
        target_tf: coarser timeframe; must be a whole multiple of ``base_tf``.

    Returns:
        Candles at ``target_tf``.
    """
    base, target = TIMEFRAMES[base_tf], TIMEFRAMES[target_tf]
    ratio, rem = divmod(target, base)
    if rem or ratio < 1:
        raise DataError(f"timeframe {target_tf} is not a whole multiple of {base_tf}")
    if ratio == 1:
        return candles.copy()
    bucket = candles["timestamp"].dt.floor(target)
    g = candles.groupby(bucket, sort=True)
    out = pd.DataFrame({
        "open": g["open"].first(),
        "high": g["high"].max(),
        "low": g["low"].min(),
        "close": g["close"].last(),
        "volume": g["volume"].sum(),
        "n": g["close"].size(),
    })
    out = out[out["n"] == ratio].drop(columns="n")
    out.index.name = "timestamp"
    return out.reset_index()


def fill_gaps(candles: pd.DataFrame, timeframe: str, *, limit: int) -> tuple[pd.DataFrame, int]:
    """Fill holes of at most ``limit`` missing candles with flat candles.

    A filled candle repeats the last close as open, high, low and close with zero volume:
    the market is assumed not to have moved, which is what a trader who could not trade
    would have seen. Only the past is used (forward fill), so nothing leaks. Longer holes
    are left alone and the window builder drops windows that span them.

    Args:
        candles: validated candles.
        timeframe: their timeframe.
        limit: the largest hole (in candles) to fill.

    Returns:
        ``(frame, filled_candles)``.
    """
    step = TIMEFRAMES[timeframe]
    ts = candles["timestamp"]
    gaps = ((ts.diff() // step) - 1).fillna(0).astype(int)
    small = gaps[(gaps > 0) & (gaps <= limit)]
    if small.empty:
        return candles, 0
    rows = []
    for i, n in small.items():
        prev_close = candles["close"].iloc[int(i) - 1]
        start = ts.iloc[int(i) - 1]
        for k in range(1, int(n) + 1):
            rows.append({"timestamp": start + k * step, "open": prev_close, "high": prev_close,
                         "low": prev_close, "close": prev_close, "volume": 0.0})
    out = pd.concat([candles, pd.DataFrame(rows)], ignore_index=True).sort_values("timestamp", kind="stable")
    return out.reset_index(drop=True), len(rows)


def incomplete_buckets(candles: pd.DataFrame, base_tf: str, target_tf: str) -> pd.Series:
    """Bucket open time → number of base candles present, for buckets :func:`resample` drops."""
    ratio = TIMEFRAMES[target_tf] // TIMEFRAMES[base_tf]
    n = candles.groupby(candles["timestamp"].dt.floor(TIMEFRAMES[target_tf])).size()
    return n[n < ratio]


@dataclass(frozen=True)
class Candles:
    """Validated candles of one (asset, timeframe) with where they came from."""

    asset: str
    timeframe: str
    frame: pd.DataFrame
    source: Path
    resampled_from: str | None
    gaps: GapReport


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime: float, timeframe: str) -> pd.DataFrame:
    return read_candles(Path(path), timeframe)


def load_candles(asset: str, timeframe: str, *, path: Path | str | None = None) -> Candles:
    """Load validated candles for one asset and timeframe.

    A native ``<ASSET>_<TF>`` file wins; otherwise the finest native timeframe that divides
    ``timeframe`` is resampled (e.g. 4h from 1h). Files are parsed once per process.

    Args:
        asset: e.g. ``BTC-USDT``.
        timeframe: key of :data:`TIMEFRAMES`.
        path: folder of candle files (default: the embedded set).

    Raises:
        DataError: unknown timeframe, no file for the asset, or an invalid file.
    """
    directory = Path(path) if path else EMBEDDED_DIR
    if timeframe not in TIMEFRAMES:
        raise DataError(f"timeframe {timeframe!r} is not supported; allowed: {', '.join(TIMEFRAMES)}")
    if not directory.is_dir():
        raise DataError(f"{directory}: data folder does not exist")
    src = candle_source(directory, asset, timeframe)
    if src is not None:
        f, tf = src
        frame = _load_cached(str(f.resolve()), f.stat().st_mtime, tf)
        resampled = None
        if tf != timeframe:
            frame = resample(frame, tf, timeframe)
            resampled = tf
        return Candles(asset, timeframe, frame, f, resampled, gap_report(frame["timestamp"], timeframe))
    have = available(directory)
    raise DataError(f"{directory}: no candles for {asset} {timeframe} (need {asset}_{timeframe}.csv[.gz] or a "
                    f"finer timeframe); found: {', '.join(f'{a} {tfs}' for a, tfs in have.items()) or 'nothing'}")

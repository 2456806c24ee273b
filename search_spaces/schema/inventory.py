"""The data inventory: which candle file serves an (asset, timeframe), and how many candles it holds.

Validation with ``context={"files": True}`` checks a spec against the candles it names
(assets, timeframes, horizon, lookback, warm-up, split dates). Those checks only need a
row count and the first and last timestamp of each file, so a file is read once per
process (cached by path, mtime and size) and never parsed into a frame here.
"""

from __future__ import annotations

import datetime as dt
import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from trainables.data.candles import TIMEFRAMES, candle_source


@lru_cache(maxsize=256)
def _scan(path: str, mtime: float, size: int) -> tuple[int, dt.datetime, dt.datetime] | None:
    """(rows, first timestamp, last timestamp) of a candle file, or None if unreadable."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:  # type: ignore[operator]
            data = fh.read()
        lines = data.strip().split(b"\n")
        if len(lines) < 2:
            return None

        def ts(line: bytes) -> dt.datetime:
            s = line.split(b",", 1)[0].decode().strip().replace("Z", "+00:00")
            t = dt.datetime.fromisoformat(s)
            return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)

        return len(lines) - 1, ts(lines[1]), ts(lines[-1])
    except (OSError, ValueError, EOFError, UnicodeDecodeError, gzip.BadGzipFile):
        return None  # the loader reports the exact problem (file, line, rule) at run time


@dataclass(frozen=True)
class Extent:
    """Candles of one (asset, timeframe) inside ``[data.start, data.end)``.

    Attributes:
        n: about how many candles (exact for a native file without a date range; otherwise
            the span divided by the timeframe, an upper bound as gaps are not subtracted).
        lo, hi: first and last candle inside the range.
        first, last: first and last candle of the file.
    """

    n: int
    lo: dt.datetime
    hi: dt.datetime
    first: dt.datetime
    last: dt.datetime

    def describe(self, asset: str, timeframe: str) -> str:
        """``BTC-USDT 1d has about 1,234 candles (2020-01-01..2023-05-18)``, for error messages."""
        return f"{asset} {timeframe} has about {self.n:,} candles ({self.lo:%Y-%m-%d}..{self.hi:%Y-%m-%d})"


def data_extent(directory: Path, asset: str, timeframe: str, start: dt.date | None = None,
                end: dt.date | None = None) -> Extent | None:
    """How much of (asset, timeframe) lies in ``[start, end)``; None when there is no readable file."""
    src = candle_source(directory, asset, timeframe)
    if src is None:
        return None
    f, native = src
    st = f.stat()
    info = _scan(str(f.resolve()), st.st_mtime, st.st_size)
    if info is None:
        return None
    rows, first, last = info
    step = TIMEFRAMES[timeframe].to_pytimedelta()
    lo = max(first, dt.datetime.combine(start, dt.time(), dt.timezone.utc)) if start else first
    hi = min(last, dt.datetime.combine(end, dt.time(), dt.timezone.utc) - step) if end else last
    if hi < lo:
        return Extent(0, lo, hi, first, last)
    n = int((hi - lo) // step) + 1
    if native == timeframe:
        n = rows if not (start or end) else min(n, rows)
    else:
        n = min(n, rows * TIMEFRAMES[native].to_pytimedelta() // step)
    return Extent(n, lo, hi, first, last)


def where(path: str | None) -> str:
    """Where the candles come from, for messages: ``in data/x`` or ``in the embedded candles``."""
    return f"in {path}" if path else "in the embedded candles"

"""The rules for a file's ``timestamp`` column, shared by candle files and metric tables.

One copy of: parsing ISO-8601 UTC date-times (fast path for the canonical format), the
1970 … now range, strictly increasing rows and alignment to a period. Every violation is a
one-line :class:`~trainables.errors.DataError` naming the file, the editor line and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.errors import DataError
from trainables.records import excerpt

#: The canonical timestamp format: what the embedded files hold and ``data fetch`` writes.
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Line 1 is the header, so data row 0 is line 2; messages use file lines so a user can
# jump straight to them in an editor.
_FIRST_LINE = 2
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
# A numeric zone offset at the end of a timestamp, and the ones that mean UTC.
_OFFSET = r"[+-]\d\d:?\d\d"
_UTC_OFFSET = r"[+-]00:?00"


#: Editor lines of the data rows of the file being validated, when it has blank lines (the
#: CSV reader skips them, so row i is then not line i + 2); set by :func:`file_lines`.
_LINES: ContextVar[np.ndarray | None] = ContextVar("_LINES", default=None)


def data_lines(raw: bytes) -> np.ndarray | None:
    """Editor lines (1-based) of the data rows of a CSV, or None when it has no blank line.

    Rows are the non-blank lines after the header (itself the first non-blank line), as
    the CSV reader sees them; blank lines are counted, so messages name the line an
    editor shows.
    """
    if b"\n\n" not in raw and b"\n\r\n" not in raw and raw[:1] not in (b"\n", b"\r"):
        return None
    nonblank = [i for i, line in enumerate(raw.split(b"\n"), start=1) if line.strip()]
    return np.array(nonblank[1:], dtype=np.int64)


@contextmanager
def file_lines(lines: np.ndarray | None) -> Iterator[None]:
    """Within the block, :func:`line_of` maps rows to ``lines`` (from :func:`data_lines`)."""
    token = _LINES.set(lines)
    try:
        yield
    finally:
        _LINES.reset(token)


def line_of(row: int) -> int:
    """The editor line of data row ``row`` (0-based, after the header line; blank lines counted)."""
    lines = _LINES.get()
    if lines is not None and 0 <= int(row) < len(lines):
        return int(lines[int(row)])
    return int(row) + _FIRST_LINE


def _first(mask: pd.Series | np.ndarray) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _check_zones(path: Path | str, ts_str: pd.Series, *, zone_required: bool, example: str) -> None:
    """Reject offsets other than UTC (and, when ``zone_required``, timestamps without a zone)."""
    if zone_required:
        utc = ts_str.str.contains(rf"(?:Z|{_UTC_OFFSET})$", regex=True)
        if utc.all():
            return
        i = _first(~utc.to_numpy())
        why = "is not UTC" if re.search(_OFFSET + "$", ts_str.iloc[i]) else "has no time zone"
        raise DataError(f"{path}: line {line_of(i)}: timestamp {excerpt(ts_str.iloc[i])} {why}; "
                        f"write every timestamp in UTC, e.g. {example}")
    # Candle files have always accepted a zone-less time as UTC; only a real offset is wrong.
    offset = ts_str.str.extract(f"({_OFFSET})$", expand=False)
    bad = offset.notna() & ~offset.fillna("").str.fullmatch(_UTC_OFFSET)
    if bad.any():
        i = _first(bad.to_numpy())
        raise DataError(f"{path}: line {line_of(i)}: timestamp {excerpt(ts_str.iloc[i])} is not UTC; "
                        "write every timestamp in UTC ('...Z')")


def parse_utc(path: Path | str, ts_str: pd.Series, *, zone_required: bool, example: str,
              now: pd.Timestamp | None = None) -> tuple[pd.Series, pd.Series]:
    """Parse a column of ISO-8601 UTC timestamps and check they lie between 1970 and ``now``.

    Args:
        path: the file, for messages.
        ts_str: the timestamps as written.
        zone_required: a timestamp without a zone (``Z`` or ``+00:00``) is an error; when
            False it is taken as UTC.
        example: a valid timestamp quoted in the messages' hints.
        now: the clock for the future check (default: current UTC time).

    Returns:
        ``(ts_str, ts)``: the strings as quoted in later messages (stripped when the fast
        path failed) and the parsed UTC timestamps (pandas' unit is kept).

    Raises:
        DataError: another offset than UTC, no zone (when required), not a date-time, before
            1970 or in the future; naming the first such line.
    """
    # Fast path: the canonical format parses ~10x faster with an explicit format and
    # implies UTC ('Z'). Only when it fails do we pay for the general parser and the
    # per-row checks that name the offending line.
    ts = pd.to_datetime(ts_str, utc=True, errors="coerce", format=TS_FORMAT)
    if ts.isna().any():
        ts_str = ts_str.str.strip()
        _check_zones(path, ts_str, zone_required=zone_required, example=example)
        ts = pd.to_datetime(ts_str, utc=True, errors="coerce", format="ISO8601")
    if ts.isna().any():
        i = _first(ts.isna().to_numpy())
        raise DataError(f"{path}: line {line_of(i)}: timestamp {excerpt(ts_str.iloc[i])} is not an ISO-8601 "
                        f"date-time; use e.g. {example}")
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    # Range checks come before any conversion to nanoseconds: a mistyped year (2999) is
    # outside datetime64[ns] and must be a DataError, not an overflow later.
    for mask, rule in ((ts > now, f"is in the future (now {now:%Y-%m-%dT%H:%MZ}); check the time zone or the clock"),
                       (ts < _EPOCH, "is before 1970; check the year")):
        if mask.any():
            i = _first(mask.to_numpy())
            raise DataError(f"{path}: line {line_of(i)}: timestamp {excerpt(ts_str.iloc[i], plain=True)} {rule}")
    return ts_str, ts


def check_increasing(path: Path | str, ts_str: pd.Series, ts: pd.Series, *, what: str) -> np.ndarray:
    """Require strictly increasing timestamps; return them as int64 ns.

    Args:
        path: the file, for messages.
        ts_str: the timestamps as written (quoted in messages).
        ts: the parsed timestamps.
        what: what one row is ("candle", "period"), for messages.

    Raises:
        DataError: a duplicate or an out-of-order row, naming its line.
    """
    ns = ts.dt.as_unit("ns").astype("int64").to_numpy()
    d = np.diff(ns)
    if (d == 0).any():
        i = _first(d == 0) + 1
        raise DataError(f"{path}: line {line_of(i)}: duplicate timestamp {excerpt(ts_str.iloc[i], plain=True)}; "
                        f"each {what} must appear once")
    if (d < 0).any():
        i = _first(d < 0) + 1
        raise DataError(f"{path}: line {line_of(i)}: timestamp {excerpt(ts_str.iloc[i], plain=True)} is earlier than the "
                        f"line before ({ts_str.iloc[i - 1]}); sort the file by timestamp")
    return ns


def check_aligned(path: Path | str, ts_str: pd.Series, ns: np.ndarray, step: pd.Timedelta, *, to: str) -> None:
    """Require every timestamp (int64 ns) to be a multiple of ``step`` from the Unix epoch.

    Args:
        path: the file, for messages.
        ts_str: the timestamps as written (quoted in messages).
        ns: the parsed timestamps as int64 ns.
        step: the grid.
        to: what the grid is, completing "is not aligned to ...", e.g.
            ``"1h candles; timestamps are candle open times"``.

    Raises:
        DataError: naming the first misaligned line.
    """
    mis = ns % step.value != 0
    if mis.any():
        i = _first(mis)
        raise DataError(f"{path}: line {line_of(i)}: timestamp {excerpt(ts_str.iloc[i].strip(), plain=True)} is not aligned to {to}")

"""Metric tables (on-chain, funding rates): read and validate.

Two kinds of file are read:

* **wide metric tables** — ``timestamp`` plus one column per metric (e.g. the Glassnode
  style ``addresses/active_count``), one row per period (daily or 8-hourly). An empty
  cell means "no value for that period". A row stamped ``T`` with period ``P`` *covers*
  ``[T, T + P)``: a daily row stamped 2021-01-05T00:00Z summarises all of 5 January, so
  it cannot be known before 2021-01-06T00:00Z (its ``publish_lag`` is ``P``).
* **funding-rate files** — ``timestamp,funding_rate[,source]``, one row per settlement.
  A rate stamped at settlement time ``T`` is final (and published) at ``T``.

Both become a :class:`MetricTable`; :mod:`trainables.data.asof` puts them on the candle
grid without look-ahead and :mod:`trainables.features.table_indicators` turns their
columns into indicators.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainables.data.candles import TIMEFRAMES
from trainables.data.timestamps import check_aligned, check_increasing, line_of, parse_utc
from trainables.errors import DataError
from trainables.records import MAX_BYTES, decode, excerpt, inflate, read_bytes

_DAY = pd.Timedelta(days=1)
# Columns of a funding-rate file: ``source`` (which repository/download a row came from)
# is optional and ignored.
FUNDING_COLUMNS: tuple[str, ...] = ("timestamp", "funding_rate")


@dataclass(frozen=True)
class MetricTable:
    """A validated metric file.

    Attributes:
        path: where it was read from.
        frame: ``timestamp`` (UTC, ascending, unique) plus one float64 column per metric;
            NaN = no value.
        period: spacing of the rows (the smallest step between timestamps, or as given).
        publish_lag: how long after its stamp a row becomes known: ``period`` for tables
            whose rows summarise a period, 0 for point-in-time values (funding rates).
    """

    path: Path
    frame: pd.DataFrame
    period: pd.Timedelta
    publish_lag: pd.Timedelta

    @property
    def columns(self) -> list[str]:
        """Metric column names (everything but ``timestamp``)."""
        return [c for c in self.frame.columns if c != "timestamp"]


def _gunzip(path: Path, data: bytes) -> bytes:
    """Decompress every gzip member (:func:`trainables.records.inflate`); a truncated or
    corrupt stream names the last good line."""
    out, problem = inflate(data, limit=MAX_BYTES)
    if problem == "limit":
        raise DataError(f"{path}: expands to more than {MAX_BYTES:,} bytes when decompressed; refused")
    if problem is not None:
        good = out.count(b"\n")
        what = (f"truncated (it ends after line {good})" if problem == "truncated"
                else f"corrupt ({problem.removeprefix('corrupt: ')})")
        raise DataError(f"{path}: line {good + 1}: gzip stream is {what}; re-download or re-compress the file")
    return out


def _read_text(path: Path, expected: str) -> str:
    """Read a ``.csv``/``.csv.gz`` file as UTF-8 text; decoder failures become one-line DataErrors."""
    if not path.is_file():
        raise DataError(f"{path}: {'is a folder, not a table file' if path.is_dir() else 'no such file'}")
    data = read_bytes(path, error=DataError, decompress=False)  # size-capped
    if not data:
        raise DataError(f"{path}: line 1: file is empty; expected a header line {expected}")
    if data[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        data = _gunzip(path, data)
    text = decode(data, path=path, error=DataError)  # names the exact line and byte
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").rstrip("\n")
    if not text.strip():
        raise DataError(f"{path}: line 1: file is empty; expected a header line {expected}")
    return text


def _split_table(path: Path, text: str, expected: str) -> list[str]:
    """Check the header and every row's field count; return the column names."""
    lines = text.split("\n")
    header = next(csv.reader([lines[0]]))
    names = [h.strip() for h in header]
    if not names or names[0] != "timestamp" or len(names) < 2:
        hint = ""
        if len(names) == 1 and any(d in names[0] for d in ";\t|"):
            hint = " (is the delimiter a comma?)"
        raise DataError(f"{path}: line 1: header: expected {expected}; got {excerpt(lines[0], 80)}{hint}")
    bad = [n for n in names if not n]
    if bad:
        raise DataError(f"{path}: line 1: header: column {names.index('') + 1} has no name")
    dup = pd.Index(names)[pd.Index(names).duplicated()]
    if len(dup):
        raise DataError(f"{path}: line 1: header: column {dup[0]!r} appears more than once")
    if len(lines) == 1:
        raise DataError(f"{path}: line 2: file has a header but no rows")
    # Field counts per line, vectorised: a short row would otherwise read as empty cells
    # (= "no value"), silently turning a truncated row into missing data. Quoted fields
    # are not used by these files; lines with quotes are left to the CSV parser.
    body = pd.Series(lines[1:])
    fields = body.str.count(",") + 1
    wrong = (fields != len(names)) & ~body.str.contains('"', regex=False)
    if wrong.any():
        i = int(np.flatnonzero(wrong.to_numpy())[0])
        what = "is blank" if not body.iloc[i].strip() else f"has {fields.iloc[i]} fields"
        raise DataError(f"{path}: line {line_of(i)}: row {what}; the header has {len(names)} "
                        "(every row needs one value or an empty cell per column)")
    return names


def _csv(path: Path, text: str, names: list[str], **kw: Any) -> pd.DataFrame:
    try:
        raw = pd.read_csv(io.StringIO(text), keep_default_na=False, skip_blank_lines=False, **kw)
    except pd.errors.ParserError as e:
        msg = str(e).splitlines()[0]
        m = re.search(r"line (\d+)", msg)
        where = f"line {m.group(1)}: " if m else ""
        raise DataError(f"{path}: {where}not a valid CSV ({msg})") from None
    return raw.set_axis(names, axis=1)


def _read_frame(path: Path, text: str, names: list[str], numeric: list[str], *,
                allow_empty: bool) -> tuple[pd.Series, dict[str, np.ndarray]]:
    """Timestamp strings and the numeric columns as float64 (empty cell → NaN if allowed)."""
    # Fast path: the C parser converts numbers directly. Text such as "nan" or "abc" makes
    # it raise, an infinite or (when not allowed) empty value shows up after; either way
    # the string path below finds and describes the first bad cell.
    try:
        f = _csv(path, text, names, dtype={c: (np.float64 if c in numeric else str) for c in names},
                 na_values={c: [""] for c in numeric})
        vals = f[numeric].to_numpy(dtype=np.float64)
        if (np.isfinite(vals) | (np.isnan(vals) if allow_empty else False)).all():
            return f["timestamp"], {c: f[c].to_numpy(dtype=np.float64) for c in numeric}
    except ValueError:
        pass
    raw = _csv(path, text, names, dtype=str)
    return raw["timestamp"], _parse_numbers(path, raw, numeric, allow_empty=allow_empty)


def _parse_timestamps(path: Path, ts_str: pd.Series, *,
                      now: pd.Timestamp | None) -> tuple[pd.Series, pd.Series]:
    """Parse UTC ISO timestamps; check sorted, unique, not in the future.

    Returns:
        ``(ts_str, ts)``: the strings as quoted in messages and the times in ns, indexed 0..n-1.
    """
    ts_str, ts = parse_utc(path, ts_str, zone_required=True, example="2021-01-05T00:00:00Z", now=now)
    ts = ts.dt.as_unit("ns")
    check_increasing(path, ts_str, ts, what="period")
    return ts_str, ts.reset_index(drop=True)


def _check_aligned(path: Path, ts_str: pd.Series, ts: pd.Series, period: pd.Timedelta) -> None:
    """Rows must start on the period grid (e.g. daily rows at 00:00 UTC).

    Only checked where the grid is well defined from the epoch (periods dividing a day); a
    daily row stamped 12:00 would break the "row D covers day D" publication rule.
    """
    if period > _DAY or _DAY % period != pd.Timedelta(0):
        return
    check_aligned(path, ts_str, ts.astype("int64").to_numpy(), period,
                  to=f"the table's {_fmt_td(period)} period (rows are stamped at period start, UTC)")


def _fmt_td(td: pd.Timedelta) -> str:
    for k, v in TIMEFRAMES.items():
        if v == td:
            return k
    return str(td)


def _infer_period(path: Path, ts: pd.Series, period: pd.Timedelta | None) -> pd.Timedelta:
    if period is not None:
        if period <= pd.Timedelta(0):
            raise DataError(f"{path}: period must be positive; got {period}")
        return period
    if len(ts) < 2:
        raise DataError(f"{path}: line 2: cannot infer the period from a single row; pass period=")
    return pd.Timedelta(int(np.diff(ts.astype("int64").to_numpy()).min()), unit="ns")


def _parse_numbers(path: Path, raw: pd.DataFrame, columns: Sequence[str], *,
                   allow_empty: bool) -> dict[str, np.ndarray]:
    """Columns → float64 arrays; empty cells → NaN when allowed; anything else must be a finite number."""
    out: dict[str, np.ndarray] = {}
    first_bad: tuple[int, int, str] | None = None  # (row, column position, column)
    for pos, c in enumerate(columns):
        s = raw[c].str.strip()
        v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        empty = (s == "").to_numpy()
        # Text "nan"/"inf" parse as numbers but are not values: "no value" is an empty cell.
        bad = ~np.isfinite(v) & (~empty if allow_empty else True)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            if first_bad is None or i < first_bad[0]:
                first_bad = (i, pos, c)
        out[c] = v
    if first_bad is not None:
        i, _, c = first_bad
        rule = ("is not a finite number; leave the cell empty when there is no value" if allow_empty
                else "is not a finite number; leave out rows that have no value")
        raise DataError(f"{path}: line {line_of(i)}: column {excerpt(c)}: value {excerpt(raw[c].iloc[i])} {rule}")
    return out


def read_metric_table(path: Path | str, *, period: pd.Timedelta | None = None,
                      now: pd.Timestamp | None = None) -> MetricTable:
    """Read and validate a wide metric table (``timestamp`` + one column per metric).

    Rules, in order: readable UTF-8 (optionally gzip); header starts with ``timestamp``,
    has at least one metric column, no empty or duplicate names; every row has one field
    per column; timestamps are ISO-8601 in UTC, strictly increasing, aligned to the period
    and not in the future; every cell is a finite number or empty (= no value).

    Args:
        path: ``.csv`` or ``.csv.gz`` file.
        period: what one row covers (default: the smallest step between rows, e.g. 1 day).
        now: clock for the future check (default: current UTC time).

    Returns:
        A :class:`MetricTable` whose rows become known ``period`` after their stamp.

    Raises:
        DataError: one line naming the file, the line and the rule.
    """
    path = Path(path)
    expected = "timestamp,<metric>,<metric>,..."
    text = _read_text(path, expected)
    names = _split_table(path, text, expected)
    ts_str, values = _read_frame(path, text, names, names[1:], allow_empty=True)
    ts_str, ts = _parse_timestamps(path, ts_str, now=now)
    per = _infer_period(path, ts, period)
    _check_aligned(path, ts_str, ts, per)
    frame = pd.concat([pd.DataFrame({"timestamp": ts}), pd.DataFrame(values)], axis=1)
    return MetricTable(path, frame, per, per)


def read_funding_rates(path: Path | str, *, now: pd.Timestamp | None = None) -> MetricTable:
    """Read and validate a funding-rate file (``timestamp,funding_rate[,source]``).

    Timestamps are settlement times; a rate is final at its settlement, so the table's
    ``publish_lag`` is 0. Missing settlements must be left out (no empty rates).

    Args:
        path: ``.csv`` or ``.csv.gz`` file.
        now: clock for the future check (default: current UTC time).

    Returns:
        A :class:`MetricTable` with the single metric ``funding_rate`` (a fraction per
        settlement, e.g. 0.0001 = 0.01 %).

    Raises:
        DataError: one line naming the file, the line and the rule.
    """
    path = Path(path)
    expected = "timestamp,funding_rate[,source]"
    text = _read_text(path, expected)
    names = _split_table(path, text, expected)
    if names[:2] != list(FUNDING_COLUMNS) or len(names) > 3 or (len(names) == 3 and names[2] != "source"):
        raise DataError(f"{path}: line 1: header: expected {expected}; got {','.join(names)}")
    ts_str, values = _read_frame(path, text, names, ["funding_rate"], allow_empty=False)
    ts_str, ts = _parse_timestamps(path, ts_str, now=now)
    per = _infer_period(path, ts, None)
    frame = pd.DataFrame({"timestamp": ts, "funding_rate": values["funding_rate"]})
    return MetricTable(path, frame, per, pd.Timedelta(0))

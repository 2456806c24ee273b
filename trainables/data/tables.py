"""Metric tables (on-chain, funding rates) aligned to candles without look-ahead.

Two kinds of file are read:

* **wide metric tables** — ``timestamp`` plus one column per metric (e.g. the Glassnode
  style ``addresses/active_count``), one row per period (daily or 8-hourly). An empty
  cell means "no value for that period". A row stamped ``T`` with period ``P`` *covers*
  ``[T, T + P)``: a daily row stamped 2021-01-05T00:00Z summarises all of 5 January, so
  it cannot be known before 2021-01-06T00:00Z.
* **funding-rate files** — ``timestamp,funding_rate[,source]``, one row per settlement.
  A rate stamped at settlement time ``T`` is final (and published) at ``T``.

:func:`align_to_candles` puts each metric on the candle grid **as of the candle's close**,
using only values already published then; :func:`attach_metrics` is the single entry
point that reads the files, aligns them and adds the columns ``m:<metric>`` to a candle
frame. The metric-derived indicators (``funding_rate``, ``funding_rate_change``,
``gn_<metric>``, ``gn_<metric>_change``, ``gn_<metric>_logchange``) read those columns.
They are registered on demand — by :func:`attach_metrics` or, for spec validation before
any data is loaded, :func:`register_metric_indicators` — never at import, so the registry
holds only candle indicators unless metrics are in use. Code that enumerates the registry
to featurise plain candles should skip names in :data:`METRIC_INDICATORS`.

NaN policy: a metric feature is NaN where the metric has no value yet, has an empty cell,
or its latest value is older than the staleness limit (e.g. the 2023-06 → 2024-12 hole
in the vendored funding rates). Nothing is filled here on purpose: **the dataset builder
must drop rows with a NaN in any pool column** (pool-wide, not per trial, so that every
trial of an (asset, timeframe) still sees the same rows). Filling would invent values.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainables.data.candles import TIMEFRAMES, check_increasing
from trainables.errors import DataError, TunefactoryError
from trainables.features.indicators import INDICATORS, register

# Line 1 is the header; the first data row is line 2 (messages use editor line numbers).
_FIRST_LINE = 2
_DAY = pd.Timedelta(days=1)
_ZERO = pd.Timedelta(0)
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
# Columns of a funding-rate file: ``source`` (which repository/download a row came from)
# is optional and ignored.
FUNDING_COLUMNS: tuple[str, ...] = ("timestamp", "funding_rate")
#: Prefix of aligned metric columns in a candle frame (``m:funding_rate``).
METRIC_PREFIX = "m:"
#: Indicator name → the aligned column (``m:...``) it reads. Lets callers tell metric-
#: derived indicators from candle indicators (e.g. the featurisation benchmark).
METRIC_INDICATORS: dict[str, str] = {}


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


# --------------------------------------------------------------------------- reading


def _gunzip(path: Path, data: bytes) -> bytes:
    """Decompress every gzip member; a truncated or corrupt stream names the last good line."""
    out: list[bytes] = []
    while data:
        d = zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(data))
        except zlib.error as e:
            line = b"".join(out).count(b"\n") + 1
            raise DataError(f"{path}: line {line}: gzip stream is corrupt ({e}); "
                            "re-download or re-compress the file") from None
        if not d.eof:
            good = b"".join(out).count(b"\n")
            raise DataError(f"{path}: line {good + 1}: gzip stream is truncated (it ends after line {good}); "
                            "re-download or re-compress the file")
        # Like the gzip module: more members may follow; trailing zero padding is ignored.
        data = d.unused_data.lstrip(b"\x00")
    return b"".join(out)


def _read_text(path: Path, expected: str) -> str:
    """Read a ``.csv``/``.csv.gz`` file as UTF-8 text; decoder failures become one-line DataErrors."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path}: line 1: file is empty; expected a header line {expected}")
    if data[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        data = _gunzip(path, data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}: line {line}: byte {e.start} is not UTF-8 text ({e.reason}); "
                        "save the file as UTF-8") from None
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
        raise DataError(f"{path}: line 1: header: expected {expected}; got {lines[0][:80]!r}{hint}")
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
        raise DataError(f"{path}: line {i + _FIRST_LINE}: row {what}; the header has {len(names)} "
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


def _parse_timestamps(path: Path, ts_str: pd.Series, *, now: pd.Timestamp | None) -> pd.Series:
    """Parse UTC ISO timestamps; check sorted, unique, not in the future."""
    ts_str = ts_str.str.strip()
    utc = ts_str.str.contains(r"(?:Z|[+-]00:?00)$", regex=True)
    if not utc.all():
        i = int(np.flatnonzero(~utc.to_numpy())[0])
        offset = re.search(r"[+-]\d\d:?\d\d$", ts_str.iloc[i])
        why = "is not UTC" if offset else "has no time zone"
        raise DataError(f"{path}: line {i + _FIRST_LINE}: timestamp {ts_str.iloc[i]!r} {why}; "
                        "write every timestamp in UTC, e.g. 2021-01-05T00:00:00Z")
    # Fast path for what we write; anything else ISO-like goes through the general parser.
    ts = pd.to_datetime(ts_str, utc=True, errors="coerce", format="%Y-%m-%dT%H:%M:%SZ")
    if ts.isna().any():
        ts = pd.to_datetime(ts_str, utc=True, errors="coerce", format="ISO8601")
    if ts.isna().any():
        i = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise DataError(f"{path}: line {i + _FIRST_LINE}: timestamp {ts_str.iloc[i]!r} is not an ISO-8601 "
                        "date-time; use e.g. 2021-01-05T00:00:00Z")
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    # Range checks come before the conversion to nanoseconds: a mistyped year (2999) is
    # outside datetime64[ns] and would otherwise crash with a traceback.
    early = (ts < _EPOCH).to_numpy()
    if early.any():
        i = int(np.flatnonzero(early)[0])
        raise DataError(f"{path}: line {i + _FIRST_LINE}: timestamp {ts_str.iloc[i]} is before 1970; check the year")
    fut = (ts > now).to_numpy()
    if fut.any():
        i = int(np.flatnonzero(fut)[0])
        raise DataError(f"{path}: line {i + _FIRST_LINE}: timestamp {ts_str.iloc[i]} is in the future "
                        f"(now {now:%Y-%m-%dT%H:%MZ}); check the time zone or the clock")
    ts = ts.dt.as_unit("ns")
    check_increasing(path, ts_str, ts, what="period")
    return ts.reset_index(drop=True)


def _check_aligned(path: Path, ts_str: pd.Series, ts: pd.Series, period: pd.Timedelta) -> None:
    """Rows must start on the period grid (e.g. daily rows at 00:00 UTC).

    Only checked where the grid is well defined from the epoch (periods dividing a day); a
    daily row stamped 12:00 would break the "row D covers day D" publication rule.
    """
    if period > _DAY or _DAY % period != pd.Timedelta(0):
        return
    mis = ts.astype("int64").to_numpy() % period.value != 0
    if mis.any():
        i = int(np.flatnonzero(mis)[0])
        raise DataError(f"{path}: line {i + _FIRST_LINE}: timestamp {ts_str.iloc[i].strip()} is not aligned "
                        f"to the table's {_fmt_td(period)} period (rows are stamped at period start, UTC)")


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
        raise DataError(f"{path}: line {i + _FIRST_LINE}: column {c!r}: value {raw[c].iloc[i]!r} {rule}")
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
    ts = _parse_timestamps(path, ts_str, now=now)
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
    ts = _parse_timestamps(path, ts_str, now=now)
    per = _infer_period(path, ts, None)
    frame = pd.DataFrame({"timestamp": ts, "funding_rate": values["funding_rate"]})
    return MetricTable(path, frame, per, pd.Timedelta(0))


# --------------------------------------------------------------------------- alignment


def _as_ns(timestamps: Any, what: str) -> np.ndarray:
    idx = pd.DatetimeIndex(timestamps)
    if idx.tz is None:
        raise DataError(f"{what}: timestamps must be time-zone aware (UTC)")
    return idx.tz_convert("UTC").as_unit("ns").asi8


def align_to_candles(metric_frame: pd.DataFrame, candle_timestamps: pd.Series | pd.DatetimeIndex,
                     candle_timeframe: str | pd.Timedelta, *, metric_period: pd.Timedelta,
                     staleness: pd.Timedelta, delay: pd.Timedelta = _ZERO,
                     column_block: int = 32) -> pd.DataFrame:
    """Each metric's latest published value as of each candle's close.

    Availability rule (the look-ahead guard): a metric row stamped ``T`` becomes known at
    ``T + metric_period + delay`` — a daily row stamped day D 00:00 covers all of day D, so
    it is known only at D+1 00:00 (``metric_period`` = 1 day); a funding rate stamped at
    its settlement ``T`` is known at ``T`` (``metric_period`` = 0). A candle opening at
    ``t`` closes at ``t + tf``; its feature is the latest value whose availability time is
    ``<= t + tf``. Equality counts: the 1d candle opening at D closes at D+1 00:00, the
    instant day D's row is complete, so that candle is the first to carry day D's value;
    every candle closing earlier (the 1h candle 22:00-23:00 of day D, the 1d candle of
    D-1) carries D-1's value at best. Use ``delay`` to model a vendor's publication latency
    (e.g. ``delay=1h`` moves day D's value to the first candle closing at or after D+1 01:00).

    Per metric, empty cells are skipped (the latest non-empty value is used), but only
    within ``staleness``: a value known for longer than that at the candle's close gives
    NaN rather than being carried forward indefinitely.

    Args:
        metric_frame: ``timestamp`` (UTC, ascending) + float metric columns, NaN = no value.
        candle_timestamps: candle **open** times (UTC).
        candle_timeframe: key of :data:`trainables.data.candles.TIMEFRAMES` or a Timedelta.
        metric_period: publication lag implied by the stamp (see above).
        staleness: oldest a value may be (since it became known) and still be used.
        delay: extra vendor latency on top of ``metric_period`` (default 0).
        column_block: metrics aligned per block, bounding memory to ``n_candles × block``.

    Returns:
        Frame with the metric columns (no prefix), one row per candle, in candle order,
        indexed like ``candle_timestamps`` when it is a Series.
    """
    tf = TIMEFRAMES[candle_timeframe] if isinstance(candle_timeframe, str) else pd.Timedelta(candle_timeframe)
    cols = [c for c in metric_frame.columns if c != "timestamp"]
    index = candle_timestamps.index if isinstance(candle_timestamps, pd.Series) else None
    closes = _as_ns(candle_timestamps, "candles") + tf.value
    stamps = _as_ns(metric_frame["timestamp"], "metric table")
    if len(stamps) > 1 and (np.diff(stamps) <= 0).any():
        raise DataError("metric table: timestamps must be strictly increasing")
    # Shift every row to the moment it became public. Comparing candle *closes* with these
    # times means a feature never uses a value published after its candle closed, i.e.
    # after the moment the model would be asked for a prediction.
    avail = stamps + (pd.Timedelta(metric_period) + pd.Timedelta(delay)).value
    # Index of the last metric row already public at each candle close (-1: none yet).
    j = np.searchsorted(avail, closes, side="right") - 1
    has_row = j >= 0
    jj = np.where(has_row, j, 0)
    limit = pd.Timedelta(staleness).value
    out = np.full((len(closes), len(cols)), np.nan)
    values = metric_frame[cols].to_numpy(dtype=np.float64) if cols else np.zeros((len(stamps), 0))
    rows = np.arange(len(stamps))[:, None]
    for lo in range(0, len(cols), column_block):
        v = values[:, lo:lo + column_block]
        # Per metric row and column: the last row at or before it with a value (-1: none),
        # so an empty cell falls back to the previous value (then judged by its own age).
        last = np.where(np.isnan(v), -1, rows)
        np.maximum.accumulate(last, axis=0, out=last)
        src = last[jj]                                   # (n_candles, block) metric row used
        ok = has_row[:, None] & (src >= 0)
        srcc = np.where(ok, src, 0)
        age = closes[:, None] - avail[srcc]              # ns since the value became public
        ok &= age <= limit
        picked = np.take_along_axis(v, srcc, axis=0) if len(v) else np.zeros_like(srcc, dtype=float)
        out[:, lo:lo + column_block] = np.where(ok, picked, np.nan)
    return pd.DataFrame(out, columns=cols, index=index)


# --------------------------------------------------------------------------- indicators


def metric_indicator_name(column: str, *, prefix: str = "gn") -> str:
    """Registry name for a metric column: ``addresses/active_count`` → ``gn_addresses_active_count``."""
    core = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")
    return f"{prefix}_{core}" if prefix else core


def _metric_values(frame: pd.DataFrame, column: str, name: str) -> np.ndarray:
    if column not in frame.columns:
        raise TunefactoryError(f"indicator {name!r} needs the column {column!r}; attach the metric file with "
                               "trainables.data.tables.attach_metrics(...) before computing features")
    return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)


def _check_lag(name: str, lag: Any) -> int:
    if int(lag) != lag or int(lag) < 1:
        raise TunefactoryError(f"indicator {name!r}: lag must be a whole number >= 1; got {lag!r}")
    return int(lag)


def register_metric(name: str, column: str, *, log_change: bool = False, doc: str = "") -> list[str]:
    """Register the indicators of one aligned metric column.

    Creates ``name`` (the level), ``name_change`` (difference over ``lag`` candles) and,
    when ``log_change``, ``name_logchange`` (``ln(x_t / x_{t-lag})``, NaN where a value is
    <= 0). Differences are defined for any sign; the log ratio is the scale-free change of
    a positive quantity (counts, prices, caps, ratios). Which one a metric gets never
    depends on the data values, so an indicator name means the same thing in every
    process, whatever tables were attached before. ``lag`` counts candles, not metric
    periods: a daily metric on 1h candles changes once per 24 rows.

    Features are NaN where the metric is missing or stale; see the module docstring.

    Args:
        name: base registry name (lowercase letters, digits, ``_``).
        column: metric name as in the table (the frame column is ``m:<column>``).
        log_change: also register ``name_logchange``.
        doc: what the metric is, for ``tunefactory indicators``.

    Returns:
        The registered indicator names.

    Raises:
        TunefactoryError: bad name, or the name belongs to another indicator/column.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise TunefactoryError(f"metric indicator name {name!r} must be lowercase letters, digits and _")
    frame_col = METRIC_PREFIX + column
    names = [name, f"{name}_change"] + ([f"{name}_logchange"] if log_change else [])
    for n in names:
        if n in INDICATORS and METRIC_INDICATORS.get(n) != frame_col:
            owner = METRIC_INDICATORS.get(n, "a candle indicator")
            raise TunefactoryError(f"indicator {n!r} already exists (reads {owner}); cannot register it for "
                                   f"{frame_col!r}; pick another prefix")
    what = doc or column

    def level(f: pd.DataFrame) -> np.ndarray:
        return _metric_values(f, frame_col, name).copy()

    def change(f: pd.DataFrame, *, lag: int = 1) -> np.ndarray:
        lag = _check_lag(f"{name}_change", lag)
        x = _metric_values(f, frame_col, f"{name}_change")
        out = np.full(len(x), np.nan)
        out[lag:] = x[lag:] - x[:-lag]
        return out

    def logchange(f: pd.DataFrame, *, lag: int = 1) -> np.ndarray:
        lag = _check_lag(f"{name}_logchange", lag)
        x = _metric_values(f, frame_col, f"{name}_logchange")
        with np.errstate(divide="ignore", invalid="ignore"):
            lx = np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)
        out = np.full(len(x), np.nan)
        out[lag:] = lx[lag:] - lx[:-lag]
        return out

    register(name, warmup=lambda p: 0, doc=f"{what}: latest published value (NaN if missing/stale)")(level)
    register(f"{name}_change", lag=1, warmup=lambda p: int(p["lag"]),
             doc=f"{what}: x_t - x_(t-lag), lag in candles")(change)
    if log_change:
        register(f"{name}_logchange", lag=1, warmup=lambda p: int(p["lag"]),
                 doc=f"{what}: ln(x_t / x_(t-lag)), lag in candles; NaN where x <= 0")(logchange)
    for n in names:
        METRIC_INDICATORS[n] = frame_col
    return names


def register_metric_table(table: MetricTable | Path | str, *, prefix: str = "gn") -> dict[str, str]:
    """Register level/change(/logchange) indicators for every column of a wide metric table.

    ``*_logchange`` is registered for columns that never go negative in the table
    (quantities: counts, sums, prices, ratios); signed metrics (net flows, NUPL, z-scores)
    get level and difference only. Registering again (another asset's table) is harmless:
    the indicators' definitions do not depend on the values.

    Args:
        table: a :class:`MetricTable` or a path to read with :func:`read_metric_table`.
        prefix: registry prefix (``gn`` for Glassnode-style tables).

    Returns:
        Metric column → base indicator name.

    Raises:
        DataError: two columns sanitise to the same indicator name, or an invalid file.
    """
    t = table if isinstance(table, MetricTable) else read_metric_table(table)
    names: dict[str, str] = {}
    seen: dict[str, str] = {}
    for c in t.columns:
        n = metric_indicator_name(c, prefix=prefix)
        if n in seen:
            raise DataError(f"{t.path}: line 1: columns {seen[n]!r} and {c!r} both map to indicator {n!r}")
        seen[n] = c
        names[c] = n
    for c, n in names.items():
        nonneg = bool((t.frame[c].dropna() >= 0).all())
        register_metric(n, c, log_change=nonneg)
    return names


def register_funding_indicators() -> list[str]:
    """Register ``funding_rate`` (level) and ``funding_rate_change`` (difference, param ``lag``).

    Funding rates are signed (negative when shorts pay longs), so there is no log change.
    """
    return register_metric("funding_rate", "funding_rate", log_change=False,
                           doc="perpetual funding rate per settlement (fraction)")


def register_metric_indicators(*, funding: bool = False, metric_files: Iterable[Path | str] = (),
                               prefix: str = "gn") -> list[str]:
    """Register the metric-derived indicators a spec may name, before any data is attached.

    Nothing is registered at import: the registry then holds candle indicators only, so code
    that enumerates :data:`~trainables.features.indicators.INDICATORS` to featurise a plain candle
    frame keeps working. Call this when a spec declares metric sources (so the spec
    validator knows the names); :func:`attach_metrics` calls it too.

    Args:
        funding: register the funding-rate indicators.
        metric_files: wide tables whose columns get ``<prefix>_<metric>`` indicators.
        prefix: registry prefix for the wide tables.

    Returns:
        The names registered.
    """
    names = register_funding_indicators() if funding else []
    for f in metric_files:
        for base in register_metric_table(f, prefix=prefix).values():
            names += [n for n in (base, f"{base}_change", f"{base}_logchange") if n in METRIC_INDICATORS]
    return names


# --------------------------------------------------------------------------- entry point


def attach_metrics(candles_frame: pd.DataFrame, timeframe: str, *,
                   funding_file: Path | str | None = None,
                   metric_files: Iterable[Path | str] = (),
                   staleness: pd.Timedelta | Mapping[str, pd.Timedelta] | None = None,
                   metric_delay: pd.Timedelta = _ZERO,
                   prefix: str = "gn",
                   now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Read metric files, align them to the candles and add ``m:<metric>`` columns.

    Also registers the metric-derived indicators of every table column (see
    :func:`register_metric_table`), so a pool can name them right after this call.

    Args:
        candles_frame: validated candles (``timestamp`` = open time, UTC).
        timeframe: the candles' timeframe (key of :data:`trainables.data.candles.TIMEFRAMES`).
        funding_file: a funding-rate file (adds ``m:funding_rate``).
        metric_files: wide metric tables (daily or 8-hourly).
        staleness: oldest usable value, measured from when it became public. One
            Timedelta for every file, a mapping ``str(path) → Timedelta``, or ``None`` for
            twice each file's period (tolerates one missed publication: 2 days for daily
            tables, 16 h for 8-hourly funding).
        metric_delay: extra publication latency of the wide tables (vendor lag).
        prefix: registry prefix for wide-table indicators.
        now: clock for the future-timestamp check.

    Returns:
        A copy of ``candles_frame`` with the aligned ``m:`` columns appended; NaN where a
        metric is missing or stale (the dataset builder must drop such rows).

    Raises:
        DataError: invalid file, or a metric name that two files share.
    """
    tables: list[tuple[MetricTable, pd.Timedelta]] = []
    if funding_file is not None:
        tables.append((read_funding_rates(funding_file, now=now), pd.Timedelta(0)))
        register_funding_indicators()
    for f in metric_files:
        t = read_metric_table(f, now=now)
        register_metric_table(t, prefix=prefix)
        tables.append((t, pd.Timedelta(metric_delay)))
    out = [candles_frame]
    owner: dict[str, Path] = {}
    for t, delay in tables:
        for c in t.columns:
            if METRIC_PREFIX + c in candles_frame.columns or c in owner:
                other = owner.get(c, "the candle frame")
                raise DataError(f"{t.path}: metric {c!r} is also provided by {other}; attach it once")
            owner[c] = t.path
        if isinstance(staleness, Mapping):
            limit = staleness.get(str(t.path), 2 * t.period)
        else:
            limit = staleness if staleness is not None else 2 * t.period
        aligned = align_to_candles(t.frame, candles_frame["timestamp"], timeframe,
                                   metric_period=t.publish_lag, staleness=limit, delay=delay)
        out.append(aligned.add_prefix(METRIC_PREFIX))
    return pd.concat(out, axis=1)

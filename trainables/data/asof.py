"""As-of alignment: metric tables on the candle grid, using only values published by each close.

A metric row stamped ``T`` becomes known at ``T + publish_lag + delay`` (a daily row at
the end of its day, a funding rate at its settlement, plus any vendor latency). A candle's
feature is the latest value known at the candle's **close**, and only while it is not
older than the staleness limit. :func:`align_to_candles` applies that rule to one table;
:func:`attach_tables` adds the aligned columns ``m:<metric>`` of several tables to a candle
frame. The indicators reading those columns live in
:mod:`trainables.features.table_indicators`, whose ``attach_metrics`` is the entry point
that reads the files, registers the indicators and calls :func:`attach_tables`.

NaN policy: a metric column is NaN where the metric has no value yet, has an empty cell,
or its latest value is older than the staleness limit (e.g. the 2023-06 → 2024-12 hole
in the vendored funding rates). Nothing is filled here on purpose: **the dataset builder
must drop rows with a NaN in any pool column** (pool-wide, not per trial, so that every
trial of an (asset, timeframe) still sees the same rows). Filling would invent values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainables.data.candles import TIMEFRAMES
from trainables.data.tables import MetricTable
from trainables.errors import DataError

_ZERO = pd.Timedelta(0)
#: Prefix of aligned metric columns in a candle frame (``m:funding_rate``).
METRIC_PREFIX = "m:"


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


def attach_tables(candles_frame: pd.DataFrame, timeframe: str,
                  tables: Sequence[tuple[MetricTable, pd.Timedelta]], *,
                  staleness: pd.Timedelta | Mapping[str, pd.Timedelta] | None = None) -> pd.DataFrame:
    """Align already read tables to the candles and add their ``m:<metric>`` columns.

    Args:
        candles_frame: validated candles (``timestamp`` = open time, UTC).
        timeframe: the candles' timeframe (key of :data:`trainables.data.candles.TIMEFRAMES`).
        tables: ``(table, delay)`` pairs; ``delay`` is the vendor latency on top of the
            table's ``publish_lag`` (see :func:`align_to_candles`).
        staleness: oldest usable value, measured from when it became public. One
            Timedelta for every table, a mapping ``str(table.path) → Timedelta``, or
            ``None`` for twice each table's period (tolerates one missed publication:
            2 days for daily tables, 16 h for 8-hourly funding).

    Returns:
        A copy of ``candles_frame`` with the aligned ``m:`` columns appended; NaN where a
        metric is missing or stale (the dataset builder must drop such rows).

    Raises:
        DataError: a metric name that two tables (or a table and the frame) share.
    """
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

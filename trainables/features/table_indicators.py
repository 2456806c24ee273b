"""Indicators read from metric tables (funding rates, Glassnode-style on-chain metrics).

The metric-derived indicators (``funding_rate``, ``funding_rate_change``, ``gn_<metric>``,
``gn_<metric>_change``, ``gn_<metric>_logchange``) read the aligned columns ``m:<metric>``
that :func:`attach_metrics` adds to a candle frame (as of each candle's close, see
:mod:`trainables.data.asof`). They are registered on demand — by :func:`attach_metrics`
or, for spec validation before any data is loaded, :func:`register_metric_indicators` —
never at import, so the registry holds only candle indicators unless metrics are in use.
Code that enumerates the registry to featurise plain candles should skip names in
:data:`METRIC_INDICATORS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainables.data.asof import METRIC_PREFIX, attach_tables
from trainables.data.tables import MetricTable, read_funding_rates, read_metric_table
from trainables.errors import DataError, TunefactoryError
from trainables.features.indicators import INDICATORS, register

_ZERO = pd.Timedelta(0)
#: Indicator name → the aligned column (``m:...``) it reads. Lets callers tell metric-
#: derived indicators from candle indicators (e.g. the featurisation benchmark).
METRIC_INDICATORS: dict[str, str] = {}


def metric_indicator_name(column: str, *, prefix: str = "gn") -> str:
    """Registry name for a metric column: ``addresses/active_count`` → ``gn_addresses_active_count``."""
    core = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")
    return f"{prefix}_{core}" if prefix else core


def _metric_values(frame: pd.DataFrame, column: str, name: str) -> np.ndarray:
    if column not in frame.columns:
        raise TunefactoryError(f"indicator {name!r} needs the column {column!r}; attach the metric file with "
                               "trainables.features.table_indicators.attach_metrics(...) before computing features")
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

    Features are NaN where the metric is missing or stale; see :mod:`trainables.data.asof`.

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


def attach_metrics(candles_frame: pd.DataFrame, timeframe: str, *,
                   funding_file: Path | str | None = None,
                   metric_files: Iterable[Path | str] = (),
                   staleness: pd.Timedelta | Mapping[str, pd.Timedelta] | None = None,
                   metric_delay: pd.Timedelta = _ZERO,
                   prefix: str = "gn",
                   now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Read metric files, register their indicators, align them and add ``m:<metric>`` columns.

    Registers the metric-derived indicators of every table column (see
    :func:`register_metric_table`), so a pool can name them right after this call; the
    alignment itself is :func:`trainables.data.asof.attach_tables`.

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
        tables.append((read_funding_rates(funding_file, now=now), _ZERO))
        register_funding_indicators()
    for f in metric_files:
        t = read_metric_table(f, now=now)
        register_metric_table(t, prefix=prefix)
        tables.append((t, pd.Timedelta(metric_delay)))
    return attach_tables(candles_frame, timeframe, tables, staleness=staleness)

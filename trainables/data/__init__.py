"""Market data: candle files, metric tables and their alignment (pandas only, no model code).

Modules:
    candles: candle files: find, parse, validate, resample, fill and report gaps.
    timestamps: the rules of a ``timestamp`` column shared by candle files and metric tables.
    tables: metric tables (funding rates, Glassnode-style wide tables): read and validate.
    asof: metric tables on the candle grid as of each candle's close (publication lags, staleness).
    exchange: download candles from an exchange with ccxt (``data fetch``).
"""

from __future__ import annotations

from trainables.data.asof import align_to_candles, attach_tables
from trainables.data.candles import TIMEFRAMES, Candles, load_candles, read_candles
from trainables.data.tables import MetricTable, read_funding_rates, read_metric_table

__all__ = [
    "TIMEFRAMES",
    "Candles",
    "MetricTable",
    "align_to_candles",
    "attach_tables",
    "load_candles",
    "read_candles",
    "read_funding_rates",
    "read_metric_table",
]

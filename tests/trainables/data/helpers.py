"""Metric fixtures and candle helpers shared by the metric-table tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trainables.data.candles import EMBEDDED_FUNDING_DIR, load_candles

ROOT = Path(__file__).resolve().parents[3]
FIX = ROOT / "tests" / "fixtures" / "metrics"
DAILY = FIX / "BTC_metrics_daily.csv"
EIGHT_H = FIX / "BTC_metrics_8h.csv"
FUNDING = EMBEDDED_FUNDING_DIR / "BTC-USDT_perp_funding_rate_8h.csv"
GLASSNODE = Path("/work/shared/data/onchain/BTC_glassnode_daily.csv.gz")
DAY, HOUR = pd.Timedelta(days=1), pd.Timedelta(hours=1)


def _ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC") if "Z" not in s and "+" not in s else pd.Timestamp(s)


def _candles(tf: str, start: str, end: str) -> pd.DataFrame:
    f = load_candles("BTC-USDT", tf).frame
    return f[(f["timestamp"] >= _ts(start)) & (f["timestamp"] < _ts(end))].reset_index(drop=True)


def _at(frame: pd.DataFrame, open_time: str, column: str) -> float:
    row = frame.loc[frame["timestamp"] == _ts(open_time), column]
    assert len(row) == 1, f"no candle opening at {open_time}"
    return float(row.iloc[0])

"""A long/flat backtest of a winner's test-span forecasts, against buy-and-hold.

The strategy decides at the close of candle t from the forecast made there: long for the
next candle when the predicted multiplier ``close[t+h] / close[t]`` is above 1, flat
otherwise. It earns the next candle's close-to-close return while long and pays ``fee``
(a fraction of equity) on every position change, including closing an open position at
the end of the span, so it is compared fairly with buy-and-hold (one entry, one exit).
Persistence predicts a multiplier of exactly 1, so its strategy never trades: the
benchmark a forecast must beat *after fees* is therefore simply staying flat, and
buy-and-hold is shown for the market's own move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainables.data.candles import TIMEFRAMES
from trainables.errors import RunError
from trainables.features.targets import TARGETS

DEFAULT_FEE = 0.001  # 0.1 % per trade: a typical spot taker fee


@dataclass(frozen=True)
class Performance:
    """Summary of one equity curve.

    Attributes:
        total_return: final equity / initial - 1.
        sharpe: annualised mean / std of per-candle net returns (24/7 markets: 365.25 days).
        max_drawdown: most negative equity / running peak - 1 (<= 0).
        time_in_market: share of candles held long.
        trades: position changes (entries and exits).
    """

    total_return: float
    sharpe: float
    max_drawdown: float
    time_in_market: float
    trades: int

    def to_dict(self) -> dict[str, float | int]:
        return {"total_return": self.total_return, "sharpe": self.sharpe, "max_drawdown": self.max_drawdown,
                "time_in_market": self.time_in_market, "trades": self.trades}


@dataclass(frozen=True)
class Backtest:
    """Strategy and buy-and-hold over the same candles."""

    strategy: Performance
    buy_hold: Performance
    fee: float
    candles: int
    timestamps: list[str]
    equity: list[float]
    equity_buy_hold: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"fee": self.fee, "candles": self.candles, "strategy": self.strategy.to_dict(),
                "buy_hold": self.buy_hold.to_dict()}


def predicted_multiplier(target: str, values: np.ndarray, close: np.ndarray | float = 1.0) -> np.ndarray:
    """Turn a target's values into multipliers ``close[t+h] / close[t]``.

    Args:
        target: key of :data:`trainables.features.targets.TARGETS`.
        values: forecasts or labels in target units.
        close: ``close[t]`` of each value (needed by the ``price`` target only).

    Raises:
        RunError: the target has no price (volatility targets say nothing about direction).
    """
    tg = TARGETS.get(target)
    if tg is None:
        raise RunError(f"backtest: unknown target {target!r}; known: {', '.join(TARGETS)}")
    if tg.to_price is None:
        raise RunError(f"backtest: target {target!r} forecasts {tg.unit}, not a direction of the price; "
                       "a long/flat strategy needs a return or price target")
    c = np.asarray(close, dtype=np.float64)
    return np.asarray(tg.to_price(np.asarray(values, dtype=np.float64), c), dtype=np.float64) / c


def next_candle_returns(pred: pd.DataFrame, *, target: str, horizon: int, timeframe: str) -> np.ndarray:
    """Close-to-close return of the candle after each forecast row (NaN where unknown).

    With horizon 1 the label *is* that return. Otherwise it comes from the next row's close
    when that row is the very next candle (a gap leaves it unknown; the strategy is flat).
    """
    close = pred["close"].to_numpy(dtype=np.float64)
    if horizon == 1:
        return predicted_multiplier(target, pred["y_true"].to_numpy(), close) - 1.0
    ts = pd.to_datetime(pred["timestamp"], utc=True)
    out = np.full(len(pred), np.nan)
    step = TIMEFRAMES[timeframe]
    nxt = (ts.shift(-1) - ts) == step
    idx = np.flatnonzero(nxt.to_numpy())
    out[idx] = close[idx + 1] / close[idx] - 1.0
    return out


def _performance(net: np.ndarray, pos: np.ndarray, trades: int, periods_per_year: float) -> tuple[Performance,
                                                                                                  np.ndarray]:
    equity = np.cumprod(1.0 + net)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    dd = float(np.min(equity / peak - 1.0)) if len(equity) else 0.0
    sd = float(np.std(net, ddof=1)) if len(net) > 1 else math.nan
    sharpe = float(np.mean(net) / sd * math.sqrt(periods_per_year)) if sd and math.isfinite(sd) else math.nan
    total = float(equity[-1] - 1.0) if len(equity) else 0.0
    return Performance(total, sharpe, min(dd, 0.0), float(np.mean(pos)) if len(pos) else 0.0, trades), equity


def net_returns(ret: np.ndarray, pos: np.ndarray, fee: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-candle net returns of holding ``pos`` (1 long, 0 flat) and the position changes paid for.

    ``pos`` is one position per candle (n) or one column per strategy (n × k, ``ret`` of
    length n then applies to every column), so many forecasts can be backtested at once.
    """
    prev = np.concatenate([np.zeros_like(pos[:1]), pos[:-1]])
    changes = (pos != prev).astype(np.float64)
    # The position opened at the last candle is closed after it: one more fee then.
    if len(pos):
        changes[-1] += (pos[-1] > 0)
    r = ret if pos.ndim == 1 else ret[:, None]
    return (1.0 + pos * r) * (1.0 - fee) ** changes - 1.0, changes


def _run(ret: np.ndarray, pos: np.ndarray, fee: float, ppy: float) -> tuple[Performance, np.ndarray]:
    net, changes = net_returns(ret, pos, fee)
    return _performance(net, pos, int(changes.sum()), ppy)


def backtest(pred: pd.DataFrame, *, target: str, horizon: int, timeframe: str,
             fee: float = DEFAULT_FEE) -> Backtest:
    """Long/flat from ``y_pred`` versus buy-and-hold over the same candles.

    Args:
        pred: ``predictions.csv`` of a trial (timestamp, close, y_true, y_pred, y_persistence).
        target: the target the model predicts (``multiplier`` or ``log_return``).
        horizon: candles ahead the forecast looks.
        timeframe: candle length (for annualising and for gap detection).
        fee: cost per position change as a fraction of equity (0.001 = 0.1 %).

    Raises:
        RunError: missing columns, a negative fee, or no candle with a known return.
    """
    missing = {"timestamp", "close", "y_true", "y_pred"} - set(pred.columns)
    if missing:
        raise RunError(f"predictions: missing column(s) {', '.join(sorted(missing))}")
    if not 0 <= fee < 1:
        raise RunError(f"backtest: fee must be in [0, 1); got {fee}")
    mult = predicted_multiplier(target, pred["y_pred"].to_numpy(), pred["close"].to_numpy(dtype=np.float64))
    ret = next_candle_returns(pred, target=target, horizon=horizon, timeframe=timeframe)
    keep = np.isfinite(ret)
    if not keep.any():
        raise RunError("backtest: no candle of the test span has a known next return")
    ret = ret[keep]
    long = (mult[keep] > 1.0).astype(np.float64)
    ppy = pd.Timedelta(days=365.25) / TIMEFRAMES[timeframe]
    strat, eq = _run(ret, long, fee, ppy)
    bh, eq_bh = _run(ret, np.ones_like(ret), fee, ppy)
    ts = pd.Series(pred["timestamp"].to_numpy()[keep]).astype(str).tolist()
    return Backtest(strat, bh, fee, int(keep.sum()), ts, eq.tolist(), eq_bh.tolist())

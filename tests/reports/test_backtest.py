"""Long/flat backtest arithmetic against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reports.backtest import backtest
from trainables.errors import RunError


def _pred(y_true: list[float], y_pred: list[float], *, start: str = "2025-01-01", freq: str = "1D") -> pd.DataFrame:
    ts = pd.date_range(start, periods=len(y_true), freq=freq, tz="UTC")
    close = 100 * np.cumprod([1.0, *y_true[:-1]])
    return pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "close": close, "y_true": y_true,
                         "y_pred": y_pred, "y_persistence": 1.0})


def test_long_flat_pnl_fees_drawdown_and_time_in_market() -> None:
    y = [1.10, 0.90, 1.05, 1.02]
    p = [1.01, 0.99, 1.02, 1.03]  # long, flat, long, long
    bt = backtest(_pred(y, p), target="multiplier", horizon=1, timeframe="1d", fee=0.01)
    f = 0.99
    # enter (fee), +10%; exit (fee); enter (fee) +5%; +2%; close out at the end (fee).
    expected = [1.10 * f, f, 1.05 * f, 1.02 * f]
    assert bt.equity == pytest.approx(list(np.cumprod(expected)))
    assert bt.strategy.total_return == pytest.approx(np.prod(expected) - 1)
    assert bt.strategy.trades == 4
    assert bt.strategy.time_in_market == pytest.approx(0.75)
    eq = np.cumprod(expected)
    assert bt.strategy.max_drawdown == pytest.approx(min(eq / np.maximum.accumulate(eq) - 1))
    net = np.array(expected) - 1
    assert bt.strategy.sharpe == pytest.approx(net.mean() / net.std(ddof=1) * np.sqrt(365.25))
    assert bt.buy_hold.total_return == pytest.approx(np.prod(y) * f * f - 1)
    assert bt.buy_hold.trades == 2 and bt.buy_hold.time_in_market == 1.0


def test_a_model_that_never_predicts_a_rise_never_trades() -> None:
    bt = backtest(_pred([1.1, 0.9, 1.2], [1.0, 0.99, 1.0]), target="multiplier", horizon=1, timeframe="1d")
    assert bt.strategy.total_return == 0 and bt.strategy.trades == 0 and bt.strategy.max_drawdown == 0


def test_log_return_target_and_longer_horizon_use_next_close() -> None:
    d = _pred([1.1, 0.9, 1.05, 1.0], [0.01, -0.01, 0.02, 0.0], freq="1h")
    d["y_true"] = np.log([1.21, 0.945, 1.05, 1.0])  # horizon 2 labels: not the next candle's return
    bt = backtest(d, target="log_return", horizon=2, timeframe="1h", fee=0.0)
    # Returns come from consecutive closes; the last row has no next close and is dropped.
    assert bt.candles == 3
    assert bt.strategy.total_return == pytest.approx(1.1 * 1.05 - 1)


def test_bad_inputs_raise_one_line_errors() -> None:
    with pytest.raises(RunError, match=r"fee must be in \[0, 1\)"):
        backtest(_pred([1.1], [1.1]), target="multiplier", horizon=1, timeframe="1d", fee=-0.1)
    with pytest.raises(RunError, match="missing column"):
        backtest(pd.DataFrame({"timestamp": []}), target="multiplier", horizon=1, timeframe="1d")
    with pytest.raises(RunError, match="unknown target"):
        backtest(_pred([1.1], [1.1]), target="momentum", horizon=1, timeframe="1d")
    with pytest.raises(RunError, match="a long/flat strategy needs a return or price target"):
        backtest(_pred([1.1], [1.1]), target="volatility", horizon=1, timeframe="1d")


def test_price_target_goes_long_when_the_predicted_price_is_above_the_close() -> None:
    d = _pred([1.1, 0.9, 1.05], [1.0, 1.0, 1.0])
    d["y_true"] = d["close"] * np.array([1.1, 0.9, 1.05])
    d["y_pred"] = d["close"] * np.array([1.01, 0.99, 1.02])  # long, flat, long
    bt = backtest(d, target="price", horizon=1, timeframe="1d", fee=0.0)
    assert bt.strategy.total_return == pytest.approx(1.1 * 1.05 - 1)
    assert bt.buy_hold.total_return == pytest.approx(1.1 * 0.9 * 1.05 - 1)

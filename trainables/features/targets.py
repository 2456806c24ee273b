"""Target registry: what a model predicts for the sample made at candle t.

A target is computed from the candles; sample t's value may only be used as a *label*
(it looks h candles ahead: candles ``t+1 .. t+h``). Each target also defines its
persistence baseline (the random walk's forecast, computed from data known at the close
of candle t) so every score can be compared with "nothing changes".

Targets (keys of :data:`TARGETS`):

``multiplier``
    ``close[t+h] / close[t]``; persistence 1.
``log_return``
    ``ln(close[t+h] / close[t])``; persistence 0.
``price``
    ``close[t+h]``; persistence ``close[t]``. Training on raw prices is the prior art's
    flaw (the scale drifts out of the training range); it is here so users can compare,
    and its MAPE is the prior art's "% error".
``volatility``
    Annualised realised volatility of the next ``h`` candles, from 1h log returns::

        r_i      = ln(C_i / C_{i-1})            C_i: close of 1h candle i
        RV[t]    = sqrt( (8760 / n) * sum_i r_i^2 )

    over the ``n = h * k`` hourly returns whose 1h candle opens inside candles
    ``t+1 .. t+h`` (``k`` hours per candle; the first one starts from the close of
    candle t). This is the realised-volatility convention (the sum of squared returns,
    no mean removed, i.e. a ddof=0 standard deviation around zero) annualised by the
    8760 hourly periods of a 24/7 year; for 1d candles and h=1 it is
    ``sqrt(365 * sum of the day's 24 squared hourly returns)``. The window is NaN when
    any hourly candle inside it (or the candle before it) is missing. Persistence is the
    same quantity over the last ``h`` candles ``t-h+1 .. t`` (known at t).
    On 1h candles the hourly returns are the candles' own returns (``k = 1``, so
    horizon 24 is next-day volatility on hourly samples); horizon 1 there is refused, as
    one return's "volatility" is only ``|r|``.
``volatility_q``
    ``volatility ** (1/4)`` (the paper's variance-stabilising transform); persistence
    likewise. Spike thresholds apply to these transformed values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainables.data.candles import TIMEFRAMES
from trainables.errors import TunefactoryError

#: Hourly periods in a year; crypto trades around the clock.
HOURS_PER_YEAR = 365 * 24
_HOUR_NS = 3_600_000_000_000


@dataclass(frozen=True)
class TargetContext:
    """What a target may read: one (asset, timeframe) series and, optionally, its 1h candles.

    Attributes:
        close: closes of the series' candles.
        horizon: candles ahead the label looks.
        timestamps: candle open times (int64 ns UTC); needed by volatility targets.
        timeframe: key of :data:`trainables.data.candles.TIMEFRAMES`; needed by volatility targets.
        intraday: the asset's 1h candles (a frame with ``timestamp`` and ``close``), for
            targets with ``needs_intraday``; for a 1h series it may be left out.
    """

    close: np.ndarray
    horizon: int
    timestamps: np.ndarray | None = None
    timeframe: str | None = None
    intraday: pd.DataFrame | None = None


@dataclass(frozen=True)
class Target:
    """A registered target.

    Attributes:
        name: registry key.
        label: ``label(ctx) -> y`` with ``y[t]`` the target for a forecast made at the
            close of candle t (NaN where t + h is beyond the data or inputs are missing).
        persistence: ``persistence(ctx) -> yhat`` the random-walk forecast known at t.
        to_price: ``to_price(pred, close_t) -> price forecast`` (None when meaningless).
        unit: what the numbers mean, for reports.
        kind: ``"return"``, ``"price"`` or ``"volatility"`` (decides baselines and extra metrics).
        positive: values are > 0, so MAPE is meaningful in target units.
        needs_intraday: the label needs the asset's 1h candles (:attr:`TargetContext.intraday`).
    """

    name: str
    label: Callable[[TargetContext], np.ndarray]
    persistence: Callable[[TargetContext], np.ndarray]
    to_price: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    unit: str
    kind: str = "return"
    positive: bool = False
    needs_intraday: bool = False


def candles_per_day(timeframe: str) -> int:
    """Candles in one day for a timeframe (24 for 1h, 6 for 4h, 1 for 1d); at least 1."""
    return max(1, int(pd.Timedelta(days=1).value // TIMEFRAMES[timeframe].value))


def _ahead(close: np.ndarray, h: int) -> np.ndarray:
    out = np.full(len(close), np.nan)
    out[: len(close) - h] = close[h:]
    return out


def _close(ctx: TargetContext) -> np.ndarray:
    return np.asarray(ctx.close, dtype=np.float64)


def candle_realised_variance(ctx: TargetContext) -> tuple[np.ndarray, np.ndarray]:
    """Per candle j of the series: the sum of its squared 1h log returns, and whether all were there.

    Returns:
        ``(rv2, complete)``: ``rv2[j] = sum r_i^2`` over the 1h candles opening inside
        candle j (each return from the previous hour's close), and ``complete[j]`` True
        when all ``k`` hourly returns of candle j exist.

    Raises:
        TunefactoryError: no timestamps/timeframe, or no 1h candles for a coarser series.
    """
    if ctx.timestamps is None or ctx.timeframe is None:
        raise TunefactoryError("volatility targets need the candles' timestamps and timeframe")
    step = int(TIMEFRAMES[ctx.timeframe].value)
    k = step // _HOUR_NS
    ts = np.asarray(ctx.timestamps, dtype=np.int64)
    if ctx.intraday is not None:
        its = ctx.intraday["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
        ic = ctx.intraday["close"].to_numpy(dtype=np.float64)
    elif k == 1:
        its, ic = ts, _close(ctx)
    else:
        raise TunefactoryError(
            f"the volatility target on {ctx.timeframe} candles needs the asset's 1h candles (realised "
            "volatility is computed from hourly returns); none were given")
    r2 = np.diff(np.log(ic)) ** 2
    has = np.diff(its) == _HOUR_NS  # a return needs the immediately preceding hour's close
    bucket = its[1:] // step  # the candle (epoch-aligned, as resampling does) each hour belongs to
    ub, inv = np.unique(bucket, return_inverse=True)
    sums = np.bincount(inv, weights=np.where(has, r2, 0.0), minlength=len(ub))
    counts = np.bincount(inv, weights=has.astype(np.float64), minlength=len(ub))
    if not len(ub):
        return np.full(len(ts), np.nan), np.zeros(len(ts), dtype=bool)
    cb = ts // step
    pos = np.minimum(np.searchsorted(ub, cb), len(ub) - 1)
    found = ub[pos] == cb
    rv2 = np.where(found, sums[pos], np.nan)
    complete = found & (counts[pos] == k)
    return rv2, complete


def _window_vol(ctx: TargetContext, *, ahead: bool) -> np.ndarray:
    """Annualised realised volatility over candles ``t+1..t+h`` (ahead) or ``t-h+1..t``."""
    h = int(ctx.horizon)
    step = int(TIMEFRAMES[str(ctx.timeframe)].value)
    k = step // _HOUR_NS
    if h * k < 2:
        raise TunefactoryError(
            f"the volatility target on {ctx.timeframe} candles needs horizon >= 2 (e.g. 24 for next-day "
            "volatility): realised volatility from a single hourly return is only |return|")
    rv2, complete = candle_realised_variance(ctx)
    n = len(rv2)
    ts = np.asarray(ctx.timestamps, dtype=np.int64)
    x = np.where(complete, rv2, 0.0)
    bad = (~complete).astype(np.int64)
    cx = np.concatenate([[0.0], np.cumsum(x)])
    cb = np.concatenate([[0], np.cumsum(bad)])
    out = np.full(n, np.nan)
    t = np.arange(n)
    # Window of candles a..b (inclusive); a = t+1 (ahead) or t-h+1 (known at t).
    a = t + 1 if ahead else t - h + 1
    b = a + h - 1
    ok = (a >= 0) & (b < n)
    a_, b_ = a[ok], b[ok]
    # Contiguous in time (no missing candle inside the window or right before it).
    first = a_ - 1 if ahead else a_
    contiguous = ts[b_] - ts[np.maximum(first, 0)] == (b_ - first) * step
    full = cb[b_ + 1] - cb[a_] == 0
    s = cx[b_ + 1] - cx[a_]
    vol = np.sqrt(np.maximum(s, 0.0) * HOURS_PER_YEAR / (h * k))
    out[np.flatnonzero(ok)] = np.where(contiguous & full, vol, np.nan)
    return out


def realised_vol_label(ctx: TargetContext) -> np.ndarray:
    """Annualised realised volatility of the next ``h`` candles (see the module docstring)."""
    return _window_vol(ctx, ahead=True)


def realised_vol_persistence(ctx: TargetContext) -> np.ndarray:
    """Annualised realised volatility of the last ``h`` candles ``t-h+1..t`` (known at t)."""
    return _window_vol(ctx, ahead=False)


TARGETS: dict[str, Target] = {
    # close[t+h] / close[t]: scale-free, the persistence forecast is exactly 1.
    "multiplier": Target(
        "multiplier",
        lambda x: _ahead(_close(x), x.horizon) / _close(x),
        lambda x: np.ones(len(x.close)),
        lambda p, c: p * c,
        "close[t+h] / close[t]",
        positive=True,
    ),
    # ln(close[t+h] / close[t]): additive over horizons; persistence is 0.
    "log_return": Target(
        "log_return",
        lambda x: np.log(_ahead(_close(x), x.horizon) / _close(x)),
        lambda x: np.zeros(len(x.close)),
        lambda p, c: np.exp(p) * c,
        "ln(close[t+h] / close[t])",
    ),
    # close[t+h]: the prior art's target (its MAPE is their "% error"); persistence close[t].
    "price": Target(
        "price",
        lambda x: _ahead(_close(x), x.horizon),
        lambda x: _close(x).copy(),
        lambda p, c: np.asarray(p, dtype=np.float64),
        "close[t+h] (quote currency)",
        kind="price",
        positive=True,
    ),
    # Annualised realised volatility of candles t+1..t+h from 1h returns.
    "volatility": Target(
        "volatility",
        realised_vol_label,
        realised_vol_persistence,
        None,
        "annualised realised volatility of candles t+1..t+h (1h returns)",
        kind="volatility",
        positive=True,
        needs_intraday=True,
    ),
    # The same to the power 1/4 (the paper's transform).
    "volatility_q": Target(
        "volatility_q",
        lambda x: realised_vol_label(x) ** 0.25,
        lambda x: realised_vol_persistence(x) ** 0.25,
        None,
        "(annualised realised volatility of candles t+1..t+h) ^ (1/4)",
        kind="volatility",
        positive=True,
        needs_intraday=True,
    ),
}


def direction_of(target: str, values: np.ndarray, reference: np.ndarray | float | None = None) -> np.ndarray:
    """Sign of the predicted/realised move (+1 up, -1 down, 0 flat) for a target's values.

    The move is measured from ``reference``, the persistence forecast ("no change"): 1 for
    multipliers, 0 for log returns (the defaults), ``close[t]`` for prices and the last
    period's volatility for volatility targets (which must pass it).
    """
    if reference is None:
        if target == "multiplier":
            reference = 1.0
        elif target == "log_return":
            reference = 0.0
        else:
            raise ValueError(f"direction of target {target!r} needs a reference (its persistence forecast)")
    return np.sign(np.asarray(values, dtype=np.float64) - np.asarray(reference, dtype=np.float64))

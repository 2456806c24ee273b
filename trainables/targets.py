"""Target registry: what a model predicts for the sample made at candle t.

A target is computed from the close series; sample t's value may only be used as a
*label* (it looks h candles ahead). Each target also defines its persistence baseline
(the random walk's forecast, computed from data known at t) so every score can be
compared with "next close = last close".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Target:
    """A registered target.

    Attributes:
        name: registry key.
        label: ``label(close, h) -> y`` with ``y[t]`` the target for a forecast made at the
            close of candle t (NaN where t + h is beyond the data).
        persistence: ``persistence(close, h) -> yhat`` the random-walk forecast known at t.
        to_price: ``to_price(pred, close_t) -> price forecast`` (None when meaningless).
        unit: what the numbers mean, for reports.
    """

    name: str
    label: Callable[[np.ndarray, int], np.ndarray]
    persistence: Callable[[np.ndarray, int], np.ndarray]
    to_price: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    unit: str


def _ahead(close: np.ndarray, h: int) -> np.ndarray:
    out = np.full(len(close), np.nan)
    out[: len(close) - h] = close[h:]
    return out


TARGETS: dict[str, Target] = {
    # close[t+h] / close[t]: scale-free, the persistence forecast is exactly 1.
    "multiplier": Target(
        "multiplier",
        lambda c, h: _ahead(c, h) / c,
        lambda c, h: np.ones(len(c)),
        lambda p, c: p * c,
        "close[t+h] / close[t]",
    ),
    # ln(close[t+h] / close[t]): additive over horizons; persistence is 0.
    "log_return": Target(
        "log_return",
        lambda c, h: np.log(_ahead(c, h) / c),
        lambda c, h: np.zeros(len(c)),
        lambda p, c: np.exp(p) * c,
        "ln(close[t+h] / close[t])",
    ),
}


def direction_of(target: str, values: np.ndarray) -> np.ndarray:
    """Sign of the predicted/realised move (+1 up, -1 down, 0 flat) for a target's values."""
    centre = 1.0 if target == "multiplier" else 0.0
    return np.sign(np.asarray(values, dtype=np.float64) - centre)

"""Scores in target units (and in price where meaningful). RMSE is primary.

Skill compares with persistence on the same samples. Every function returns plain floats
in flat dicts so results travel in Tune result rows unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from trainables.features.targets import TARGETS, direction_of

if TYPE_CHECKING:
    from trainables.features.dataset import Prepared

#: Spike thresholds of the volatility targets (in the target's own units).
SPIKE_THRESHOLDS: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3)


def _f64(a: np.ndarray | float) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((_f64(y) - _f64(yhat)) ** 2)))


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_f64(y) - _f64(yhat))))


def mape(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean absolute percentage error in percent, ``100 * mean(|y - yhat| / |y|)``.

    Samples with ``y == 0`` are left out (no relative error exists); NaN when none is left.
    Only meaningful for strictly positive quantities (prices, multipliers, volatilities).
    """
    y, yhat = _f64(y), _f64(yhat)
    keep = y != 0
    return float(100.0 * np.mean(np.abs(y[keep] - yhat[keep]) / np.abs(y[keep]))) if keep.any() else float("nan")


def directional_accuracy(target: str, y: np.ndarray, yhat: np.ndarray,
                         reference: np.ndarray | float | None = None) -> float:
    """Share of samples whose predicted move has the sign of the realised move.

    Moves are measured from ``reference``, the persistence forecast (default: 1 for
    multipliers, 0 for log returns). Flat realised moves are left out: no direction to
    get right.
    """
    d_true, d_pred = direction_of(target, y, reference), direction_of(target, yhat, reference)
    keep = d_true != 0
    return float(np.mean(d_true[keep] == d_pred[keep])) if keep.any() else float("nan")


def skill(model_rmse: float, baseline_rmse: float) -> float:
    """``1 - rmse / rmse_baseline``: > 0 beats the baseline, 0 ties, < 0 loses."""
    return float(1.0 - model_rmse / baseline_rmse) if baseline_rmse > 0 else float("nan")


def scores(target: str, y: np.ndarray, yhat: np.ndarray, persistence: np.ndarray, prefix: str, *,
           close_t: np.ndarray | None = None, close_ahead: np.ndarray | None = None) -> dict[str, float]:
    """All scores of one span as a flat dict (``{prefix}_rmse``, ...).

    Always: ``rmse``, ``mae``, ``diracc`` (direction from the persistence forecast),
    ``persistence_rmse``, ``skill``. For targets with positive values also ``mape`` (for
    ``price`` this is the prior art's "% error"). With ``close_t`` (close[t]) and
    ``close_ahead`` (close[t+h]) and a price-convertible target also ``price_rmse``,
    ``price_mae``, ``price_mape``, ``price_persistence_rmse`` (forecast turned into a price
    and compared with close[t+h]).
    """
    tg = TARGETS[target]
    r, rp = rmse(y, yhat), rmse(y, persistence)
    out = {
        f"{prefix}_rmse": r,
        f"{prefix}_mae": mae(y, yhat),
        f"{prefix}_diracc": directional_accuracy(target, y, yhat, _f64(persistence)),
        f"{prefix}_persistence_rmse": rp,
        f"{prefix}_skill": skill(r, rp),
    }
    if tg.positive:
        out[f"{prefix}_mape"] = mape(y, yhat)
    if tg.to_price is not None and close_t is not None and close_ahead is not None:
        ct, ca = _f64(close_t), _f64(close_ahead)
        price = tg.to_price(_f64(yhat), ct)
        out[f"{prefix}_price_rmse"] = rmse(ca, price)
        out[f"{prefix}_price_mae"] = mae(ca, price)
        out[f"{prefix}_price_mape"] = mape(ca, price)
        out[f"{prefix}_price_persistence_rmse"] = rmse(ca, ct)
    return out


def threshold_key(t: float) -> str:
    """How a threshold appears in metric names: ``1.0``, ``1.1``, ``1.25``."""
    return f"{t:.1f}" if round(t, 1) == t else f"{t:g}"


def spike_labels(y_true: np.ndarray, y_pred: np.ndarray, previous: np.ndarray,
                 threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Actual and predicted volatility spikes at one threshold, as boolean arrays.

    Actual spike (the paper's definition, as its authors' published evaluation code
    computes it): the realised volatility is ``>= T`` **and** it rose, i.e. it is at least
    the last known value, ``y_true >= previous`` (``previous`` is the persistence
    forecast, the volatility of the last ``h`` candles; for h = 1 this is the authors'
    ``log(value / value.shift(1)) >= 0``). Both sides are label-side, which is right for
    the truth.

    Predicted spike: ``y_pred >= T``, from the forecast alone. The previous definition
    here also required the *realised* future return to be positive (``(y_pred >= T) &
    up``): a classifier that reads the outcome it is scored against (look-ahead), which
    hid every false alarm on a falling day. Nothing realised after the close of candle t
    enters the predicted label now, so changing the outcome never changes it.
    """
    yt, yp, prev = _f64(y_true), _f64(y_pred), _f64(previous)
    return (yt >= threshold) & (yt >= prev), yp >= threshold


def spike_metrics(y_true_vol: np.ndarray, y_pred_vol: np.ndarray, previous: np.ndarray,
                  thresholds: Sequence[float] = SPIKE_THRESHOLDS, *, prefix: str = "test") -> dict[str, float]:
    """Volatility-spike classification scores at each threshold, flattened.

    Labels come from :func:`spike_labels`: a sample is an actual spike when its realised
    volatility is ``>= T`` and at least the last known volatility (``previous``, the
    persistence forecast); it is a predicted spike when the forecast is ``>= T`` (no
    realised quantity involved: no look-ahead). Thresholds are in the target's units
    (for ``volatility_q``, transformed, as in the paper).

    Returns:
        ``{prefix}_spike_{T}_{tp,fn,tn,fp,precision,recall,f1}`` for every T, e.g.
        ``test_spike_1.1_f1``. Precision (recall) is NaN without predicted (actual)
        spikes; F1 is ``2TP / (2TP + FP + FN)``, NaN when there are neither.
    """
    out: dict[str, float] = {}
    for t in thresholds:
        actual, pred = spike_labels(y_true_vol, y_pred_vol, previous, t)
        tp = int(np.sum(actual & pred))
        fn = int(np.sum(actual & ~pred))
        fp = int(np.sum(~actual & pred))
        tn = int(np.sum(~actual & ~pred))
        key = f"{prefix}_spike_{threshold_key(t)}"
        out[f"{key}_tp"], out[f"{key}_fn"], out[f"{key}_tn"], out[f"{key}_fp"] = tp, fn, tn, fp
        out[f"{key}_precision"] = tp / (tp + fp) if tp + fp else float("nan")
        out[f"{key}_recall"] = tp / (tp + fn) if tp + fn else float("nan")
        out[f"{key}_f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return out


def span_scores(p: Prepared, idx: np.ndarray, pred: np.ndarray, prefix: str, *,
                spikes: bool = False) -> dict[str, float]:
    """:func:`scores` of the samples ``idx`` of a prepared group, with price conversion.

    With ``spikes`` and a volatility target, :func:`spike_metrics` are added too.
    """
    idx = np.asarray(idx, dtype=np.int64)
    out = scores(p.target, p.y[idx], pred, p.persistence[idx], prefix,
                 close_t=p.close[idx], close_ahead=p.close[idx + p.horizon])
    if spikes and TARGETS[p.target].kind == "volatility":
        out.update(spike_metrics(p.y[idx], pred, p.persistence[idx], prefix=prefix))
    return out

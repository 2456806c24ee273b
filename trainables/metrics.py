"""Scores in target units. RMSE is primary; skill compares with persistence on the same samples."""

from __future__ import annotations

import numpy as np

from trainables.targets import direction_of


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(y, np.float64) - np.asarray(yhat, np.float64)) ** 2)))


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(y, np.float64) - np.asarray(yhat, np.float64))))


def directional_accuracy(target: str, y: np.ndarray, yhat: np.ndarray) -> float:
    """Share of samples whose predicted move has the sign of the realised move.

    Flat realised moves (exactly unchanged close) are left out: no direction to get right.
    """
    d_true, d_pred = direction_of(target, y), direction_of(target, yhat)
    keep = d_true != 0
    return float(np.mean(d_true[keep] == d_pred[keep])) if keep.any() else float("nan")


def skill(model_rmse: float, baseline_rmse: float) -> float:
    """``1 - rmse / rmse_baseline``: > 0 beats the baseline, 0 ties, < 0 loses."""
    return float(1.0 - model_rmse / baseline_rmse) if baseline_rmse > 0 else float("nan")


def scores(target: str, y: np.ndarray, yhat: np.ndarray, persistence: np.ndarray, prefix: str) -> dict[str, float]:
    """All scores of one span as a flat dict (``{prefix}_rmse``, ...)."""
    r, rp = rmse(y, yhat), rmse(y, persistence)
    return {
        f"{prefix}_rmse": r,
        f"{prefix}_mae": mae(y, yhat),
        f"{prefix}_diracc": directional_accuracy(target, y, yhat),
        f"{prefix}_persistence_rmse": rp,
        f"{prefix}_skill": skill(r, rp),
    }

"""The one place that touches the volatile Ray Tune / Keras reporting APIs.

Ray moved ``report`` between ``ray.air.session``, ``ray.train`` and ``ray.tune`` across
2.x releases (in 2.60 ``ray.train.report`` raises inside Tune function trainables), and
Keras 3 changed callback and weight-restoring semantics. Everything else in tunefactory
calls :func:`report`, :func:`in_tune` and :class:`EpochReporter` only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np


class TrialDiverged(RuntimeError):
    """The training loss became NaN/inf; the trial is recorded as failed with this reason."""


def in_tune() -> bool:
    """True inside a Ray Tune trial (so the same code also runs in a plain process)."""
    try:
        from ray.tune import get_context

        return get_context().get_trial_id() is not None
    except Exception:
        return False


def report(metrics: dict[str, Any], *, checkpoint_dir: Path | None = None) -> None:
    """Report one result row (and optionally a checkpoint folder) to Tune; no-op outside Tune."""
    if not in_tune():
        return
    from ray import tune

    ckpt = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
    tune.report(metrics, checkpoint=ckpt)


def predict_eager(model: keras.Model, x: np.ndarray, *, batch: int = 8192) -> np.ndarray:
    """Forward pass without ``model.predict`` (which traces a new graph per model)."""
    outs = [np.asarray(model(x[i:i + batch], training=False))[:, 0] for i in range(0, len(x), batch)]
    return np.concatenate(outs) if outs else np.zeros(0, np.float32)


def rmse_scaled(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """RMSE of the model on standardised labels."""
    return float(np.sqrt(np.mean((predict_eager(model, x).astype(np.float64) - y) ** 2)))


class EpochReporter(keras.callbacks.Callback):
    """Early stopping on validation RMSE that keeps the best weights, and reports every epoch.

    Reports ``val_rmse`` (this epoch), ``val_rmse_best`` (running best) and
    ``val_ratio_best`` (running best / persistence RMSE on the validation span). Searchers
    and ASHA act on the *last* reported value, so they must use the running best, not
    this epoch's value, or they would judge a trial by an epoch whose weights are thrown
    away. The ratio is scale-free, so ASHA can compare trials of different assets and
    timeframes in one sweep.

    Args:
        y_std: label scale; the Keras metric is RMSE on standardised labels.
        persistence_rmse: validation RMSE of the persistence forecast (target units).
        patience: epochs without improvement before stopping (0 = never stop early).
        sink: called with each epoch's row (default: :func:`report`).
        validation: ``(x, y)`` standardised validation windows and labels. Scored here with
            one eager forward pass rather than Keras' ``validation_data``, which would trace
            a second graph (the test step) per model: ~1 s of fixed cost per trial.
    """

    def __init__(self, *, y_std: float, persistence_rmse: float, patience: int,
                 validation: tuple[np.ndarray, np.ndarray],
                 sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.x_val, self.y_val = validation
        self.y_std = y_std
        self.persistence_rmse = persistence_rmse
        self.patience = patience
        self.sink = sink or (lambda row: report(row))
        self.best = math.inf
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.history: list[float] = []
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss):
            raise TrialDiverged(f"training loss became {loss} at epoch {epoch + 1}; lower the learning rate")
        val = rmse_scaled(self.model, self.x_val, self.y_val) * self.y_std
        if not math.isfinite(val):
            # A NaN prediction never becomes "best": without this the trial would end as
            # finished with val_rmse_best=inf instead of failed with a reason.
            raise TrialDiverged(f"validation RMSE became {val} at epoch {epoch + 1}; the model predicts "
                                "NaN/inf (check the inputs for NaN, lower the learning rate)")
        self.history.append(val)
        if val < self.best:
            self.best, self.best_epoch = val, epoch + 1
            self.best_weights = self.model.get_weights()
        elif self.patience and epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True
        self.sink({
            "epoch": epoch + 1,
            "loss": loss,
            "val_rmse": val,
            "val_rmse_best": self.best,
            "val_ratio_best": self.best / self.persistence_rmse,
            "best_epoch": self.best_epoch,
            "train_seconds": time.perf_counter() - self._t0,
        })

    def restore_best(self) -> None:
        """Put the best epoch's weights back (Keras only does so on an early stop)."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def bounded_trainable(fn: Callable[..., Any], *, max_rss_mb: float) -> type:
    """Wrap a function trainable so a reused worker is replaced once it grows too large.

    With ``reuse_actors=True`` one worker process runs many trials, which removes the
    per-trial cost of a new process and a TensorFlow import (~4 s), but TensorFlow keeps
    ~12 MB per trial that ``clear_session`` does not return. Tune asks a reused worker to
    ``reset_config`` before each new trial; answering False makes Tune start a fresh worker
    instead, so memory is bounded at about ``max_rss_mb`` per worker while the common case
    keeps reusing.

    Args:
        fn: the (``tune.with_parameters``-wrapped) function trainable.
        max_rss_mb: resident-set size above which the worker is retired.

    Returns:
        A ``FunctionTrainable`` subclass to hand to ``Tuner``.
    """
    from ray.tune.trainable.function_trainable import wrap_function

    base: Any = wrap_function(fn)

    class BoundedTrainable(base):  # type: ignore[misc, valid-type]
        _rss_limit_mb = max_rss_mb

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            import psutil

            if psutil.Process().memory_info().rss / 2**20 > self._rss_limit_mb:
                return False
            return bool(super().reset_config(new_config))

    BoundedTrainable.__name__ = getattr(fn, "__name__", "train_trial")
    return BoundedTrainable

"""The one place that touches the volatile Ray Tune / Keras reporting APIs.

Ray moved ``report`` between ``ray.air.session``, ``ray.train`` and ``ray.tune`` across
2.x releases (in 2.60 ``ray.train.report`` raises inside Tune function trainables), and
Keras 3 changed callback and weight-restoring semantics. Everything else in tunefactory
calls :func:`report`, :func:`in_tune` and :class:`EpochReporter` only.

Keras is imported on first use of a Keras-facing name, not with this module: the sweep
driver imports :func:`bounded_trainable` from here, and importing TensorFlow there cost
~3 s of CPU on a 2-core machine while the workers were importing it themselves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    # Every row says how large the worker is, so the driver can retire it whenever the
    # trial ends (finished, or cut by ASHA after any epoch): see bounded_trainable.
    tune.report({**metrics, "worker_rss_mb": worker_rss_mb()}, checkpoint=ckpt)


def predict_eager(model: Any, x: np.ndarray, *, batch: int = 8192) -> np.ndarray:
    """Eager forward pass: no graph to trace, for a one-off prediction (e.g. a forecast)."""
    outs = [np.asarray(model(x[i:i + batch], training=False))[:, 0] for i in range(0, len(x), batch)]
    return np.concatenate(outs) if outs else np.zeros(0, np.float32)


class Forward:
    """A model's inference pass as one traced graph, for the many passes a trial makes.

    ``model.predict`` traces a predict graph per model, and ``fit(validation_data=...)`` a
    test graph with loss and metrics on top, both inside Keras' iterator machinery. An
    eager pass traces nothing but runs a recurrent layer op by op (~0.15 s per pass for a
    2-layer GRU over 330 windows). This traces the bare forward pass once, with an unknown
    batch size so every span and batch reuses it: for that GRU, seven passes (five
    validations, then validation and test) took 0.23 s with tracing instead of 1.07 s eager.

    Args:
        model: a built Keras model taking ``(batch, lookback, n_features)`` float32 windows.
        batch: samples per call, to bound memory on long spans.
    """

    def __init__(self, model: Any, *, batch: int = 8192) -> None:
        import tensorflow as tf

        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self.batch = batch

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Predictions (standardised units), one per window."""
        outs = [np.asarray(self._fn(x[i:i + self.batch]))[:, 0] for i in range(0, len(x), self.batch)]
        return np.concatenate(outs) if outs else np.zeros(0, np.float32)


_EPOCH_REPORTER: type | None = None


def _epoch_reporter_class() -> type:
    """Define :class:`EpochReporter` on first use (it subclasses a Keras class)."""
    global _EPOCH_REPORTER
    if _EPOCH_REPORTER is not None:
        return _EPOCH_REPORTER
    import keras

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
                :class:`Forward` rather than Keras' ``validation_data``, which would trace a
                test step (loss, metrics, iterator loop) per model: ~1 s of fixed cost per trial.
            forward: the model's inference pass (default: a :class:`Forward` of the model).
        """

        def __init__(self, *, y_std: float, persistence_rmse: float, patience: int,
                     validation: tuple[np.ndarray, np.ndarray],
                     sink: Callable[[dict[str, Any]], None] | None = None,
                     forward: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
            super().__init__()
            self.x_val, self.y_val = validation
            self.forward = forward
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
            if self.forward is None:
                self.forward = Forward(self.model)
            z = self.forward(self.x_val).astype(np.float64)
            val = float(np.sqrt(np.mean((z - self.y_val) ** 2))) * self.y_std
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

    _EPOCH_REPORTER = EpochReporter
    return EpochReporter


def __getattr__(name: str) -> Any:
    # PEP 562: ``from trainables.trial.keras_runtime import EpochReporter`` imports Keras then.
    if name == "EpochReporter":
        return _epoch_reporter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Retirement limit read by the patched Tune controller (see :func:`bounded_trainable`).
_RSS_LIMIT_MB: list[float] = [math.inf]


def worker_rss_mb() -> float:
    """Peak resident memory of this process in MB (stdlib only; works in any worker)."""
    import resource
    import sys

    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def bounded_trainable(fn: Callable[..., Any], *, max_rss_mb: float) -> Callable[..., Any]:
    """Let Tune reuse workers for ``fn``, but retire a worker once it has grown too large.

    With ``reuse_actors=True`` one worker process runs many trials, which removes the
    per-trial cost of a new process and a TensorFlow import (~3 s). A worker that still
    grows (a large model's allocator high-water mark, TensorFlow state kept between
    trials) must not grow without bound over a 10,000-trial sweep. Every row :func:`report`
    sends carries ``worker_rss_mb``; when a trial ends with its worker above ``max_rss_mb``,
    Tune is told not to keep that worker for the next trial, so it stops it and starts a
    fresh one. The obvious hook, ``reset_config`` returning False, does not do this in Ray 2.60:
    Tune then fails the *next* trial ("Could not re-use actor") and the sweep hangs.

    Tune has no public switch for this, so the one private method that decides whether
    to cache a finished trial's worker (``TuneController._maybe_cache_trial_actor``) is
    wrapped; if a Ray upgrade removes it, workers are simply never retired (with a warning).

    Args:
        fn: the (``tune.with_parameters``-wrapped) function trainable.
        max_rss_mb: peak resident-set size (MB) above which a worker is retired.

    Returns:
        ``fn``, to hand to ``Tuner`` (the retirement rule lives in the driver process).
    """
    import warnings

    from ray.tune.execution import tune_controller

    _RSS_LIMIT_MB[0] = max_rss_mb
    cls: Any = tune_controller.TuneController
    original = getattr(cls, "_maybe_cache_trial_actor", None)
    if original is None:
        warnings.warn("this Ray version has no TuneController._maybe_cache_trial_actor: reused workers "
                      "will not be retired when they grow large", RuntimeWarning, stacklevel=2)
        return fn
    if not getattr(original, "_tunefactory_retires", False):
        def maybe_cache(self: Any, trial: Any) -> bool:
            rss = (getattr(trial, "last_result", None) or {}).get("worker_rss_mb")
            if rss is not None and float(rss) > _RSS_LIMIT_MB[0]:
                return False  # not cached: Tune stops this worker and starts a new one
            return bool(original(self, trial))

        maybe_cache._tunefactory_retires = True  # type: ignore[attr-defined]
        cls._maybe_cache_trial_actor = maybe_cache
    return fn

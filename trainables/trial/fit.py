"""One trial: one model for one (asset, timeframe), from prepared data to scores and artifacts.

Per-trial fixed costs dominate small models, so a trial is built to be cheap to run many
times in one reused worker process: TensorFlow is imported and its thread pools sized once
per process, data arrive prepared, and each trial clears the previous trial's Keras state
before building its own. This module is the orchestration (windows, scaler, scores,
artifacts); every Keras/TensorFlow call goes through :mod:`trainables.trial.keras_runtime`,
and nothing here knows about Ray: ``cluster.tune_trial`` runs :func:`run_trial` as a Tune
trainable and passes Tune's report as the sink.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainables.evaluation.scores import span_scores
from trainables.features.dataset import Prepared, Scaler, fit_scaler, labels, windows
from trainables.models import build_model
from trainables.predictions import write_predictions
from trainables.trial import keras_runtime
from trainables.trial.config import TrialConfig
from trainables.trial.keras_runtime import Sink


def trial_config(config: TrialConfig | Mapping[str, Any], data: Prepared) -> TrialConfig:
    """``config`` as a :class:`TrialConfig`; a dict's missing group, asset and timeframe are ``data``'s.

    Tune hands a trial its config as a dict; tests and benchmarks call :func:`fit_trial` with
    a dict of the training keys only, on data that already says which group it is.
    """
    if isinstance(config, TrialConfig):
        return config
    return TrialConfig.from_dict({"group": data.group, "asset": data.asset, "timeframe": data.timeframe,
                                  **config})


def run_trial(config: TrialConfig, data: Prepared, *, sink: Sink, save_dir: Path | None,
              gpu_share: float = 0.0) -> dict[str, Any]:
    """A worker's trial: size TensorFlow for it (once per process), then :func:`fit_trial`.

    Args:
        config: the trial.
        data: its group's prepared arrays.
        sink: receives every epoch's row.
        save_dir: where the model, scaler and test predictions go (None: not saved).
        gpu_share: GPUs reserved for this worker (caps its GPU memory; 0 = none or unknown).

    Returns:
        The final metrics of :func:`fit_trial`.
    """
    keras_runtime.configure_tensorflow(config.threads, gpu_share=gpu_share)
    return fit_trial(config, data, sink=sink, save_dir=save_dir)


def fit_trial(config: TrialConfig | Mapping[str, Any], data: Prepared, *, sink: Sink,
              save_dir: Path | None = None) -> dict[str, Any]:
    """Train one config on prepared data; return the final metrics.

    Args:
        config: the trial (a dict is converted by :func:`trial_config`).
        data: the group's prepared arrays.
        sink: receives every epoch's row.
        save_dir: when given, the model, scaler and test predictions are written there.

    Returns:
        Final metrics of the best epoch: validation and test scores, epochs, timings.
    """
    cfg = trial_config(config, data)
    t0 = time.perf_counter()
    keras_runtime.new_session(cfg.seed)
    cols = data.column_index(cfg.columns)
    lookback = cfg.lookback
    scaler = fit_scaler(data, cols)
    xtr, ytr = windows(data, cols, data.train_idx, lookback, scaler), labels(data, data.train_idx, scaler)
    xva, yva = windows(data, cols, data.val_idx, lookback, scaler), labels(data, data.val_idx, scaler)
    model = keras_runtime.compile_model(
        build_model(cfg.family, cfg.model, lookback=lookback, n_features=len(cols)), cfg)
    persist_val = float(np.sqrt(np.mean((data.y[data.val_idx] - data.persistence[data.val_idx]) ** 2)))
    forward = keras_runtime.Forward(model)
    cb = keras_runtime.EpochReporter(y_std=scaler.y_std, persistence_rmse=persist_val, patience=cfg.patience,
                                     validation=(xva, yva), sink=sink, forward=forward)
    setup_s = time.perf_counter() - t0
    keras_runtime.train(model, xtr, ytr, reporter=cb, batch_size=cfg.batch_size, epochs=cfg.max_epochs)

    final: dict[str, Any] = {"epochs": len(cb.history), "best_epoch": cb.best_epoch,
                             "n_params": int(model.count_params()), "setup_seconds": setup_s}
    preds: dict[str, np.ndarray] = {}
    for span, idx in (("val", data.val_idx), ("test", data.test_idx)):
        x = windows(data, cols, idx, lookback, scaler)
        z = forward(x)
        preds[span] = z.astype(np.float64) * scaler.y_std + scaler.y_mean
        # Target units, price where the target converts, spike metrics on test for volatility.
        final.update(span_scores(data, idx, preds[span], span, spikes=span == "test"))
    final["val_rmse_best"] = cb.best
    final["val_ratio_best"] = cb.best / persist_val
    final["train_seconds"] = time.perf_counter() - t0
    if save_dir is not None:
        save_artifacts(save_dir, model, scaler, data, cfg, preds["test"])
    del model, xtr, xva
    return final


def fit_fixed_epochs(config: TrialConfig | Mapping[str, Any], data: Prepared, *, epochs: int,
                     save_dir: Path | None = None) -> dict[str, Any]:
    """Train one config on every training sample of ``data`` for exactly ``epochs`` epochs.

    The production refit of a winner: ``data`` holds every labelled sample as training
    (:func:`trainables.pipeline.prepare_refit`), the scaler is fitted on them, and training
    runs the epoch count early stopping chose for the scored model (its ``best_epoch``),
    with the same config and seed. Nothing is held out, so nothing is scored.

    Args:
        config: the trial (a dict is converted by :func:`trial_config`).
        data: the group's prepared arrays (``train_idx``: the samples to learn from).
        epochs: epochs to train (>= 1).
        save_dir: when given, ``model.keras``, ``scaler.json`` and ``trial.json`` go there.

    Returns:
        ``epochs``, ``samples``, ``trained_from``/``trained_through`` (open times, ISO UTC,
        of the first and last training sample), ``final_loss``, ``train_seconds``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    cfg = trial_config(config, data)
    t0 = time.perf_counter()
    keras_runtime.new_session(cfg.seed)
    cols = data.column_index(cfg.columns)
    scaler = fit_scaler(data, cols)
    idx = data.train_idx
    x, y = windows(data, cols, idx, cfg.lookback, scaler), labels(data, idx, scaler)
    model = keras_runtime.compile_model(
        build_model(cfg.family, cfg.model, lookback=cfg.lookback, n_features=len(cols)), cfg)
    losses = keras_runtime.train_fixed(model, x, y, batch_size=cfg.batch_size, epochs=epochs)
    first, last = data.span(idx)
    out: dict[str, Any] = {"epochs": epochs, "samples": len(idx), "trained_from": first,
                           "trained_through": last, "final_loss": losses[-1] if losses else None,
                           "train_seconds": time.perf_counter() - t0}
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        keras_runtime.save_model(model, save_dir / "model.keras")
        (save_dir / "scaler.json").write_text(json.dumps({**scaler.to_json(), "columns": list(cfg.columns)}))
        (save_dir / "trial.json").write_text(json.dumps(cfg.to_dict(), default=str, indent=1))
    del model, x
    return out


def save_artifacts(out: Path, model: Any, scaler: Scaler, data: Prepared, config: TrialConfig,
                   test_pred: np.ndarray) -> None:
    """Write ``model.keras`` and :func:`save_trial_files` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    keras_runtime.save_model(model, out / "model.keras")
    save_trial_files(out, scaler, data, config, test_pred)


def save_trial_files(out: Path, scaler: Scaler, data: Prepared, config: TrialConfig, test_pred: np.ndarray) -> None:
    """The checkpoint files besides the model: ``scaler.json``, ``trial.json`` and the test forecasts.

    The forecasts go in the compact form (:func:`trainables.predictions.write_predictions`:
    ``predictions.npy`` + ``predictions.json``); the test rows every trial of the group
    shares are the driver's ``test_span/`` file, named by the trial's dataset key.
    """
    (out / "scaler.json").write_text(json.dumps({**scaler.to_json(), "columns": list(config.columns)}))
    (out / "trial.json").write_text(json.dumps(config.to_dict(), default=str, indent=1))
    write_predictions(out, data, group=config.group, test_pred=test_pred)

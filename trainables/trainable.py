"""The Ray Tune function trainable: one trial = one model for one (asset, timeframe).

Per-trial fixed costs dominate small models, so this module is built to be cheap to call
many times in one reused worker process (``reuse_actors=True``): TensorFlow is imported and
its thread pools sized once per process, data arrive prepared through the object store,
and each trial clears the previous trial's Keras state before building its own.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainables.dataset import Prepared, Scaler, fit_scaler, labels, windows
from trainables.metrics import scores

_TF_THREADS: int | None = None


def configure_tensorflow(threads: int) -> None:
    """Size TF's thread pools once per process (they cannot change after TF runs an op).

    Two trials with one thread each beat one trial with two threads on small models, so a
    trial gets as many threads as CPUs it reserved, not the whole machine.
    """
    global _TF_THREADS
    if _TF_THREADS is not None:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TF already initialised in this process (e.g. by a test); keep its pools
    for gpu in tf.config.list_physical_devices("GPU"):
        # Several trials share one GPU: grow memory on demand instead of grabbing it all.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass
    _TF_THREADS = threads


def _optimizer(name: str, lr: float, weight_decay: float) -> Any:
    import keras

    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay or 0.004)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    return keras.optimizers.Adam(learning_rate=lr, weight_decay=weight_decay or None)


def _loss(name: str) -> Any:
    import keras

    return {"mse": keras.losses.MeanSquaredError(), "mae": keras.losses.MeanAbsoluteError(),
            "huber": keras.losses.Huber()}[name]


def fit_trial(config: Mapping[str, Any], data: Prepared, *,
              sink: Callable[[dict[str, Any]], None] | None = None,
              save_dir: Path | None = None) -> dict[str, Any]:
    """Train one config on prepared data; return the final metrics.

    Args:
        config: the trial config (see ``search_spaces.space``): ``family``, ``model``,
            ``columns``, ``lookback``, ``batch_size``, ``learning_rate``, ``loss``,
            ``optimizer``, ``weight_decay``, ``max_epochs``, ``patience``, ``seed``,
            ``jit_compile``, ``steps_per_execution``.
        data: the group's prepared arrays.
        sink: receives every epoch's row (default: Tune report).
        save_dir: when given, the model, scaler and test predictions are written there.

    Returns:
        Final metrics of the best epoch: validation and test scores, epochs, timings.
    """
    import keras

    from trainables.models import build_model
    from trainables.reporting import EpochReporter, predict_eager

    t0 = time.perf_counter()
    keras.backend.clear_session(free_memory=True)
    keras.utils.set_random_seed(int(config["seed"]))
    cols = data.column_index(config["columns"])
    lookback = int(config["lookback"])
    scaler = fit_scaler(data, cols)
    xtr, ytr = windows(data, cols, data.train_idx, lookback, scaler), labels(data, data.train_idx, scaler)
    xva, yva = windows(data, cols, data.val_idx, lookback, scaler), labels(data, data.val_idx, scaler)
    model = build_model(config["family"], config.get("model", {}), lookback=lookback, n_features=len(cols))
    model.compile(
        optimizer=_optimizer(config.get("optimizer", "adam"), float(config["learning_rate"]),
                             float(config.get("weight_decay", 0.0))),
        loss=_loss(config.get("loss", "mse")),
        steps_per_execution=int(config.get("steps_per_execution", 16)),
        jit_compile=bool(config.get("jit_compile", False)),
    )
    persist_val = float(np.sqrt(np.mean((data.y[data.val_idx] - data.persistence[data.val_idx]) ** 2)))
    cb = EpochReporter(y_std=scaler.y_std, persistence_rmse=persist_val, patience=int(config.get("patience", 0)),
                       validation=(xva, yva), sink=sink)
    setup_s = time.perf_counter() - t0
    model.fit(xtr, ytr, batch_size=int(config["batch_size"]), epochs=int(config["max_epochs"]),
              callbacks=[cb], verbose=0, shuffle=True)
    cb.restore_best()

    final: dict[str, Any] = {"epochs": len(cb.history), "best_epoch": cb.best_epoch,
                             "n_params": int(model.count_params()), "setup_seconds": setup_s}
    preds: dict[str, np.ndarray] = {}
    for span, idx in (("val", data.val_idx), ("test", data.test_idx)):
        x = windows(data, cols, idx, lookback, scaler)
        z = predict_eager(model, x)
        preds[span] = z.astype(np.float64) * scaler.y_std + scaler.y_mean
        final.update(scores(data.target, data.y[idx], preds[span], data.persistence[idx], span))
    final["val_rmse_best"] = cb.best
    final["val_ratio_best"] = cb.best / persist_val
    final["train_seconds"] = time.perf_counter() - t0
    if save_dir is not None:
        save_artifacts(save_dir, model, scaler, data, config, preds["test"])
    del model, xtr, xva
    gc.collect()
    return final


def save_artifacts(out: Path, model: Any, scaler: Scaler, data: Prepared, config: Mapping[str, Any],
                   test_pred: np.ndarray) -> None:
    """Write ``model.keras``, ``scaler.json``, ``trial.json`` and ``predictions.csv`` into ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    (out / "scaler.json").write_text(json.dumps({**scaler.to_json(), "columns": list(config["columns"])}))
    (out / "trial.json").write_text(json.dumps(dict(config), default=str, indent=1))
    idx = data.test_idx
    pd.DataFrame({
        # The candle the forecast is made from (its open time; the forecast uses its close).
        "timestamp": pd.to_datetime(data.timestamps[idx], utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "close": data.close[idx],
        "y_true": data.y[idx],
        "y_pred": test_pred,
        "y_persistence": data.persistence[idx],
    }).to_csv(out / "predictions.csv", index=False, float_format="%.10g")


def train_trial(config: dict[str, Any], *, datasets: Mapping[str, Prepared]) -> None:
    """Ray Tune entry point (wrapped with ``tune.with_parameters(..., datasets=...)``).

    Reports every epoch; the last report carries the final scores and a checkpoint with
    the model, scaler and test predictions of the best epoch.
    """
    from trainables.reporting import report

    configure_tensorflow(int(config.get("threads", 1)))
    data = datasets[config["group"]]
    with tempfile.TemporaryDirectory(prefix="tf-trial-") as tmp:
        final = fit_trial(config, data, save_dir=Path(tmp))
        report({**final, "done": True, "epoch": final["epochs"]}, checkpoint_dir=Path(tmp))

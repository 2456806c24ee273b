"""A stand-in trial that trains nothing: for measuring the sweep driver, not the models.

Hidden hook for ``benchmarks/driver_10k.py``: with ``TUNEFACTORY_SYNTHETIC_EPOCHS=K`` in the
environment of the driver (``cluster.ray_runtime.init_ray`` passes it on to the workers),
``cluster.tune_trial.train_trial`` runs :func:`synthetic_trial` instead of
:func:`trainables.trial.fit.run_trial`. The driver then sees exactly what a real trial
sends it, K epoch rows with the real metric keys and a final row with every validation
and test score, and the trial folder gets the same files (``scaler.json``, ``trial.json``,
the test predictions, a ``model.keras``), in milliseconds and without TensorFlow, so a
10,000-trial sweep runs in minutes on 2 cores. The scores are real scores of a fake
forecast (persistence plus seeded noise) on the group's real spans. Never set it for a
real sweep: nothing is learned, and the model file is a placeholder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from trainables.evaluation.scores import span_scores
from trainables.features.dataset import Prepared, fit_scaler
from trainables.trial.config import TrialConfig
from trainables.trial.fit import save_trial_files
from trainables.trial.keras_runtime import Sink

#: The environment variable that turns the hook on (value: epochs per trial).
ENV = "TUNEFACTORY_SYNTHETIC_EPOCHS"

#: Size of the placeholder ``model.keras`` (bytes), about a tiny MLP's real file.
PLACEHOLDER_MODEL_BYTES = 20_000


def synthetic_epochs() -> int:
    """Epochs per synthetic trial from :data:`ENV` (0: the hook is off)."""
    try:
        return max(0, int(os.environ.get(ENV, "0")))
    except ValueError:
        return 0


def synthetic_trial(config: TrialConfig, data: Prepared, *, sink: Sink, save_dir: Path | None,
                    epochs: int) -> dict[str, Any]:
    """Report ``epochs`` synthetic epochs like a real trial, save its files, return its final scores.

    Args:
        config: the trial (its seed draws the fake forecast, so a trial is reproducible).
        data: its group's prepared arrays (the real spans are scored).
        sink: receives every epoch's row (in a sweep: Tune's report).
        save_dir: where the checkpoint files go (None: not saved).
        epochs: epochs to report (>= 1).

    Returns:
        The final metrics, with the same keys :func:`trainables.trial.fit.fit_trial` returns.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    cols = data.column_index(config.columns)
    scaler = fit_scaler(data, cols)
    noise = float(rng.uniform(0.2, 1.0))  # how far from persistence this "model" is
    preds = {span: data.persistence[idx] + noise * rng.standard_normal(len(idx)) * scaler.y_std * 0.1
             for span, idx in (("val", data.val_idx), ("test", data.test_idx))}
    persist_val = float(np.sqrt(np.mean((data.y[data.val_idx] - data.persistence[data.val_idx]) ** 2)))
    final_val = float(np.sqrt(np.mean((data.y[data.val_idx] - preds["val"]) ** 2)))
    best, best_epoch = float("inf"), 0
    for e in range(1, epochs + 1):
        val = final_val * (1.0 + 0.05 * (epochs - e) / epochs) * float(rng.uniform(0.98, 1.02))
        if val < best:
            best, best_epoch = val, e
        sink({"epoch": e, "loss": val / max(scaler.y_std, 1e-12), "val_rmse": val, "val_rmse_best": best,
              "val_ratio_best": best / persist_val, "best_epoch": best_epoch,
              "train_seconds": time.perf_counter() - t0})
    final: dict[str, Any] = {"epochs": epochs, "best_epoch": best_epoch, "n_params": 0,
                             "setup_seconds": 0.0}
    for span, idx in (("val", data.val_idx), ("test", data.test_idx)):
        final.update(span_scores(data, idx, preds[span], span, spikes=span == "test"))
    final["val_rmse_best"] = best
    final["val_ratio_best"] = best / persist_val
    final["train_seconds"] = time.perf_counter() - t0
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        (save_dir / "model.keras").write_bytes(b"\0" * PLACEHOLDER_MODEL_BYTES)
        save_trial_files(save_dir, scaler, data, config, preds["test"])
    return final

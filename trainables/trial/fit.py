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

from trainables.evaluation.scores import span_scores
from trainables.features.dataset import Prepared, Scaler, fit_scaler, labels, windows

_TF_THREADS: int | None = None
_WORKER_TRIALS = 0  # trials this process has run (a reused worker runs many)


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

    # Each trial builds new models, so TF's "N out of the last M calls triggered
    # retracing" warning fires in every reused worker; it is expected here, not a bug.
    tf.get_logger().setLevel("ERROR")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TF already initialised in this process (e.g. by a test); keep its pools
    gpus = tf.config.list_physical_devices("GPU")
    cap = gpu_memory_limit_mb(_gpu_share(), _gpu_total_mb()) if gpus else None
    for gpu in gpus:
        # Several trials share one GPU (resources.gpus < 1): cap each at its share of the
        # card, or at least grow on demand instead of grabbing it all. Both must be set
        # before TF first uses the GPU; TF_FORCE_GPU_ALLOW_GROWTH in the worker env covers
        # code that touches it earlier.
        try:
            if cap:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=cap)])
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # already initialised in this process; keep its settings
    _TF_THREADS = threads


def gpu_memory_limit_mb(share: float, total_mb: float | None, *, reserve_mb: int = 512) -> int | None:
    """Per-trial GPU memory cap: the trial's share of the card less a CUDA-context reserve.

    None (grow on demand instead) for a whole GPU or more, no GPU, or an unknown card size.
    ``TUNEFACTORY_GPU_MEMORY_MB`` overrides the computed cap.
    """
    forced = os.environ.get("TUNEFACTORY_GPU_MEMORY_MB")
    if forced:
        return int(float(forced))
    if not total_mb or share <= 0 or share >= 1:
        return None
    return max(256, int(total_mb * share) - reserve_mb)


def _gpu_share() -> float:
    """GPUs Ray reserved for this trial (0.25 when four trials share a card)."""
    try:
        import ray

        return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    except Exception:
        return 0.0


def _gpu_total_mb() -> float | None:
    """Memory of the first visible GPU in MB (``nvidia-smi``), None when unknown."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", visible],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return float(out.strip().splitlines()[0])
    except Exception:
        return None


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

    from trainables.models.families import build_model
    from trainables.trial.keras_runtime import EpochReporter, Forward

    t0 = time.perf_counter()
    keras.backend.clear_session(free_memory=False)
    _forget_custom_gradients()
    _collect_garbage()
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
    # Keras (TF backend, no distribution strategy) defers creating the optimizer's slot
    # variables to the first trace of the train step; TF must then trace that step a second
    # time without variable creation. Creating them now halves the per-model tracing cost.
    model.optimizer.build(model.trainable_variables)
    persist_val = float(np.sqrt(np.mean((data.y[data.val_idx] - data.persistence[data.val_idx]) ** 2)))
    forward = Forward(model)
    cb = EpochReporter(y_std=scaler.y_std, persistence_rmse=persist_val, patience=int(config.get("patience", 0)),
                       validation=(xva, yva), sink=sink, forward=forward)
    setup_s = time.perf_counter() - t0
    model.fit(xtr, ytr, batch_size=int(config["batch_size"]), epochs=int(config["max_epochs"]),
              callbacks=[cb], verbose=0, shuffle=True)
    cb.restore_best()

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
        save_artifacts(save_dir, model, scaler, data, config, preds["test"])
    del model, xtr, xva
    return final


_FROZEN = False


def _forget_custom_gradients() -> None:
    """Drop the gradient functions earlier trials' traces registered process-wide.

    Keras' train step all-reduces the loss through TF's default distribution strategy,
    which registers a ``CustomGradient-N`` function in TF's global gradient registry at
    every trace, and never removes it. Each one closes over tensors of its trace, so it
    keeps that trial's whole graph alive: ~6 MB and ~10k Python objects per trial in a
    reused worker, which also made every later garbage collection slower. The functions
    are only looked up while their own graph is being differentiated, at trace time, so
    once that trial is over they can go. (Private TF state: skipped if it moves.)
    """
    try:
        from tensorflow.python.framework import ops as tf_ops

        registry = tf_ops.gradient_registry._registry
    except (ImportError, AttributeError):
        return
    for name in [k for k in registry if k.startswith("CustomGradient-")]:
        del registry[name]


def _collect_garbage() -> None:
    """Free the previous trial's Keras graph cycles, cheaply.

    A full ``gc.collect()`` walks every object TensorFlow and Keras ever made (~0.2 s here,
    twice per trial before this). The first call freezes what survives it (imports, the
    dataset, thread pools: objects that live as long as the worker) into the permanent
    generation, so later collections walk only what trials made since.
    """
    global _FROZEN
    gc.collect()
    if not _FROZEN:
        gc.freeze()
        _FROZEN = True


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
    from trainables.trial.keras_runtime import report

    global _WORKER_TRIALS
    configure_tensorflow(int(config.get("threads", 1)))
    _WORKER_TRIALS += 1
    data = datasets[config["group"]]
    stage = checkpoint_staging_dir()
    final = fit_trial(config, data, save_dir=stage)
    # worker_pid / worker_trial show reuse at work: trials sharing a pid shared a process
    # (and its TensorFlow import); worker_trial counts trials that process has run.
    # Nothing after this report runs: Tune ends the trial's thread inside it.
    report({**final, "done": True, "epoch": final["epochs"], "worker_pid": os.getpid(),
            "worker_trial": _WORKER_TRIALS}, checkpoint_dir=stage)


def checkpoint_staging_dir(root: Path | None = None) -> Path:
    """An empty folder of this worker's to stage a trial's checkpoint in before Tune copies it.

    One folder per worker process, emptied for each trial, rather than a temporary folder
    per trial: Tune ends a trial's thread inside its final report, so a per-trial folder
    is only removed when garbage collection gets to it, and never for a worker's last
    trial. Folders of workers that no longer run are removed here, so at most one per
    live worker is left in the temp dir.
    """
    import shutil

    base = (root or Path(tempfile.gettempdir())) / f"tunefactory-{os.getuid() if hasattr(os, 'getuid') else 0}"
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob("worker-*"):
        pid = old.name.removeprefix("worker-")
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    stage = base / f"worker-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    return stage


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: leave its folder alone
    return True

"""The Keras/TensorFlow seam: the one module of a trial that imports them or touches their state.

Keras 3 changed callback and weight-restoring semantics, and the per-trial clean-up of a
reused worker reaches into private TensorFlow state, so everything a trial does with
Keras or TensorFlow is here, behind a few calls, and :mod:`trainables.trial.fit` (the
trial's orchestration: windows, scaler, scores, artifacts) imports neither:

* once per process: :func:`configure_tensorflow` (thread pools, GPU memory cap);
* per trial: :func:`new_session` (clear the last trial's state, seed), :func:`compile_model`
  (optimizer and loss exactly as configured), :class:`EpochReporter` and :func:`train`
  (early stopping on validation RMSE, one row per epoch to a caller's sink), :class:`Forward`
  (the traced inference pass), :func:`save_model`;
* outside a trial: :func:`load_model` and :func:`predict_eager` (forecasts from a saved model).

Keras is imported on first use of a Keras-facing name, not with this module: the sweep
driver imports the trial modules to hand the trainable to Ray, and importing TensorFlow
there cost ~3 s of CPU on a 2-core machine while the workers were importing it themselves.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainables.errors import RunError
from trainables.records import excerpt
from trainables.trial.config import TrialConfig

#: Receives one result row per epoch (Tune's report in a sweep, a list's append in a test).
Sink = Callable[[dict[str, Any]], None]


class TrialDiverged(RuntimeError):
    """The training loss became NaN/inf; the trial is recorded as failed with this reason."""


# ----------------------------------------------------------------------------- once per process
_TF_THREADS: int | None = None


def import_quietly() -> None:
    """Import TensorFlow and Keras once, without their C++ start-up lines when TF is told to be quiet.

    TensorFlow 2.21 logs through absl, which prints INFO lines (oneDNN, CPU features) to
    file descriptor 2 before ``TF_CPP_MIN_LOG_LEVEL`` can apply: 5 lines before every
    ``tunefactory forecast`` answer or one-line error. With ``TF_CPP_MIN_LOG_LEVEL`` >= 1
    (the CLI sets 2) descriptor 2 points to /dev/null during the import only; an import
    that fails still raises its Python error.
    """
    import sys

    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() in ("", "0"):
        import keras
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def configure_tensorflow(threads: int, *, gpu_share: float = 0.0) -> None:
    """Size TF's thread pools once per process (they cannot change after TF runs an op).

    Two trials with one thread each beat one trial with two threads on small models, so a
    trial gets as many threads as CPUs it reserved, not the whole machine.

    Args:
        threads: intra- and inter-op threads.
        gpu_share: GPUs reserved for this process (0.25 when four trials share a card); the
            GPU memory cap is this share of the card (see :func:`gpu_memory_limit_mb`).
    """
    global _TF_THREADS
    if _TF_THREADS is not None:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_quietly()
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
    cap = gpu_memory_limit_mb(gpu_share, _gpu_total_mb()) if gpus else None
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


# ----------------------------------------------------------------------------- per trial
def new_session(seed: int) -> None:
    """Drop the previous trial's Keras state (a reused worker runs many) and seed this trial."""
    import keras

    keras.backend.clear_session(free_memory=False)
    _forget_custom_gradients()
    _collect_garbage()
    keras.utils.set_random_seed(seed)


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


_FROZEN = False


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


def build_optimizer(name: str, *, learning_rate: float, weight_decay: float) -> Any:
    """The Keras optimizer ``name``, applying exactly the configured weight decay.

    Keras 3 applies weight decay the same (decoupled) way in every optimizer; 0 means none
    (``None`` for Keras, except AdamW, which insists on a float and decays by 0 × w).

    Args:
        name: ``adam``, ``adamw``, ``sgd`` (momentum 0.9) or ``rmsprop``.
        learning_rate: step size.
        weight_decay: decay rate; 0 = none.

    Raises:
        RunError: an unknown optimizer name.
    """
    import keras

    opts = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
            "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    if name not in opts:
        raise RunError(f"trial config: unknown optimizer {name!r}; use one of {', '.join(opts)}")
    kw: dict[str, Any] = {"momentum": 0.9} if name == "sgd" else {}
    decay = float(weight_decay) if name == "adamw" else (float(weight_decay) or None)
    return opts[name](learning_rate=learning_rate, weight_decay=decay, **kw)


def build_loss(name: str) -> Any:
    """The Keras loss ``name`` (``mse``, ``mae`` or ``huber``).

    Raises:
        RunError: an unknown loss name.
    """
    import keras

    losses = {"mse": keras.losses.MeanSquaredError, "mae": keras.losses.MeanAbsoluteError,
              "huber": keras.losses.Huber}
    if name not in losses:
        raise RunError(f"trial config: unknown loss {name!r}; use one of {', '.join(losses)}")
    return losses[name]()


def compile_model(model: Any, config: TrialConfig) -> Any:
    """Compile ``model`` with the trial's optimizer, loss and step settings; return it."""
    model.compile(
        optimizer=build_optimizer(config.optimizer, learning_rate=config.learning_rate,
                                  weight_decay=config.weight_decay),
        loss=build_loss(config.loss),
        steps_per_execution=config.steps_per_execution,
        jit_compile=config.jit_compile,
    )
    # Keras (TF backend, no distribution strategy) defers creating the optimizer's slot
    # variables to the first trace of the train step; TF must then trace that step a second
    # time without variable creation. Creating them now halves the per-model tracing cost.
    model.optimizer.build(model.trainable_variables)
    return model


def train(model: Any, x: np.ndarray, y: np.ndarray, *, reporter: Any, batch_size: int, epochs: int) -> None:
    """Fit ``model`` with ``reporter`` (an :class:`EpochReporter`), then restore its best epoch."""
    model.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=[reporter], verbose=0, shuffle=True)
    reporter.restore_best()


def train_fixed(model: Any, x: np.ndarray, y: np.ndarray, *, batch_size: int, epochs: int) -> list[float]:
    """Fit ``model`` for exactly ``epochs`` epochs, no early stopping; return each epoch's loss.

    A production refit has no validation span to stop on: the epoch count is the one early
    stopping chose for the scored model.

    Raises:
        TrialDiverged: the training loss became NaN/inf.
    """
    hist = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True)
    losses = [float(v) for v in hist.history.get("loss", [])]
    for i, v in enumerate(losses):
        if not math.isfinite(v):
            raise TrialDiverged(f"training loss became {v} at epoch {i + 1}; lower the learning rate")
    return losses


# ----------------------------------------------------------------------------- inference and files
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


def save_model(model: Any, path: Path) -> None:
    """Write ``model`` to ``path`` (a ``.keras`` file) for :func:`load_model`."""
    model.save(path)


def load_model(path: Path, *, hint: str = "export the winner again") -> Any:
    """A model saved by :func:`save_model`, uncompiled (for inference), custom layers included.

    Keras' safe mode stays on: a config that names a Python lambda, or a class outside
    Keras and our layers (``os.system``), is refused.

    Raises:
        RunError: the file is missing, not a ``.keras`` archive, or its config is refused
            or does not build (one line; Keras' own message cut to an excerpt).
    """
    if not path.is_file():
        raise RunError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'file not found'}; {hint}")
    import_quietly()
    import keras

    # Lazy: it imports Keras (~3 s); importing it registers the custom layers a model may use.
    import trainables.models.attention  # noqa: F401

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # a hostile archive may raise anything from zipfile, h5py or Keras
        raise RunError(f"{path}: {_load_failure(e, path)}; {hint}") from None


def _load_failure(e: Exception, path: Path) -> str:
    """Why Keras could not load ``path``, in a few words (its own messages run to KBs and repeat the path)."""
    import zipfile

    text = " ".join(str(e).replace(str(path), "FILE").split()) or e.__class__.__name__
    if "safe_mode" in text:
        return "refused by Keras safe mode (its config holds Python code: a lambda)"
    if isinstance(e, zipfile.BadZipFile) or "File not found" in text or "zip" in text.lower():
        return "not a .keras archive (a zip holding config.json and the weights)"
    if "Could not locate" in text or "could not be deserialized" in text or "Unknown layer" in text:
        return "refused: its config names a class that is neither a Keras layer nor one of ours"
    return f"not a loadable Keras model ({excerpt(text, 80)})"


# ----------------------------------------------------------------------------- the epoch callback
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
            sink: called with each epoch's row (in a sweep: Tune's report).
            validation: ``(x, y)`` standardised validation windows and labels. Scored here with
                :class:`Forward` rather than Keras' ``validation_data``, which would trace a
                test step (loss, metrics, iterator loop) per model: ~1 s of fixed cost per trial.
            forward: the model's inference pass (default: a :class:`Forward` of the model).
        """

        def __init__(self, *, y_std: float, persistence_rmse: float, patience: int,
                     validation: tuple[np.ndarray, np.ndarray], sink: Sink,
                     forward: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
            super().__init__()
            self.x_val, self.y_val = validation
            self.forward = forward
            self.y_std = y_std
            self.persistence_rmse = persistence_rmse
            self.patience = patience
            self.sink = sink
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

"""Seconds per training epoch of every model family at its default hyperparameters.

The setting mirrors the BTC-volatility Synthesizer paper: windows of 64 steps, 16 features,
batch 32, about 2000 windows (the size of a daily BTC history). Data are random, since only
the cost matters. Each family trains one warm-up epoch (graph tracing) and then three timed
epochs; the table reports their median.

Usage::

    python benchmarks/model_epoch_seconds.py [--families tcn transformer ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np

from trainables.models.families import MODELS, build_model, resolve_params

LOOKBACK, FEATURES, BATCH, WINDOWS = 64, 16, 32, 2000


class _EpochTimer(keras.callbacks.Callback):
    """Wall-clock and process-CPU seconds of each epoch (not model building or compilation)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)


def epoch_seconds(family: str, *, timed_epochs: int = 3, seed: int = 0) -> tuple[float, float, int]:
    """Median seconds per epoch of ``family`` after one warm-up epoch.

    Args:
        family: key of :data:`trainables.models.families.MODELS`.
        timed_epochs: epochs after the warm-up whose median is reported.
        seed: seed of the random data and weights.

    Returns:
        ``(median wall seconds per epoch, median CPU seconds per epoch, parameter count)``.
        CPU seconds sum over all threads; they move less than wall time when other
        processes compete for the cores.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(WINDOWS, LOOKBACK, FEATURES)).astype("float32")
    y = rng.normal(size=(WINDOWS, 1)).astype("float32")
    model = build_model(family, {}, lookback=LOOKBACK, n_features=FEATURES)
    model.compile(optimizer="adam", loss="mse")
    timer = _EpochTimer()
    model.fit(x, y, batch_size=BATCH, epochs=1 + timed_epochs, verbose=0, callbacks=[timer])
    return (statistics.median(timer.seconds[1:]), statistics.median(timer.cpu_seconds[1:]),
            model.count_params())


def main(argv: list[str] | None = None) -> int:
    """Print a table of seconds per epoch for the chosen families."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=sorted(MODELS), default=list(MODELS),
                        metavar="FAMILY", help=f"families to time (default: all of {', '.join(MODELS)})")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up (default 3)")
    args = parser.parse_args(argv)

    print(f"lookback={LOOKBACK} features={FEATURES} batch={BATCH} windows={WINDOWS} "
          f"keras={keras.__version__} backend={keras.backend.backend()} cpus={os.cpu_count()} "
          # Other processes on the box skew the timings; the load average makes that visible.
          f"load1={os.getloadavg()[0]:.1f}")
    print(f"{'family':<26}{'params':>10}{'s/epoch':>10}{'cpu s/epoch':>13}  defaults")
    for family in args.families:
        seconds, cpu_seconds, n_params = epoch_seconds(family, timed_epochs=args.epochs)
        defaults = " ".join(f"{k}={v}" for k, v in resolve_params(family, {}).items())
        print(f"{family:<26}{n_params:>10,}{seconds:>10.2f}{cpu_seconds:>13.2f}  {defaults}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

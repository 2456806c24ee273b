"""Benchmark: per-trial cost in one process, tunefactory's trial vs the plain Keras way.

    .venv/bin/python benchmarks/trial_overhead.py --trials 16 --epochs 5

No Ray: both sides run the same N configs (the laptop preset's space, BTC-USDT 1d, seeded)
one after another in this process with one TensorFlow thread, so the difference is only
what a trial does per model. The plain side is ``fit(validation_data=...)`` then
``predict``; tunefactory's is :func:`trainables.trial.fit.fit_trial` (optimizer built
before ``fit`` so the train step is traced once, one traced inference pass for validation
and test, earlier trials' graphs released). Prints the mean first-epoch time (tracing),
the mean later-epoch time, the total, and the resident memory after the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def plain_keras_trial(cfg: dict[str, Any], data: Any) -> list[float]:
    """One config the plain-Keras way; returns the end time of every epoch."""
    import keras

    from trainables.features.dataset import fit_scaler, labels, windows
    from trainables.models.families import build_model

    stamps: list[float] = []
    keras.utils.set_random_seed(int(cfg["seed"]))
    cols = data.column_index(cfg["columns"])
    sc = fit_scaler(data, cols)
    lb = int(cfg["lookback"])
    xs = {s: windows(data, cols, getattr(data, f"{s}_idx"), lb, sc) for s in ("train", "val", "test")}
    ys = {s: labels(data, getattr(data, f"{s}_idx"), sc) for s in ("train", "val", "test")}
    model = build_model(cfg["family"], cfg["model"], lookback=lb, n_features=len(cols))
    model.compile(optimizer=keras.optimizers.Adam(float(cfg["learning_rate"])), loss="mse")
    cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: stamps.append(time.perf_counter()))
    model.fit(xs["train"], ys["train"], batch_size=int(cfg["batch_size"]), epochs=int(cfg["max_epochs"]),
              validation_data=(xs["val"], ys["val"]), verbose=0, callbacks=[cb])
    model.predict(xs["test"], verbose=0)
    return stamps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--side", choices=("both", "plain", "tunefactory"), default="both")
    a = ap.parse_args()
    if a.side == "both":
        # Each side in a fresh interpreter, so neither inherits the other's TF state.
        import subprocess

        for side in ("plain", "tunefactory"):
            subprocess.run([sys.executable, __file__, "--trials", str(a.trials), "--epochs", str(a.epochs),
                            "--side", side], check=True)
        return

    from cluster.searcher import GroupedSearcher
    from cluster.tune_trial import worker_rss_mb
    from search_spaces.loader import load_spec
    from search_spaces.recipes import prepare_groups
    from trainables.trial.fit import fit_trial
    from trainables.trial.keras_runtime import configure_tensorflow

    configure_tensorflow(1)
    import keras  # noqa: F401  (import time is not a per-trial cost)

    overrides = ["data.assets=[BTC-USDT]", "data.timeframes=[1d]", "search.algorithm=random",
                 f"search.num_samples={a.trials}", f"training.max_epochs={a.epochs}", "training.patience=0",
                 "scheduler.kind=none"]
    spec = load_spec(ROOT / "search_spaces" / "laptop.yaml", overrides).spec
    data = prepare_groups(spec)["BTC-USDT/1d"]
    searcher = GroupedSearcher(spec)
    configs = [searcher.suggest(f"bench{i}") for i in range(a.trials)]

    for side in (a.side,):
        firsts, laters = [], []
        t_all = time.perf_counter()
        for cfg in configs:
            t0 = time.perf_counter()
            if side == "plain":
                stamps = plain_keras_trial(cfg, data)
            else:
                rows: list[float] = []
                fit_trial(cfg, data, sink=lambda row, rows=rows: rows.append(time.perf_counter()))
                stamps = rows
            firsts.append(stamps[0] - t0)
            if len(stamps) > 1:
                laters.append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
        total = time.perf_counter() - t_all
        print(f"{side:11s}: {a.trials} trials in {total:6.1f}s ({total / a.trials:.2f} s/trial); "
              f"first epoch {sum(firsts) / len(firsts):.2f}s, later epochs "
              f"{sum(laters) / max(1, len(laters)):.3f}s; peak RSS {worker_rss_mb():.0f} MB", flush=True)


if __name__ == "__main__":
    main()

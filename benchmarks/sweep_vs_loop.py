"""Benchmark: the same N configs as a tunefactory sweep vs a bare sequential Keras loop.

    .venv/bin/python benchmarks/sweep_vs_loop.py --trials 16 --epochs 5

Both sides train identical configs (same seeded sampler, same data, same models, same
epochs, no ASHA, no early stopping) on BTC-USDT 1d with the laptop preset's space. The
bare loop is what a user writes by hand: one process, TensorFlow with its default thread
pools, ``model.fit(..., validation_data=...)`` then ``model.predict`` per config, trials one
after another. The sweep is ``tunefactory run`` (a fresh process, Ray start-up included).
Prints trials/hour for both and their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bare_keras_trial(cfg: dict, data: object) -> float:
    """One config the plain-Keras way; returns the test RMSE in target units."""
    import keras
    import numpy as np

    from trainables.features.dataset import fit_scaler, labels, windows
    from trainables.models.families import build_model

    keras.utils.set_random_seed(int(cfg["seed"]))
    cols = data.column_index(cfg["columns"])  # type: ignore[attr-defined]
    sc = fit_scaler(data, cols)  # type: ignore[arg-type]
    lb = int(cfg["lookback"])
    xs = {s: windows(data, cols, getattr(data, f"{s}_idx"), lb, sc) for s in ("train", "val", "test")}  # type: ignore[arg-type]
    ys = {s: labels(data, getattr(data, f"{s}_idx"), sc) for s in ("train", "val", "test")}  # type: ignore[arg-type]
    model = build_model(cfg["family"], cfg["model"], lookback=lb, n_features=len(cols))
    model.compile(optimizer=keras.optimizers.Adam(float(cfg["learning_rate"])), loss="mse",
                  metrics=[keras.metrics.RootMeanSquaredError()])
    model.fit(xs["train"], ys["train"], batch_size=int(cfg["batch_size"]), epochs=int(cfg["max_epochs"]),
              validation_data=(xs["val"], ys["val"]), verbose=0)
    pred = model.predict(xs["test"], verbose=0)[:, 0]
    return float(np.sqrt(np.mean((pred - ys["test"]) ** 2)) * sc.y_std)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--spec", default=str(ROOT / "search_spaces" / "laptop.yaml"))
    ap.add_argument("--asset", default="BTC-USDT")
    ap.add_argument("--timeframe", default="1d")
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument("--as-configured", action="store_true",
                    help="keep the preset's early stopping (patience) and ASHA on the sweep side, as users "
                         "run it; the loop still trains every epoch (the prior art's fixed-epoch loop)")
    a = ap.parse_args()

    from cluster.searcher import GroupedSearcher
    from search_spaces.loader import load_spec
    from search_spaces.recipes import prepare_groups

    overrides = [f"data.assets=[{a.asset}]", f"data.timeframes=[{a.timeframe}]", "search.algorithm=random",
                 f"search.num_samples={a.trials}", f"training.max_epochs={a.epochs}"]
    if not a.as_configured:
        overrides += ["training.patience=0", "scheduler.kind=none"]  # identical work on both sides
    loaded = load_spec(a.spec, overrides)
    spec = loaded.spec
    datasets = prepare_groups(spec)
    group = f"{a.asset}/{a.timeframe}"
    searcher = GroupedSearcher(spec)
    configs = [searcher.suggest(f"bench{i}") for i in range(a.trials)]

    loop_s = float("nan")
    if not a.skip_loop:
        t0 = time.perf_counter()
        for cfg in configs:
            bare_keras_trial(cfg, datasets[group])
        loop_s = time.perf_counter() - t0
        print(f"bare loop : {a.trials} trials in {loop_s:7.1f}s -> {a.trials * 3600 / loop_s:8.0f} trials/hour",
              flush=True)

    # The sweep runs in a fresh interpreter so the loop's TF state cannot help or hurt it.
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "cluster.cli", "run", a.spec, "--name", "bench", "--storage", tmp,
               *[x for o in overrides for x in ("--set", o)]]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        sweep_s = time.perf_counter() - t0
        if out.returncode != 0:
            print(out.stdout[-3000:], out.stderr[-3000:])
            raise SystemExit("sweep failed")
        fit_line = next((ln for ln in out.stdout.splitlines() if "sweep finished in" in ln), "")
        tune_s = float(fit_line.split("finished in")[1].strip().rstrip("s")) if fit_line else float("nan")
    print(f"sweep     : {a.trials} trials in {sweep_s:7.1f}s -> {a.trials * 3600 / sweep_s:8.0f} trials/hour "
          f"(whole command incl. Python/Ray/TF start-up; Tuner.fit alone {tune_s:.0f}s -> "
          f"{a.trials * 3600 / tune_s:.0f} trials/hour)")
    if not a.skip_loop:
        print(f"ratio     : sweep / loop = {loop_s / sweep_s:.2f}x (whole command), "
              f"{loop_s / tune_s:.2f}x (Tuner.fit alone)")


if __name__ == "__main__":
    main()

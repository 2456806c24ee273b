"""The Ray/Keras reporting layer: worker retirement, the traced inference pass, lazy Keras."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def _pid_trial(config: dict[str, Any]) -> None:
    from trainables.trial.keras_runtime import report

    report({"score": float(config["a"]), "pid": os.getpid()})


def _sweep_pids(tmp_path: Path, max_rss_mb: float) -> list[tuple[int, str]]:
    from ray import tune

    from trainables.trial.keras_runtime import bounded_trainable

    tuner = tune.Tuner(
        tune.with_resources(bounded_trainable(_pid_trial, max_rss_mb=max_rss_mb), {"cpu": 1}),
        param_space={"a": tune.grid_search([1, 2, 3, 4])},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="pids", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)))
    results = tuner.fit()
    return [(int(r.metrics["pid"]), repr(r.error)) for r in results]


def test_worker_over_memory_limit_is_replaced_and_no_trial_fails(tmp_path: Path, ray_local: None) -> None:
    # Limit 1 MB: every worker is over it after its first trial, so each trial gets a fresh
    # process, and all four still finish (Ray's reset_config=False route failed them).
    out = _sweep_pids(tmp_path, max_rss_mb=1.0)
    assert [err for _, err in out] == ["None"] * 4
    assert len({pid for pid, _ in out}) == 4


def test_worker_under_memory_limit_is_reused(tmp_path: Path, ray_local: None) -> None:
    out = _sweep_pids(tmp_path, max_rss_mb=1e9)
    assert [err for _, err in out] == ["None"] * 4
    assert len({pid for pid, _ in out}) == 1


def test_forward_traces_once_and_matches_eager() -> None:
    from trainables.models.families import build_model
    from trainables.trial.keras_runtime import Forward, predict_eager

    model = build_model("gru", {"units": 4, "layers": 1}, lookback=5, n_features=3)
    fwd = Forward(model, batch=7)
    x = np.random.default_rng(0).normal(size=(20, 5, 3)).astype(np.float32)
    z = fwd(x)  # three batches: 7, 7, 6 (a partial one)
    fwd(x[:3])
    assert z.shape == (20,)
    np.testing.assert_allclose(z, predict_eager(model, x), rtol=1e-5, atol=1e-6)
    assert fwd._fn.experimental_get_tracing_count() == 1


def test_reporting_module_does_not_import_tensorflow() -> None:
    # The sweep driver imports bounded_trainable from here; TensorFlow in the driver cost
    # ~3 s of CPU while the workers imported it too.
    import subprocess
    import sys

    code = ("import sys; import trainables.trial.keras_runtime as r; r.bounded_trainable; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.split() == ["False", "False"]


def test_unknown_attribute_of_reporting_module_raises() -> None:
    import trainables.trial.keras_runtime as r

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        r.Nope  # noqa: B018


def test_reused_process_does_not_keep_earlier_trials_graphs() -> None:
    # TF's default strategy registers a global custom gradient per trace, which kept every
    # earlier trial's graph alive in a reused worker (~6 MB each). After the fix, the
    # number of live traced train graphs stays at one however many trials ran.
    import gc

    from trainables.data.candles import load_candles
    from trainables.features.dataset import Split, prepare
    from trainables.features.indicators import make_member
    from trainables.trial.fit import fit_trial

    data = prepare(load_candles("BTC-USDT", "1d"), [make_member("log_return")], max_lookback=4,
                   split=Split(0.7, 0.15, 0.15))
    cfg = {"family": "gru", "model": {"units": 4, "layers": 1, "dropout": 0.0}, "columns": ["log_return_1"],
           "lookback": 4, "batch_size": 32, "learning_rate": 1e-3, "max_epochs": 1, "patience": 0, "seed": 0}

    def live_train_graphs() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects()
                   if type(o).__name__ == "FuncGraph" and getattr(o, "name", "") == "one_step_on_data")

    for _ in range(3):
        fit_trial(cfg, data, sink=lambda row: None)
    assert live_train_graphs() <= 1


def test_checkpoint_staging_dir_is_emptied_and_dead_workers_folders_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from trainables.trial.fit import checkpoint_staging_dir

    first = checkpoint_staging_dir(tmp_path)
    (first / "model.keras").write_text("old trial")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = first.parent / f"worker-{dead}"
    stale.mkdir()
    (stale / "model.keras").write_text("left by a killed worker")

    again = checkpoint_staging_dir(tmp_path)
    assert again == first and list(again.iterdir()) == []  # same folder, emptied for the next trial
    assert not stale.exists()


def _slow_to_stop_trial(config: dict[str, Any]) -> None:
    import time

    from trainables.trial.keras_runtime import report

    try:
        for i in range(5):
            report({"it": i + 1, "pid": os.getpid()})
    finally:
        time.sleep(3)  # the trial's thread takes a while to end once Tune stops it


def test_reused_worker_waits_for_a_slow_stopping_trial(tmp_path: Path, ray_local: None) -> None:
    # Tune waits TUNE_FUNCTION_THREAD_TIMEOUT_S (default 2 s) for the previous trial's
    # thread before reusing its worker, then fails the next trial. The sweep's workers get a
    # longer wait (cluster.sweep.WORKER_ENV), so every trial here still runs, on one worker.
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(_slow_to_stop_trial, {"cpu": 1}),
        param_space={"a": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="slow", verbose=0, stop={"it": 1},
                                  failure_config=tune.FailureConfig(max_failures=0)))
    results = tuner.fit()
    assert [repr(r.error) for r in results] == ["None"] * 3
    assert len({r.metrics["pid"] for r in results}) == 1

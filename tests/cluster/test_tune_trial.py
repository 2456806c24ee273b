"""The worker side of Ray Tune: reports, worker reuse and retirement, checkpoint staging."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _pid_trial(config: dict[str, Any]) -> None:
    from cluster.tune_trial import report

    report({"score": float(config["a"]), "pid": os.getpid()})


def _sweep_pids(tmp_path: Path, max_rss_mb: float) -> list[tuple[int, str]]:
    from ray import tune

    from cluster.ray_runtime import bounded_trainable

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


def test_checkpoint_staging_dir_is_emptied_and_dead_workers_folders_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from cluster.tune_trial import checkpoint_staging_dir

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

    from cluster.tune_trial import report

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


def test_tune_trial_module_does_not_import_tensorflow() -> None:
    # The sweep driver imports train_trial from here to build its Tuner; TensorFlow in the
    # driver cost ~3 s of CPU while the workers imported it too.
    import subprocess
    import sys

    code = ("import sys; import cluster.tune_trial as t; t.train_trial; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["False", "False"]


def test_report_outside_tune_is_a_no_op() -> None:
    from cluster.tune_trial import in_tune, report, worker_rss_mb

    assert not in_tune()
    report({"x": 1.0})  # no Tune session: nothing to report to, and no error
    assert worker_rss_mb() > 0

"""The worker side of Ray Tune: the function trainable and what it reports.

Ray moved ``report`` between ``ray.air.session``, ``ray.train`` and ``ray.tune`` across 2.x
releases (in 2.60 ``ray.train.report`` raises inside Tune function trainables), so the
worker touches Tune through :func:`report` and :func:`in_tune` only. :func:`train_trial` is
the trainable the sweep and ``confirm`` hand to Tune (through ``tune.with_parameters``); the
trial itself is Ray-free (:func:`trainables.trial.fit.run_trial`) and gets :func:`report`
as the sink of its per-epoch rows.

The driver imports this module to build its Tuner, so nothing here imports TensorFlow at
import time (the workers import it themselves, once per process).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from ray import tune

from trainables.features.dataset import Prepared
from trainables.trial.config import TrialConfig
from trainables.trial.fit import run_trial
from trainables.trial.synthetic import synthetic_epochs, synthetic_trial

_WORKER_TRIALS = 0  # trials this process has run (a reused worker runs many)


def in_tune() -> bool:
    """True inside a Ray Tune trial (so the same code also runs in a plain process)."""
    try:
        return tune.get_context().get_trial_id() is not None
    except Exception:
        return False


def report(metrics: dict[str, Any], *, checkpoint_dir: Path | None = None) -> None:
    """Report one result row (and optionally a checkpoint folder) to Tune; no-op outside Tune."""
    if not in_tune():
        return
    ckpt = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
    # Every row says how large the worker is, so the driver can retire it whenever the
    # trial ends (finished, or cut by ASHA after any epoch): see cluster.ray_runtime.bounded_trainable.
    tune.report({**metrics, "worker_rss_mb": worker_rss_mb()}, checkpoint=ckpt)


def worker_rss_mb() -> float:
    """Peak resident memory of this process in MB (stdlib only; works in any worker)."""
    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _gpu_share() -> float:
    """GPUs Ray reserved for this trial (0.25 when four trials share a card)."""
    try:
        return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    except Exception:
        return 0.0


def train_trial(config: dict[str, Any], *, datasets: Mapping[str, Prepared]) -> None:
    """Ray Tune entry point (wrapped with ``tune.with_parameters(..., datasets=...)``).

    Reports every epoch; the last report carries the final scores and a checkpoint with
    the model, scaler and test predictions of the best epoch.

    Args:
        config: the trial config as Tune passes it (a dict; see ``TrialConfig``).
        datasets: every group's prepared arrays, by group key (``ASSET/TF``).
    """
    global _WORKER_TRIALS
    cfg = TrialConfig.from_dict(config)
    _WORKER_TRIALS += 1
    stage = checkpoint_staging_dir()
    fake = synthetic_epochs()  # benchmarks/driver_10k.py only: see trainables.trial.synthetic
    if fake:
        final = synthetic_trial(cfg, datasets[cfg.group], sink=report, save_dir=stage, epochs=fake)
    else:
        final = run_trial(cfg, datasets[cfg.group], sink=report, save_dir=stage, gpu_share=_gpu_share())
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

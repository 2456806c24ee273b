"""Turn a validated spec into a Ray Tune sweep, run it, and hand the run directory to reports.

Run directory (``<storage>/<name>/``): Ray's own experiment state and one folder per trial
(``result.json`` with every reported row, ``params.json``, the final checkpoint), plus
``spec.yaml`` (the fully merged spec) and ``groups.json`` (per asset/timeframe: sample
spans, persistence baselines, gaps) written by us before any trial starts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from search_spaces.loader import LoadedSpec
from search_spaces.schema import Spec
from trainables.data import load_candles
from trainables.dataset import Prepared, Split, prepare
from trainables.errors import RunError
from trainables.metrics import rmse

METRIC = "val_ratio_best"
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


def atomic_write(path: Path, text: str) -> None:
    """Write a file so readers see the old or the new content, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def prepare_groups(spec: Spec) -> dict[str, Prepared]:
    """Load candles and compute the full indicator pool once per (asset, timeframe)."""
    out: dict[str, Prepared] = {}
    for asset, tf in spec.groups:
        candles = load_candles(asset, tf, path=spec.data.path)
        frame = candles.frame
        if spec.data.start or spec.data.end:
            import pandas as pd

            keep = pd.Series(True, index=frame.index)
            if spec.data.start:
                keep &= frame["timestamp"] >= pd.Timestamp(spec.data.start, tz="UTC")
            if spec.data.end:
                keep &= frame["timestamp"] < pd.Timestamp(spec.data.end, tz="UTC")
            candles = type(candles)(candles.asset, candles.timeframe, frame[keep].reset_index(drop=True),
                                    candles.source, candles.resampled_from, candles.gaps)
        out[f"{asset}/{tf}"] = prepare(
            candles, spec.features.pool, target=spec.target.kind, horizon=spec.target.horizon,
            max_lookback=spec.window.max_lookback,
            split=Split(spec.split.train, spec.split.val, spec.split.test))
    return out


def group_summary(p: Prepared) -> dict[str, Any]:
    """What reports need about a group without re-loading data: spans and baselines."""
    return {
        "asset": p.asset, "timeframe": p.timeframe, "target": p.target, "horizon": p.horizon,
        "source": p.source, "columns": p.columns, "max_lookback": p.max_lookback,
        "samples": {"train": len(p.train_idx), "val": len(p.val_idx), "test": len(p.test_idx)},
        "spans": {"train": p.span(p.train_idx), "val": p.span(p.val_idx), "test": p.span(p.test_idx)},
        "persistence_rmse": {"val": rmse(p.y[p.val_idx], p.persistence[p.val_idx]),
                             "test": rmse(p.y[p.test_idx], p.persistence[p.test_idx])},
        "gaps_dropped_samples": p.gaps_dropped, **p.meta,
    }


def resolve_run_dir(storage: str | Path, name: str, *, explicit_name: bool) -> Path:
    """Pick the run directory; never overwrite an existing run.

    An explicit ``--name`` that exists is an error (with the resume hint); a default name
    that exists gets a timestamp suffix, so ``make demo`` twice keeps both runs.
    """
    root = Path(storage).expanduser().resolve()
    run = root / name
    if run.exists() and any(run.iterdir()):
        if explicit_name:
            raise RunError(f"{run}: run directory already exists; continue it with `tunefactory resume {run}` "
                           "or choose another --name")
        run = root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return run


class _Progress:
    """One terminal line per finished trial (Ray's table is too wide for many groups)."""

    def __init__(self, total: int, stream: Any = sys.stdout) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream
        self.t0 = time.perf_counter()

    def line(self, trial: Any, *, error: bool = False) -> None:
        self.done += 1
        cfg, res = trial.config, trial.last_result or {}
        el = time.perf_counter() - self.t0
        head = f"[{self.done:>4}/{self.total}] {el:6.0f}s {cfg.get('group', '?'):<16} {cfg.get('family', '?'):<6}"
        if error:
            self.failed += 1
            print(f"{head} FAILED", file=self.stream, flush=True)
            return
        ratio = res.get(METRIC)
        skill = f"{(1 - ratio) * 100:+.2f}% vs persistence" if ratio else "no result"
        print(f"{head} val_rmse_best={res.get('val_rmse_best', float('nan')):.5g} ({skill}) "
              f"epochs={res.get('epoch', '?')}{'' if res.get('done') else ' (stopped by ASHA)'}",
              file=self.stream, flush=True)


def _callbacks(total: int) -> list[Any]:
    from ray.tune import Callback

    prog = _Progress(total)

    class ProgressCallback(Callback):
        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            prog.line(trial)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            prog.line(trial, error=True)

    return [ProgressCallback()]


def init_ray(address: str | None, *, num_cpus: int | None = None) -> None:
    """Connect to a cluster (``auto`` or ``ray://``/``HOST:PORT``) or start a local one.

    The local instance binds to loopback and starts no dashboard: nothing is exposed.
    """
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": WORKER_ENV}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=env, log_to_driver=False,
                 _node_ip_address="127.0.0.1")


def build_tuner(spec: Spec, datasets: Mapping[str, Prepared], run_dir: Path) -> Any:
    """The ``Tuner`` for a spec: grouped searcher, ASHA, resources, reuse of workers."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from cluster.searcher import GroupedSearcher
    from trainables.trainable import train_trial

    searcher = GroupedSearcher(spec, metric=METRIC, mode="min")
    if spec.scheduler.kind == "asha":
        # time_attr "epoch": the trial's final report repeats its last epoch number, so
        # ASHA never cuts the report that carries test scores and the checkpoint; max_t
        # is one past the last epoch for the same reason.
        scheduler: Any = ASHAScheduler(time_attr="epoch", max_t=spec.training.max_epochs + 1,
                                       grace_period=spec.scheduler.grace_period,
                                       reduction_factor=spec.scheduler.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    trainable = tune.with_resources(tune.with_parameters(train_trial, datasets=dict(datasets)),
                                    {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus})
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(metric=METRIC, mode="min", search_alg=searcher, scheduler=scheduler,
                                    num_samples=searcher.total, max_concurrent_trials=spec.search.max_concurrent,
                                    reuse_actors=True,
                                    trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(
            name=run_dir.name, storage_path=str(run_dir.parent),
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=_callbacks(searcher.total), verbose=0),
    )


def run_sweep(loaded: LoadedSpec, *, name: str | None = None, storage: str | None = None,
              address: str | None = None, num_cpus: int | None = None) -> Path:
    """Run a whole sweep and write its report; return the run directory.

    Args:
        loaded: the validated spec.
        name: run name (default: the spec's name, suffixed if it exists).
        storage: root folder for runs (default: the spec's ``storage``).
        address: Ray cluster address (``auto`` inside a cluster); local Ray when None.
        num_cpus: CPUs of the local Ray instance (default: all).
    """
    spec = loaded.spec
    run_dir = resolve_run_dir(storage or spec.storage, name or loaded.name, explicit_name=name is not None)
    t0 = time.perf_counter()
    datasets = prepare_groups(spec)  # fails on bad data before anything is written
    prep_s = time.perf_counter() - t0
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / "spec.yaml", yaml.safe_dump(loaded.raw, sort_keys=False))
    atomic_write(run_dir / "groups.json", json.dumps(
        {"spec_file": str(loaded.path), "name": run_dir.name, "prepare_seconds": prep_s,
         "groups": {g: group_summary(p) for g, p in datasets.items()}}, indent=1))
    print(f"tunefactory: {len(datasets)} asset/timeframe groups prepared in {prep_s:.1f}s; run dir {run_dir}",
          flush=True)
    init_ray(address, num_cpus=num_cpus)
    tuner = build_tuner(spec, datasets, run_dir)
    t1 = time.perf_counter()
    tuner.fit()
    print(f"tunefactory: sweep finished in {time.perf_counter() - t1:.0f}s", flush=True)
    from reports.build import build_report

    out = build_report(run_dir)
    print(f"tunefactory: leaderboard {out / 'index.html'}", flush=True)
    return run_dir


def resume_sweep(run_dir: Path, *, address: str | None = None, num_cpus: int | None = None) -> Path:
    """Continue an interrupted sweep in ``run_dir`` (finished trials are kept, not re-run)."""
    from ray import tune

    from search_spaces.loader import load_spec
    from trainables.trainable import train_trial

    run_dir = Path(run_dir).resolve()
    if not (run_dir / "spec.yaml").is_file():
        raise RunError(f"{run_dir}: not a tunefactory run directory (no spec.yaml)")
    if not tune.Tuner.can_restore(str(run_dir)):
        raise RunError(f"{run_dir}: no Ray Tune state to resume (the sweep never started); start it again "
                       "with `tunefactory run`")
    loaded = load_spec(run_dir / "spec.yaml")
    datasets = prepare_groups(loaded.spec)
    init_ray(address, num_cpus=num_cpus)
    trainable = tune.with_resources(tune.with_parameters(train_trial, datasets=datasets),
                                    {"cpu": loaded.spec.resources.cpus, "gpu": loaded.spec.resources.gpus})
    tuner = tune.Tuner.restore(str(run_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    tuner.fit()
    from reports.build import build_report

    out = build_report(run_dir)
    print(f"tunefactory: leaderboard {out / 'index.html'}", flush=True)
    return run_dir

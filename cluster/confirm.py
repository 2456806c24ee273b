"""Confirmation: re-train the search's top configs with new seeds (and walk-forward folds).

A sweep picks its winner from one seed on one split; a lucky seed or a quiet validation
period can make noise look like skill. ``tunefactory confirm RUN_DIR --top-k K --seeds S
[--folds F]`` re-trains the K best configs of every (asset, timeframe) — ranked by
validation RMSE, as the search ranked them — with S seeds each and, with ``--folds``, on
F walk-forward folds, as one Ray Tune sweep (``tune.grid_search`` over an index into a
fixed list of configs, each run by the sweep's own trainable). It then ranks the configs
by mean test RMSE with its standard deviation (``reports.confirmation`` reads and ranks;
this module only trains): a winner whose mean skill lies within one std of zero is
**not distinguishable from persistence**.

Files, under ``RUN_DIR/confirm/``: ``<name>/`` the Ray experiment (``plan.json`` maps
each trial's ``index`` to its config), ``summary.json`` (per-run results and the
ranking of the latest confirmation), ``ranking.csv`` and ``runs.csv``.

Walk-forward folds: fold ``F-1`` is the sweep's own split; fold ``i`` is the same split
moved back in time by ``F-1-i`` test spans (same validation and test lengths, a shorter
training span), with the horizon purge at each boundary.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cluster.ray_runtime import grid_search, init_ray
from cluster.sweep import spec_tuner
from cluster.tune_trial import train_trial
from reports.collect import SCORED, leaderboard, load_run
from reports.confirmation import summarise
from search_spaces.loader import load_spec
from search_spaces.recipes import prepare_groups
from search_spaces.space import trial_seed
from trainables.errors import RunError
from trainables.features.dataset import Prepared
from trainables.files import atomic_write

MIN_TRAIN = 30  # fewer training samples than this in the earliest fold is not a fit worth reporting


def walk_forward(p: Prepared, folds: int) -> list[Prepared]:
    """``folds`` chronological re-splits of a group's samples; the last is the sweep's own.

    Raises:
        RunError: the earliest fold would leave too few training samples.
    """
    if folds < 1:
        raise RunError(f"--folds must be >= 1; got {folds}")
    samples = np.union1d(np.union1d(p.train_idx, p.val_idx), p.test_idx)
    n_val, n_test, n, h = len(p.val_idx), len(p.test_idx), len(samples), p.horizon
    out = []
    for f in range(folds):
        back = folds - 1 - f
        if back == 0:
            out.append(dataclasses.replace(p, meta={**p.meta, "fold": f}))
            continue
        end = n - back * n_test
        te = samples[end - n_test:end]
        va = samples[end - n_test - n_val:end - n_test]
        tr = samples[:max(end - n_test - n_val, 0)]
        if len(va):
            tr = tr[tr + h <= va[0]]
        if len(te) and len(va):
            va = va[va + h <= te[0]]
        if len(tr) < MIN_TRAIN or len(va) < 10 or len(te) < 10:
            raise RunError(f"{p.group}: --folds {folds}: fold {f} would train on {len(tr)} samples (need at least "
                           f"{MIN_TRAIN}); use fewer folds")
        out.append(dataclasses.replace(p, train_idx=tr, val_idx=va, test_idx=te, meta={**p.meta, "fold": f}))
    return out


def plan_confirmation(run_dir: Path | str, *, top_k: int, seeds: int, folds: int | None = None,
                      base_seed: int = 0) -> list[dict[str, Any]]:
    """The fixed configs to train: top-k per group × seeds × folds.

    Every config of a group gets the same seeds (common random numbers), so configs are
    compared under the same initialisations.

    Raises:
        RunError: bad counts, or a group has no scored trial.
    """
    if top_k < 1:
        raise RunError(f"--top-k must be >= 1; got {top_k}")
    if seeds < 1:
        raise RunError(f"--seeds must be >= 1; got {seeds}")
    if folds is not None and folds < 1:
        raise RunError(f"--folds must be >= 1; got {folds}")
    run = load_run(run_dir)
    board = leaderboard(run)
    by_id = {t.trial_id: t for t in run.trials}
    plan: list[dict[str, Any]] = []
    for group in run.groups:
        rows = board[(board["group"] == group) & board["status"].isin(SCORED) & board["val_rmse_best"].notna()]
        if rows.empty:
            raise RunError(f"{run.path}: {group} has no scored trial to confirm")
        for _, r in rows.head(top_k).iterrows():
            t = by_id[r["trial_id"]]
            for s in range(seeds):
                seed = trial_seed(base_seed, f"confirm|{group}", s)
                for f in range(folds or 1):
                    key = f"{group}#fold{f}" if folds else group
                    plan.append({
                        "index": len(plan), "group": group, "dataset": key, "trial_id": t.trial_id,
                        "search_rank": int(r["rank"]), "family": t.config.get("family"),
                        "seed_index": s, "seed": seed, "fold": f,
                        "config": {**t.config, "group": key, "seed": seed},
                    })
    return plan


def confirm_trainable(config: dict[str, Any], *, plan: list[dict[str, Any]],
                      datasets: Mapping[str, Prepared]) -> None:
    """Ray Tune entry point: run plan entry ``config["index"]`` with the sweep's trainable."""
    train_trial(dict(plan[int(config["index"])]["config"]), datasets=datasets)


def fold_datasets(prepared: Mapping[str, Prepared], folds: int | None
                  ) -> tuple[dict[str, Prepared], dict[str, list[dict[str, Any]]]]:
    """The datasets a confirmation trains on (``GROUP#foldI`` with folds) and each fold's spans."""
    datasets: dict[str, Prepared] = {}
    fold_spans: dict[str, list[dict[str, Any]]] = {}
    for group, p in prepared.items():
        parts = walk_forward(p, folds) if folds else [p]
        fold_spans[group] = [{"fold": i, "train": q.span(q.train_idx), "val": q.span(q.val_idx),
                              "test": q.span(q.test_idx), "samples": {"train": len(q.train_idx),
                              "val": len(q.val_idx), "test": len(q.test_idx)}} for i, q in enumerate(parts)]
        for i, q in enumerate(parts):
            datasets[f"{group}#fold{i}" if folds else group] = q
    return datasets, fold_spans


def run_confirmation(run_dir: Path | str, *, top_k: int = 3, seeds: int = 3, folds: int | None = None,
                     address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Train the confirmation sweep and write its summary; return the summary.

    The data come from the one pipeline (:func:`search_spaces.recipes.prepare_groups`) and
    the Tuner from the sweep's builder (:func:`cluster.sweep.spec_tuner`): the same
    resources, worker reuse and retirement, retries and pending-trial sizing as the sweep.

    Args:
        run_dir: a finished run directory.
        top_k: configs per (asset, timeframe), best validation RMSE first.
        seeds: new seeds per config.
        folds: walk-forward folds (default: only the sweep's own split).
        address: Ray cluster address; a local Ray instance when None.
        num_cpus: CPUs of the local Ray instance.

    Raises:
        RunError: not a run, bad counts, too many folds, or every confirmation run failed.
    """
    run_dir = Path(run_dir).resolve()
    plan = plan_confirmation(run_dir, top_k=top_k, seeds=seeds, folds=folds)
    if not (run_dir / "spec.yaml").is_file():
        raise RunError(f"{run_dir}: no spec.yaml; cannot rebuild the data to re-train")
    spec = load_spec(run_dir / "spec.yaml").spec
    datasets, fold_spans = fold_datasets(prepare_groups(spec), folds)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"k{top_k}-s{seeds}-f{folds or 1}-{stamp}"
    exp_dir = run_dir / "confirm" / name
    exp_dir.mkdir(parents=True, exist_ok=False)
    atomic_write(exp_dir / "plan.json", json.dumps({
        "top_k": top_k, "seeds": seeds, "folds": folds, "created": stamp, "folds_spans": fold_spans,
        "plan": plan}, indent=1, default=str))
    init_ray(address, num_cpus=num_cpus)
    tuner = spec_tuner(spec, confirm_trainable, exp_dir, params={"plan": plan, "datasets": datasets},
                       param_space={"index": grid_search(list(range(len(plan))))})
    tuner.fit()
    summary = summarise(run_dir, exp_dir)
    if not any(r["status"] == "finished" for r in summary["runs"]):
        raise RunError(f"{exp_dir}: every confirmation run failed; see the trials' error.txt")
    return summary

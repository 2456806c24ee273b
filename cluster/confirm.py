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
each trial's ``index`` to its config and holds every fold's spans), ``summary.json``
(per-run results and the ranking of the latest confirmation), ``ranking.csv`` and
``runs.csv`` (one row per seed x fold, with the fold's ``train_end``, ``eval_start`` and
``eval_end``); ``<name>/test_span/`` the rows each fold scores, shared by its runs'
forecasts (:mod:`trainables.predictions`).

Walk-forward folds (``--folds F``) score only data the search never saw. The sweep ranked
its configs on its validation span, so re-scoring them there (or on anything overlapping
it) measures the selection, not the configs: the verdict would be biased upward. The
evaluation period is therefore the sweep's **test span**, cut into ``F`` consecutive
chunks that cover it. Fold ``i`` scores chunk ``i`` (its ``test_idx``) and trains on every
sample before it (an expanding window: fold ``i+1`` also learns from chunk ``i``), minus
a purge of ``horizon`` samples (their labels would look into the chunk) and an optional
embargo of ``--embargo N`` further candles. Its early-stopping validation slice is the
END of its own training data (as long as the sweep's validation span, or the sweep's
validation share of the training data when the rest would be shorter than that), with a
purge of ``horizon`` between that slice and the rest of training. Fold 0 with no embargo therefore trains exactly as the
sweep did and scores the first chunk of its test span. A fold that would train on fewer
than :data:`MIN_TRAIN` samples, or score fewer than :data:`MIN_EVAL`, is a
:class:`~trainables.errors.RunError`. Without ``--folds`` the sweep's own split is used
as it is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cluster.console import attach_log_file, say, tame_third_party
from cluster.ray_runtime import grid_search, import_ray, init_ray
from cluster.run_folder import write_test_spans
from cluster.sweep import progress_callback, spec_tuner
from cluster.tune_trial import train_trial
from reports.collect import SCORED, leaderboard, load_run
from reports.confirmation import summarise
from search_spaces.loader import load_spec
from search_spaces.recipes import prepare_groups
from search_spaces.space import trial_seed
from trainables.errors import RunError
from trainables.features.dataset import Prepared
from trainables.files import atomic_write

MIN_TRAIN = 30  # fewer training samples than this in a fold is not a fit worth reporting
MIN_EVAL = 10  # fewer scored samples than this in a fold is not a score worth reporting
MIN_VAL = 10  # the shortest early-stopping slice a fold may have


def walk_forward(p: Prepared, folds: int, *, embargo: int = 0) -> list[Prepared]:
    """``folds`` expanding-window folds that score consecutive chunks of the test span.

    Fold ``i`` scores chunk ``i`` of ``p.test_idx``; it trains on every sample before the
    chunk, less ``horizon`` purged samples and ``embargo`` further candles, and takes its
    early-stopping validation slice from the end of that training data (see the module
    docstring for why).

    Args:
        p: a group prepared with the sweep's split.
        folds: chunks the test span is cut into (sizes differ by at most one).
        embargo: candles dropped before each chunk on top of the ``horizon`` purge.

    Raises:
        RunError: bad counts, or a fold would train on fewer than :data:`MIN_TRAIN`
            samples or score fewer than :data:`MIN_EVAL`.
    """
    if folds < 1:
        raise RunError(f"--folds must be >= 1; got {folds}")
    if embargo < 0:
        raise RunError(f"--embargo must be >= 0; got {embargo}")
    samples = np.union1d(np.union1d(p.train_idx, p.val_idx), p.test_idx)
    h, n_val = p.horizon, len(p.val_idx)
    val_share = n_val / max(len(p.train_idx) + n_val, 1)
    out = []
    for f, chunk in enumerate(np.array_split(np.asarray(p.test_idx), folds)):
        pool = samples[samples + h + embargo <= chunk[0]] if len(chunk) else samples[:0]
        # The sweep's validation length, unless that would leave less to fit on than to
        # validate on: then the sweep's validation share of the training data.
        n_va = n_val if len(pool) >= 2 * n_val + h else min(n_val, max(MIN_VAL, round(val_share * len(pool))))
        va = pool[len(pool) - n_va:] if len(pool) > n_va else pool[:0]
        tr = pool[pool + h <= va[0]] if len(va) else pool[:0]
        if len(tr) < MIN_TRAIN or len(va) < MIN_VAL or len(chunk) < MIN_EVAL:
            raise RunError(f"{p.group}: --folds {folds}: fold {f} would train on {len(tr)} samples (need at "
                           f"least {MIN_TRAIN}), validate on {len(va)} (need {MIN_VAL}) and score {len(chunk)} "
                           f"(need {MIN_EVAL}); use fewer folds")
        out.append(dataclasses.replace(p, train_idx=tr, val_idx=va, test_idx=chunk,
                                       meta={**p.meta, "fold": f, "embargo": embargo}))
    return out


def fold_spans(p: Prepared, fold: int) -> dict[str, Any]:
    """What a fold learned from and scored: spans (ISO 8601 UTC) and sample counts.

    ``train_end`` is the last sample the fold learned from (its early-stopping slice
    included); ``eval_start``/``eval_end`` bound the samples it scored.
    """
    learned = np.union1d(p.train_idx, p.val_idx)
    return {"fold": fold, "train": p.span(p.train_idx), "val": p.span(p.val_idx), "test": p.span(p.test_idx),
            "train_end": p.span(learned)[1], "eval_start": p.span(p.test_idx)[0],
            "eval_end": p.span(p.test_idx)[1],
            "samples": {"train": len(p.train_idx), "val": len(p.val_idx), "test": len(p.test_idx)}}


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


def fold_datasets(prepared: Mapping[str, Prepared], folds: int | None, *, embargo: int = 0
                  ) -> tuple[dict[str, Prepared], dict[str, list[dict[str, Any]]]]:
    """The datasets a confirmation trains on (``GROUP#foldI`` with folds) and each fold's spans."""
    datasets: dict[str, Prepared] = {}
    spans: dict[str, list[dict[str, Any]]] = {}
    for group, p in prepared.items():
        parts = walk_forward(p, folds, embargo=embargo) if folds else [p]
        spans[group] = [fold_spans(q, i) for i, q in enumerate(parts)]
        for i, q in enumerate(parts):
            datasets[f"{group}#fold{i}" if folds else group] = q
    return datasets, spans


def run_confirmation(run_dir: Path | str, *, top_k: int = 3, seeds: int = 3, folds: int | None = None,
                     embargo: int = 0, address: str | None = None, num_cpus: int | None = None
                     ) -> dict[str, Any]:
    """Train the confirmation sweep and write its summary; return the summary.

    The data come from the one pipeline (:func:`search_spaces.recipes.prepare_groups`) and
    the Tuner from the sweep's builder (:func:`cluster.sweep.spec_tuner`): the same
    resources, worker reuse and retirement, retries and pending-trial sizing as the sweep.

    Args:
        run_dir: a finished run directory.
        top_k: configs per (asset, timeframe), best validation RMSE first.
        seeds: new seeds per config.
        folds: walk-forward folds over the sweep's test span (default: only the sweep's own
            split).
        embargo: candles dropped before each fold's scored chunk, on top of the horizon
            purge (only with ``folds``).
        address: Ray cluster address; a local Ray instance when None.
        num_cpus: CPUs of the local Ray instance.

    Raises:
        RunError: not a run, bad counts, too many folds, an embargo without folds, or every
            confirmation run failed.
    """
    run_dir = Path(run_dir).resolve()
    plan = plan_confirmation(run_dir, top_k=top_k, seeds=seeds, folds=folds)
    if embargo < 0:
        raise RunError(f"--embargo must be >= 0; got {embargo}")
    if embargo and not folds:
        raise RunError("--embargo needs --folds: without folds the sweep's own split is scored as it is")
    if not (run_dir / "spec.yaml").is_file():
        raise RunError(f"{run_dir}: no spec.yaml; cannot rebuild the data to re-train")
    spec = load_spec(run_dir / "spec.yaml").spec
    datasets, spans = fold_datasets(prepare_groups(spec), folds, embargo=embargo)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"k{top_k}-s{seeds}-f{folds or 1}-{stamp}"
    exp_dir = run_dir / "confirm" / name
    exp_dir.mkdir(parents=True, exist_ok=False)
    atomic_write(exp_dir / "plan.json", json.dumps({
        "top_k": top_k, "seeds": seeds, "folds": folds, "embargo": embargo, "created": stamp,
        "folds_spans": spans,
        "plan": plan}, indent=1, default=str))
    # Each fold scores its own chunk of the test span: one span file per dataset key.
    write_test_spans(str(exp_dir), datasets)
    import_ray()
    tame_third_party()
    attach_log_file(exp_dir)
    init_ray(address, num_cpus=num_cpus)
    say(f"tunefactory: confirming {len(plan)} runs ({top_k} config(s) x {seeds} seed(s) x {folds or 1} fold(s) "
        f"per group) in {exp_dir}")
    per_group: dict[str, int] = {}
    for entry in plan:
        per_group[entry["config"]["group"]] = per_group.get(entry["config"]["group"], 0) + 1
    progress = progress_callback(len(plan), per_group, config_of=lambda c: plan[int(c["index"])]["config"])
    tuner = spec_tuner(spec, confirm_trainable, exp_dir, params={"plan": plan, "datasets": datasets},
                       param_space={"index": grid_search(list(range(len(plan))))}, callbacks=[progress])
    tuner.fit()
    summary = summarise(run_dir, exp_dir)
    if not any(r["status"] == "finished" for r in summary["runs"]):
        raise RunError(f"{exp_dir}: every confirmation run failed; see the trials' error.txt")
    return summary

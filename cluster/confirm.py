"""Confirmation: re-train the search's top configs with new seeds (and walk-forward folds).

A sweep picks its winner from one seed on one split; a lucky seed or a quiet validation
period can make noise look like skill. ``tunefactory confirm RUN_DIR --top-k K --seeds S
[--folds F]`` re-trains the K best configs of every (asset, timeframe) — ranked by
validation RMSE, as the search ranked them — with S seeds each and, with ``--folds``, on
F walk-forward folds, as one Ray Tune sweep (``tune.grid_search`` over an index into a
fixed list of configs, each run by the sweep's own trainable). It then ranks the configs
by mean test RMSE with its standard deviation, and reports each config's skill over
persistence as mean ± std: a winner whose mean skill lies within one std of zero is
**not distinguishable from persistence**.

Files, under ``RUN_DIR/confirm/``: ``<name>/`` the Ray experiment (``plan.json`` maps
each trial's ``index`` to its config), ``summary.json`` (per-run results and the
ranking of the latest confirmation), ``ranking.csv`` and ``runs.csv``.

Walk-forward folds: fold ``F-1`` is the sweep's own split; fold ``i`` is the same split
moved back in time by ``F-1-i`` test spans (same validation and test lengths, a shorter
training span), with the horizon purge at each boundary. Standard deviations are sample
standard deviations (``ddof=1``) over all seeds × folds of a config.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.collect import SCORED, leaderboard, load_run, load_trial
from trainables.errors import RunError
from trainables.features.dataset import Prepared
from trainables.files import atomic_write

MIN_TRAIN = 30  # fewer training samples than this in the earliest fold is not a fit worth reporting
NOT_DISTINGUISHABLE = "not distinguishable from persistence"


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
    from search_spaces.space import trial_seed

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
    from trainables.trial.fit import train_trial

    train_trial(dict(plan[int(config["index"])]["config"]), datasets=datasets)


def read_runs(exp_dir: Path) -> pd.DataFrame:
    """Per-run results of a confirmation experiment, read from its trial folders on disk."""
    plan = json.loads((exp_dir / "plan.json").read_text(encoding="utf-8"))["plan"]
    seen: dict[int, dict[str, Any]] = {}
    for d in sorted(exp_dir.glob("trial_*")):
        t = load_trial(d) if d.is_dir() else None
        if t is None or "index" not in t.config:
            continue
        i = int(t.config["index"])
        f = t.final or {}
        seen[i] = {"status": t.status, "error": t.error or "", "test_rmse": f.get("test_rmse", math.nan),
                   "test_skill": f.get("test_skill", math.nan),
                   "test_persistence_rmse": f.get("test_persistence_rmse", math.nan),
                   "test_diracc": f.get("test_diracc", math.nan), "val_rmse_best": t.best if t.final else math.nan,
                   "epochs": len(t.history), "train_seconds": f.get("train_seconds", math.nan)}
    rows = []
    for e in plan:
        r = {k: e[k] for k in ("index", "group", "trial_id", "search_rank", "family", "seed_index", "seed", "fold")}
        r.update(seen.get(int(e["index"]), {"status": "missing"}))
        rows.append(r)
    return pd.DataFrame(rows)


def _verdict(mean: float, std: float, n: int) -> str:
    if n < 2 or not math.isfinite(std):
        return "too few runs to judge"
    if abs(mean) <= std:
        return NOT_DISTINGUISHABLE
    return "beats persistence" if mean > 0 else "worse than persistence"


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Rank each group's configs by mean test RMSE; mean ± sample std of RMSE and skill."""
    cols = ["group", "confirm_rank", "trial_id", "search_rank", "family", "runs", "failed", "test_rmse_mean",
            "test_rmse_std", "test_skill_mean", "test_skill_std", "val_rmse_mean", "val_rmse_std",
            "test_diracc_mean", "verdict"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for (group, tid), g in runs.groupby(["group", "trial_id"], sort=False):
        ok = g[g["status"] == "finished"]
        n = len(ok)

        def ms(col: str, ok: pd.DataFrame = ok, n: int = n) -> tuple[float, float]:
            v = ok[col].astype(float).to_numpy()
            return (float(np.mean(v)) if n else math.nan, float(np.std(v, ddof=1)) if n > 1 else math.nan)

        rm, rs = ms("test_rmse")
        sm, ss = ms("test_skill")
        vm, vs = ms("val_rmse_best")
        dm, _ = ms("test_diracc")
        out.append({"group": group, "trial_id": tid, "search_rank": int(g["search_rank"].iloc[0]),
                    "family": g["family"].iloc[0], "runs": n, "failed": int(len(g) - n),
                    "test_rmse_mean": rm, "test_rmse_std": rs, "test_skill_mean": sm, "test_skill_std": ss,
                    "val_rmse_mean": vm, "val_rmse_std": vs, "test_diracc_mean": dm, "verdict": _verdict(sm, ss, n)})
    df = pd.DataFrame(out)
    df = df.sort_values(["group", "test_rmse_mean", "search_rank"], na_position="last", kind="stable")
    df.insert(1, "confirm_rank", df.groupby("group").cumcount() + 1)
    return df[cols].reset_index(drop=True)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))


def summarise(run_dir: Path | str, exp_dir: Path) -> dict[str, Any]:
    """Write ``summary.json``, ``ranking.csv`` and ``runs.csv`` of a confirmation; return the summary."""
    run_dir = Path(run_dir)
    meta = json.loads((exp_dir / "plan.json").read_text(encoding="utf-8"))
    runs = read_runs(exp_dir)
    ranking = aggregate(runs)
    summary = {**{k: v for k, v in meta.items() if k != "plan"}, "experiment": exp_dir.name,
               "ranking": _records(ranking), "runs": _records(runs)}
    out = run_dir / "confirm"
    atomic_write(out / "summary.json", json.dumps(summary, indent=1))
    atomic_write(out / "ranking.csv", ranking.to_csv(index=False))
    atomic_write(out / "runs.csv", runs.to_csv(index=False))
    return summary


def load_confirmation(run_dir: Path | str) -> dict[str, Any] | None:
    """The latest confirmation summary of a run (``None`` when never confirmed)."""
    f = Path(run_dir) / "confirm" / "summary.json"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # half-written by a crash before atomic_write existed; the report goes without it


def run_confirmation(run_dir: Path | str, *, top_k: int = 3, seeds: int = 3, folds: int | None = None,
                     address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Train the confirmation sweep and write its summary; return the summary.

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
    from ray import tune

    from cluster.sweep import init_ray, prepare_groups
    from search_spaces.loader import load_spec

    run_dir = Path(run_dir).resolve()
    plan = plan_confirmation(run_dir, top_k=top_k, seeds=seeds, folds=folds)
    if not (run_dir / "spec.yaml").is_file():
        raise RunError(f"{run_dir}: no spec.yaml; cannot rebuild the data to re-train")
    spec = load_spec(run_dir / "spec.yaml").spec
    prepared = prepare_groups(spec)
    datasets: dict[str, Prepared] = {}
    fold_spans: dict[str, list[dict[str, Any]]] = {}
    for group, p in prepared.items():
        parts = walk_forward(p, folds) if folds else [p]
        fold_spans[group] = [{"fold": i, "train": q.span(q.train_idx), "val": q.span(q.val_idx),
                              "test": q.span(q.test_idx), "samples": {"train": len(q.train_idx),
                              "val": len(q.val_idx), "test": len(q.test_idx)}} for i, q in enumerate(parts)]
        for i, q in enumerate(parts):
            datasets[f"{group}#fold{i}" if folds else group] = q
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"k{top_k}-s{seeds}-f{folds or 1}-{stamp}"
    exp_dir = run_dir / "confirm" / name
    exp_dir.mkdir(parents=True, exist_ok=False)
    atomic_write(exp_dir / "plan.json", json.dumps({
        "top_k": top_k, "seeds": seeds, "folds": folds, "created": stamp, "folds_spans": fold_spans,
        "plan": plan}, indent=1, default=str))
    init_ray(address, num_cpus=num_cpus)
    trainable = tune.with_resources(tune.with_parameters(confirm_trainable, plan=plan, datasets=datasets),
                                    {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus})
    tuner = tune.Tuner(
        trainable,
        param_space={"index": tune.grid_search(list(range(len(plan))))},
        tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(name=name, storage_path=str(exp_dir.parent),
                                  failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=0),
    )
    tuner.fit()
    summary = summarise(run_dir, exp_dir)
    if not any(r["status"] == "finished" for r in summary["runs"]):
        raise RunError(f"{exp_dir}: every confirmation run failed; see the trials' error.txt")
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The ranking as terminal lines."""
    lines = [f"confirmation: top {summary['top_k']} x {summary['seeds']} seeds x {summary.get('folds') or 1} "
             "fold(s); ranked by mean test RMSE (± sample std)"]
    for r in summary["ranking"]:
        def pct(v: Any) -> str:
            return f"{v * 100:+.2f}%" if isinstance(v, (int, float)) else "n/a"

        def num(v: Any) -> str:
            return f"{v:.6g}" if isinstance(v, (int, float)) else "n/a"

        def spread(v: Any) -> str:
            return f"{v * 100:.2f}%" if isinstance(v, (int, float)) else "n/a"

        lines.append(f"{r['group']:<16} #{r['confirm_rank']} trial {r['trial_id']} (search #{r['search_rank']}, "
                     f"{r['family']}): test RMSE {num(r['test_rmse_mean'])} ± {num(r['test_rmse_std'])}, skill "
                     f"{pct(r['test_skill_mean'])} ± {spread(r['test_skill_std'])} over {r['runs']} runs — {r['verdict']}")
    return lines

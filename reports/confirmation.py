"""Read a confirmation's trial folders and rank its configs over seeds and folds.

``cluster.confirm`` trains the confirmation sweep (``tunefactory confirm``); this module
only reads what it wrote. It ranks each (asset, timeframe)'s configs by mean test RMSE
with its standard deviation and reports each config's skill over persistence as
mean ± std: a winner whose mean skill lies within one std of zero is **not
distinguishable from persistence**. Standard deviations are sample standard deviations
(``ddof=1``) over all seeds × folds of a config.

Files, under ``RUN_DIR/confirm/``: ``<name>/plan.json`` (maps each trial's ``index`` to
its config) and ``<name>/trial_*/`` (read here), ``summary.json`` (per-run results and
the ranking of the latest confirmation), ``ranking.csv`` and ``runs.csv`` (written here).
``runs.csv`` has one row per seed x fold: the fold's ``train_end`` (last sample it learned
from, early-stopping slice included), ``eval_start`` and ``eval_end`` (the samples it
scored), ISO 8601 UTC, from the fold spans in ``plan.json``; the walk-forward scheme is
explained in ``cluster.confirm``.

Each run also gets a one-sided Diebold–Mariano test of its squared errors against
persistence on the samples it scored (``dm_stat``, ``dm_pvalue``), and each config a
combined one (``dm_*`` in the ranking): the loss differential is averaged over the seeds
per sample (the seeds of a fold score the same samples), the folds' disjoint chronological
chunks are concatenated, and one DM test on that series asks whether "the config, averaged
over seeds, beats persistence" (:func:`combined_dm`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import Field

from reports.collect import Trial, load_trial
from reports.forecast_tests import spec_alpha
from reports.statistics import DMResult, diebold_mariano
from trainables.errors import RunError
from trainables.files import atomic_write
from trainables.predictions import SpanCache, has_predictions, read_prediction_columns
from trainables.records import Record, read_json
from trainables.run_files import ConfirmParams

NOT_DISTINGUISHABLE = "not distinguishable from persistence"


def _horizons(exp_dir: Path) -> dict[str, int]:
    """Each group's forecast horizon, from the run's ``groups.json`` (``RUN_DIR/confirm/<name>/``)."""
    try:
        groups = json.loads((exp_dir.parent.parent / "groups.json").read_text(encoding="utf-8"))["groups"]
        return {str(g): int(v.get("horizon") or 1) for g, v in groups.items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        return {}


def loss_differential(t: Trial, spans: SpanCache | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(timestamps, squared error − persistence's squared error) of a run's scored samples, or None."""
    if t.checkpoint is None or not has_predictions(t.checkpoint):
        return None
    try:
        p = read_prediction_columns(t.checkpoint, cache=spans)
        d = (p["y_pred"] - p["y_true"]) ** 2 - (p["y_persistence"] - p["y_true"]) ** 2
        ts = p["timestamp"]
    except (KeyError, RunError):
        return None  # a run without usable predictions has no DM test; its scores still count
    return (ts, d) if len(d) and np.all(np.isfinite(d)) else None


def _dm(d: np.ndarray, horizon: int) -> DMResult | None:
    try:
        return diebold_mariano(d, np.zeros_like(d), horizon=horizon)
    except RunError:
        return None  # too few samples for the horizon: no p-value


def read_runs(exp_dir: Path) -> pd.DataFrame:
    """Per-run results of a confirmation experiment, read from its trial folders on disk.

    Each run carries its fold's ``train_end``, ``eval_start`` and ``eval_end`` (empty for a
    confirmation written before ``plan.json`` held them).
    """
    meta = read_json(exp_dir / "plan.json", dict[str, Any])
    plan = meta["plan"]
    spans = {(g, int(s["fold"])): s for g, folds in (meta.get("folds_spans") or {}).items() for s in folds}
    seen: dict[int, dict[str, Any]] = {}
    horizons = _horizons(exp_dir)
    cache: SpanCache = {}
    for d in sorted(exp_dir.glob("trial_*")):
        t = load_trial(d, model=ConfirmParams) if d.is_dir() else None
        if t is None or "index" not in t.config:
            continue
        i = int(t.config["index"])
        f = t.final or {}
        seen[i] = {"status": t.status, "error": t.error or "", "test_rmse": f.get("test_rmse", math.nan),
                   "test_skill": f.get("test_skill", math.nan),
                   "test_persistence_rmse": f.get("test_persistence_rmse", math.nan),
                   "test_diracc": f.get("test_diracc", math.nan), "val_rmse_best": t.best if t.final else math.nan,
                   "epochs": len(t.history), "train_seconds": f.get("train_seconds", math.nan),
                   "dm_stat": math.nan, "dm_pvalue": math.nan}
        ld = loss_differential(t, cache) if t.status == "finished" else None
        dm = _dm(ld[1], horizons.get(str(t.config.get("group", "")).split("#")[0], 1)) if ld else None
        if dm is not None and dm.pvalue is not None:
            seen[i].update({"dm_stat": dm.statistic, "dm_pvalue": dm.pvalue})
    rows = []
    for e in plan:
        r = {k: e[k] for k in ("index", "group", "trial_id", "search_rank", "family", "seed_index", "seed", "fold")}
        span = spans.get((e["group"], int(e["fold"])), {})
        r.update({k: span.get(k, "") for k in ("train_end", "eval_start", "eval_end")})
        r.update(seen.get(int(e["index"]), {"status": "missing"}))
        rows.append(r)
    return pd.DataFrame(rows)


def spread_verdict(mean: float, std: float, n: int) -> str:
    """Whether a config's skill over persistence, ``mean`` ± ``std`` over ``n`` runs, is real.

    Args:
        mean: mean test skill over the finished runs.
        std: its sample standard deviation.
        n: finished runs.

    Returns:
        One of "too few runs to judge", :data:`NOT_DISTINGUISHABLE`, "beats persistence",
        "worse than persistence".
    """
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
                    "val_rmse_mean": vm, "val_rmse_std": vs, "test_diracc_mean": dm,
                    "verdict": spread_verdict(sm, ss, n)})
    df = pd.DataFrame(out)
    df = df.sort_values(["group", "test_rmse_mean", "search_rank"], na_position="last", kind="stable")
    df.insert(1, "confirm_rank", df.groupby("group").cumcount() + 1)
    return df[cols].reset_index(drop=True)


def combined_dm(exp_dir: Path, *, alpha: float = 0.05) -> pd.DataFrame:
    """One DM test per config over all its seeds and folds: does it, averaged over seeds, beat persistence?

    Per fold, the seeds' loss differentials are averaged sample by sample (runs whose
    samples differ from the fold's first run are left out); the folds' chunks, disjoint and
    chronological, are concatenated in fold order; the DM test (one-sided, the group's
    horizon) runs on that series.

    Returns:
        One row per (group, trial_id): ``dm_stat``, ``dm_pvalue``, ``dm_n`` (samples),
        ``dm_runs`` (runs averaged) and ``dm_verdict`` ("beats persistence" when
        p < ``alpha``, else :data:`NOT_DISTINGUISHABLE`, or why there is no test).
    """
    meta = read_json(exp_dir / "plan.json", dict[str, Any])
    plan = {int(e["index"]): e for e in meta["plan"]}
    horizons = _horizons(exp_dir)
    series: dict[tuple[str, str], dict[int, list[tuple[np.ndarray, np.ndarray]]]] = {}
    cache: SpanCache = {}
    for d in sorted(exp_dir.glob("trial_*")):
        t = load_trial(d, model=ConfirmParams) if d.is_dir() else None
        if t is None or t.status != "finished" or int(t.config.get("index", -1)) not in plan:
            continue
        e = plan[int(t.config["index"])]
        ld = loss_differential(t, cache)
        if ld is not None:
            series.setdefault((e["group"], e["trial_id"]), {}).setdefault(int(e["fold"]), []).append(ld)
    rows = []
    for (group, tid), folds in series.items():
        chunks, used = [], 0
        for f in sorted(folds):
            ts0 = folds[f][0][0]
            same = [dd for ts, dd in folds[f] if len(ts) == len(ts0) and np.array_equal(ts, ts0)]
            used += len(same)
            chunks.append(np.mean(same, axis=0))
        diff = np.concatenate(chunks)
        dm = _dm(diff, horizons.get(group, 1))
        p = dm.pvalue if dm is not None else None
        if p is None:
            verdict = dm.status if dm is not None else "too few samples for a DM test"
        else:
            verdict = "beats persistence" if p < alpha else NOT_DISTINGUISHABLE
        rows.append({"group": group, "trial_id": tid,
                     "dm_stat": dm.statistic if dm is not None and dm.statistic is not None else math.nan,
                     "dm_pvalue": p if p is not None else math.nan, "dm_n": len(diff), "dm_runs": used,
                     "dm_verdict": verdict})
    return pd.DataFrame(rows, columns=["group", "trial_id", "dm_stat", "dm_pvalue", "dm_n", "dm_runs", "dm_verdict"])


def _alpha(run_dir: Path) -> float:
    f = run_dir / "spec.yaml"
    spec = yaml.safe_load(f.read_text(encoding="utf-8")) if f.is_file() else None
    return spec_alpha(spec if isinstance(spec, dict) else {}, f)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))


def summarise(run_dir: Path | str, exp_dir: Path) -> dict[str, Any]:
    """Write ``summary.json``, ``ranking.csv`` and ``runs.csv`` of a confirmation; return the summary."""
    run_dir = Path(run_dir)
    meta = read_json(exp_dir / "plan.json", dict[str, Any])
    runs = read_runs(exp_dir)
    ranking = aggregate(runs)
    if not ranking.empty:
        ranking = ranking.merge(combined_dm(exp_dir, alpha=_alpha(run_dir)), on=["group", "trial_id"], how="left")
    summary = {**{k: v for k, v in meta.items() if k != "plan"}, "experiment": exp_dir.name,
               "ranking": _records(ranking), "runs": _records(runs)}
    out = run_dir / "confirm"
    atomic_write(out / "summary.json", json.dumps(summary, indent=1))
    atomic_write(out / "ranking.csv", ranking.to_csv(index=False))
    atomic_write(out / "runs.csv", runs.to_csv(index=False))
    return summary


class RankRow(Record):
    """One config of ``confirm/summary.json``'s ranking (the keys the report and the terminal read)."""

    group: str
    trial_id: str
    runs: int
    verdict: str
    test_skill_mean: float | None = None
    test_skill_std: float | None = None
    dm_pvalue: float | None = None


class ConfirmSummary(Record):
    """``RUN_DIR/confirm/summary.json`` (written by :func:`summarise`)."""

    ranking: list[RankRow]
    runs: list[dict[str, Any]] = Field(default_factory=list)
    top_k: int | None = None
    seeds: int | None = None
    folds: int | None = None


def load_confirmation(run_dir: Path | str) -> dict[str, Any] | None:
    """The latest confirmation summary of a run (``None`` when never confirmed).

    Raises:
        RunError: ``summary.json`` is damaged (written atomically, so not by a crash).
    """
    f = Path(run_dir) / "confirm" / "summary.json"
    if not f.exists():
        return None
    summary: dict[str, Any] = read_json(f, ConfirmSummary, hint="run `tunefactory confirm` again or remove it")
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
                     f"{pct(r['test_skill_mean'])} ± {spread(r['test_skill_std'])} over {r['runs']} runs — {r['verdict']}"
                     + (f"; averaged over seeds, DM p = {r['dm_pvalue']:.3g} over {r['dm_n']} samples — "
                        f"{r['dm_verdict']}" if isinstance(r.get("dm_pvalue"), (int, float)) else ""))
    return lines

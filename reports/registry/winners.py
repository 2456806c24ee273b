"""Export the winner of each (asset, timeframe) of a run into a winners registry.

Registry layout::

    <registry>/history.jsonl              one line per replacement (what, when, before, after)
    <registry>/<ASSET>_<TF>  ->  .versions/<ASSET>_<TF>/<stamp>-<trial>   (a relative symlink)
    <registry>/.versions/<ASSET>_<TF>/<stamp>-<trial>/
        config.yaml      resolved trial config plus data, target and window it needs
        spec.yaml        the run's merged spec (for reading; the forecast does not need it)
        recipe.json      the group's data recipe (``trainables.pipeline.DataRecipe.to_dict``):
                         candle source, date range, gap policy, funding/metric tables
                         (absolute paths), pool, target, horizon; the forecast rebuilds
                         features from it through the training pipeline
        metrics.json     the scores; ``selection`` (the scored model's spans and metrics),
                         ``trained_through`` (last candle whose target the deployed model
                         learned from), ``production`` (the refit's spans, epochs, data)
        selection/       the scored model: model.keras, scaler.json, trial.json,
                         predictions.csv (test span); trained on the training span only,
                         it reproduces predictions.csv and its scores are the honest ones
        production/      (unless exported with ``--no-refit``) the same config and seed
                         retrained on every labelled sample through the last complete
                         candle, for the epoch count early stopping chose (``best_epoch``);
                         model.keras, scaler.json (fitted on the refit span), trial.json

The registry never trains: the production model is built by a ``refit`` function the
caller passes (``cluster.refit``), into the hidden version folder before it is published,
so a version appears complete or not at all. ``refit_registry`` retrains the production
models of published winners on newer candles (a new version, same selection model).

A winner is replaced only by one that is better on the **same** validation span, target
and horizon (validation is the selection criterion; the test span is reported, never
used to choose); otherwise the export says why it kept the old one.

Atomicity: a new version is written in a hidden temporary folder, flushed, renamed to
its final name, and only then published by atomically replacing the ``<ASSET>_<TF>``
symlink (``os.replace`` of a link is one rename(2)). A crash at any point leaves the link
pointing at the previous, complete version; leftovers are cleaned by the next export.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field

from reports.collect import Run, Trial, load_run
from reports.registry._versions import (
    VERSIONS,
    fsync_dir,
    fsync_file,
    history_line,
    prune,
    publish,
    recover,
    write_text,
)
from search_spaces.loader import load_spec, validate_raw
from search_spaces.recipes import data_recipes
from trainables.errors import RunError, TunefactoryError
from trainables.pipeline import DataRecipe
from trainables.predictions import CSV, predictions_csv, read_predictions
from trainables.records import Record, read_json, read_yaml

#: The selection model's files in a registry entry; ``predictions.csv`` is the full test-span
#: table (written from the run's compact forecasts, :mod:`trainables.predictions`).
ARTIFACTS = ("model.keras", "scaler.json", CSV)
SELECTION = "selection"
PRODUCTION = "production"

#: Builds a winner's production model: ``(recipe, trial config, epochs, out_dir) -> info``;
#: ``info`` holds at least ``trained_through`` (ISO UTC open time of the last training sample).
Refit = Callable[[DataRecipe, dict[str, Any], int, Path], dict[str, Any]]

#: Scores of the selection model copied into ``metrics.json["selection"]["metrics"]``.
SELECTION_SCORES = ("val_rmse_best", "val_ratio_best", "test_rmse", "test_mae", "test_skill",
                    "test_directional_accuracy", "best_epoch", "epochs")


def winners(run: Run) -> dict[str, Trial]:
    """Best trial per group by validation RMSE, among trials that saved a model."""
    best: dict[str, Trial] = {}
    for t in run.trials:
        if t.checkpoint is None or t.final is None or not math.isfinite(t.best):
            continue
        cur = best.get(t.group)
        if cur is None or t.best < cur.best:
            best[t.group] = t
    return best


def folder_name(asset: str, timeframe: str) -> str:
    """Registry folder of an (asset, timeframe): ``BTC-USDT_1h``."""
    return f"{asset}_{timeframe}"


def _folder(group: str) -> str:
    asset, tf = group.split("/")
    return folder_name(asset, tf)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _abs(p: Path | None) -> Path | None:
    return None if p is None else p.expanduser().resolve()


def run_recipes(run: Run) -> dict[str, DataRecipe]:
    """The data recipe of each group of a run (from its ``spec.yaml``), paths made absolute.

    Relative candle folders and table files are resolved against the working directory
    now, as the sweep resolved them, so a forecast run elsewhere still finds them.

    Raises:
        RunError: the run's spec no longer validates (one line).
    """
    spec_file = run.path / "spec.yaml"
    try:
        spec = load_spec(spec_file).spec if spec_file.is_file() else validate_raw(run.spec, run.path)
    except TunefactoryError as e:
        first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise RunError(f"{spec_file}: cannot rebuild the data recipes of the run ({first})") from None
    return {r.group: replace(r, path=_abs(r.path), funding_file=_abs(r.funding_file),
                          metric_files=tuple(f.expanduser().resolve() for f in r.metric_files))
            for r in data_recipes(spec)}


def _epochs(metrics: dict[str, Any]) -> int:
    """The epoch count early stopping chose for the scored model (its best epoch)."""
    best = metrics.get("best_epoch") or (metrics.get("selection") or {}).get("metrics", {}).get("best_epoch")
    if not isinstance(best, (int, float)) or best < 1:
        best = metrics.get("epochs")
    if not isinstance(best, (int, float)) or best < 1:
        raise RunError(f"trial {metrics.get('trial_id')}: no best_epoch in its final result, so the production "
                       "refit does not know how long to train; export it with --no-refit")
    return int(best)


def _production(dst: Path, refit: Refit, recipe: DataRecipe, config: dict[str, Any],
                metrics: dict[str, Any]) -> dict[str, Any]:
    """Train the production model into ``dst/production`` (flushed); the metrics keys it sets."""
    out = dst / PRODUCTION
    info = dict(refit(recipe, dict(config), _epochs(metrics), out))
    for f in out.iterdir():
        fsync_file(f)
    fsync_dir(out)
    info["refit_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return {"production": info, "trained_through": info["trained_through"]}


def selection_table(t: Trial) -> str:
    """The text of the registry's ``selection/predictions.csv`` for a winning trial.

    A run keeps compact forecasts plus a shared span file (:mod:`trainables.predictions`);
    a registry entry is self-contained and read by people, so it gets the full table as
    text: the same text the per-trial writer produced before the compact form.

    Raises:
        RunError: the trial's predictions are missing or damaged (one line).
    """
    assert t.checkpoint is not None
    return predictions_csv(read_predictions(t.checkpoint))


def _write_winner(dst: Path, run: Run, t: Trial, recipe: DataRecipe,
                  refit: Refit | None = None, table: str | None = None) -> dict[str, Any]:
    """Write every file of a winner into ``dst`` (flushed to disk); return its metrics.

    The scored model goes to ``selection/`` (``table``: its ``predictions.csv``, read
    beforehand; None: read now); with ``refit``, the production model is trained into
    ``production/`` too.
    """
    g = run.groups[t.group]
    ck = t.checkpoint
    assert ck is not None
    sel = dst / SELECTION
    sel.mkdir()
    for name in ARTIFACTS:
        if name == CSV:
            write_text(sel / CSV, table if table is not None else selection_table(t))
        else:
            shutil.copy2(ck / name, sel / name)
        fsync_file(sel / name)
    if (ck / "trial.json").is_file():
        shutil.copy2(ck / "trial.json", sel / "trial.json")
    fsync_dir(sel)
    metrics = {k: _jsonable(v) for k, v in (t.final or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)
               and not k.startswith(("time_", "timestamp", "pid", "iterations_", "training_iteration"))}
    metrics.update({"val_rmse_best": t.best, "persistence_rmse": g["persistence_rmse"], "spans": g["spans"],
                    "samples": g["samples"], "target": g["target"], "horizon": g["horizon"],
                    "run": str(run.path.resolve()), "run_name": run.name, "trial_id": t.trial_id})
    metrics["selection"] = {"spans": g["spans"], "samples": g["samples"],
                            "trained_through": g["spans"]["train"][1],
                            "metrics": {k: metrics[k] for k in SELECTION_SCORES if k in metrics}}
    metrics["production"] = None
    metrics["trained_through"] = metrics["selection"]["trained_through"]
    if refit is not None:
        metrics.update(_production(dst, refit, recipe, t.config, metrics))
    write_text(dst / "metrics.json", json.dumps(metrics, indent=1))
    data = dict(run.spec.get("data") or {})
    config = {
        "asset": g["asset"], "timeframe": g["timeframe"],
        "target": {"kind": g["target"], "horizon": g["horizon"]},
        "data": {"path": data.get("path"), "source": g.get("source"),
                 "start": str(data["start"]) if data.get("start") else None,
                 "end": str(data["end"]) if data.get("end") else None},
        "pool": (run.spec.get("features") or {}).get("pool"),
        "split": run.spec.get("split") or {},
        "window": {"lookback": t.config["lookback"], "max_lookback": g.get("max_lookback")},
        "trial": t.config,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_text(dst / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    write_text(dst / "recipe.json", json.dumps(recipe.to_dict(), indent=1))
    spec_file = run.path / "spec.yaml"
    write_text(dst / "spec.yaml", spec_file.read_text(encoding="utf-8") if spec_file.is_file()
                else yaml.safe_dump(run.spec, sort_keys=False))
    fsync_dir(dst)
    return metrics


@dataclass(frozen=True)
class Winner:
    """A published winner of the registry (the link already resolved)."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def selection_dir(self) -> Path:
        """The scored model's folder (the version folder itself for older exports)."""
        sel = self.path / SELECTION
        return sel if sel.is_dir() else self.path

    @property
    def production_dir(self) -> Path | None:
        """The production model's folder, or None (older export, or ``--no-refit``)."""
        prod = self.path / PRODUCTION
        return prod if (prod / "model.keras").is_file() else None

    def trained_through(self, model: str) -> str | None:
        """ISO UTC open time of the last sample whose target ``model`` learned from."""
        if model == PRODUCTION:
            return (self.metrics.get("production") or {}).get("trained_through")
        sel = self.metrics.get("selection") or {}
        return sel.get("trained_through") or ((self.metrics.get("spans") or {}).get("train") or [None, None])[1]


#: What to do about a damaged winner file.
WINNER_HINT = "export the winner again"


class WinnerTrial(Record):
    """The trial config inside ``config.yaml`` (what the forecast rebuilds the model's input from)."""

    lookback: Annotated[int, Field(ge=1)]
    columns: Annotated[list[str], Field(min_length=1)]
    family: str | None = None


class WinnerConfig(Record):
    """``<ASSET>_<TF>/config.yaml``."""

    trial: WinnerTrial


class ModelFacts(Record):
    """``production`` / ``selection`` in ``metrics.json``."""

    trained_through: str | None = None


class WinnerMetrics(Record):
    """``<ASSET>_<TF>/metrics.json`` (the keys the registry and the forecast read)."""

    trial_id: str | None = None
    val_rmse_best: float | None = None
    trained_through: str | None = None
    production: ModelFacts | None = None
    selection: ModelFacts | None = None
    spans: dict[str, Annotated[list[str | None], Field(min_length=2, max_length=2)]] | None = None


class RecipeFile(Record):
    """``<ASSET>_<TF>/recipe.json`` (a :class:`trainables.pipeline.DataRecipe`)."""

    asset: str
    timeframe: str
    target: str
    horizon: Annotated[int, Field(ge=1)]
    pool: list[dict[str, Any]]


def read_recipe(path: Path) -> DataRecipe:
    """The data recipe of a winner, checked (one line naming the key when damaged)."""
    raw = read_json(path, RecipeFile, hint=WINNER_HINT)
    try:
        return DataRecipe.from_dict(raw)
    except RunError as e:
        raise RunError(f"{path}: {e}; {WINNER_HINT}") from None


def load_winner(registry: Path | str, asset: str, timeframe: str) -> Winner:
    """Read the current winner of (asset, timeframe).

    Raises:
        RunError: no winner exported there, or its files are unreadable.
    """
    reg = Path(registry)
    if reg.exists() and not reg.is_dir():
        raise RunError(f"{reg}: is a file, not a registry folder; pass the folder `tunefactory export` wrote")
    name = folder_name(asset, timeframe)
    link = reg / name
    if not link.exists():
        have = sorted(p.name for p in reg.iterdir() if not p.name.startswith(".") and p.is_dir()) if reg.is_dir() else []
        raise RunError(f"{reg}: no exported winner for {asset} {timeframe} (registry holds: "
                       f"{', '.join(have) or 'nothing'}); run `tunefactory export RUN_DIR --registry {reg}` first")
    path = link.resolve()  # read every file from one version even if the link moves meanwhile
    config = read_yaml(path / "config.yaml", WinnerConfig, hint=WINNER_HINT)
    metrics = read_json(path / "metrics.json", WinnerMetrics, hint=WINNER_HINT)
    w = Winner(path, config, metrics)
    missing = [n for n in ARTIFACTS if not (w.selection_dir / n).is_file()]
    missing += [n for n in ("spec.yaml",) if not (path / n).is_file()]
    if missing:
        raise RunError(f"{link}: winner is missing {', '.join(missing)}; export it again with this tunefactory")
    return w


def _compare(old: dict[str, Any], run: Run, group: str, t: Trial) -> str | None:
    """Why the current winner stays (``None`` when the new one replaces it)."""
    g = run.groups[group]
    val_span = g["spans"]["val"]
    old_span = old.get("spans", {}).get("val")
    if old_span != val_span:
        return (f"it was judged on validation span {old_span}, this run on {val_span}; RMSEs on different "
                "spans are not comparable (use --force to replace)")
    for key, new in (("target", g["target"]), ("horizon", g["horizon"])):
        if key in old and old[key] != new:
            return f"it predicts {key} {old[key]!r}, this run {new!r} (use --force to replace)"
    if old.get("run") == str(run.path.resolve()) and old.get("trial_id") == t.trial_id:
        return f"trial {t.trial_id} of this run is already the current winner"
    old_best = old.get("val_rmse_best")
    if not isinstance(old_best, (int, float)):
        return "its metrics.json has no val_rmse_best to compare with (use --force to replace)"
    if old_best <= t.best:
        return (f"its val RMSE {old_best:.6g} (run {old.get('run_name', old.get('run'))}, trial "
                f"{old.get('trial_id')}) is <= {t.best:.6g} of trial {t.trial_id} on the same span")
    return None


def _check_history(reg: Path) -> None:
    """Refuse before anything is written when ``history.jsonl`` cannot be appended to."""
    h = reg / "history.jsonl"
    if (h.exists() or h.is_symlink()) and not h.is_file():
        raise RunError(f"{h}: is not a file, so replacements cannot be recorded; move it away")


def export_run(run_dir: Path | str, registry: Path | str = "winners", *, force: bool = False,
               refit: Refit | None = None) -> list[str]:
    """Export every group's winner; return one human line per group (what happened and why).

    Args:
        run_dir: a run directory.
        registry: the winners folder.
        force: replace even when the current winner is better or was judged on another span.
        refit: builds the production model of a winner that is about to be published
            (``cluster.refit.production_refit``); None: the selection model only.

    Raises:
        RunError: no trial of the run saved a model, or the registry is not a folder.
    """
    run = load_run(run_dir)
    best = winners(run)
    if not best:
        raise RunError(f"{run_dir}: no finished trial saved a model; nothing to export")
    reg = Path(registry)
    if reg.exists() and not reg.is_dir():
        raise RunError(f"{reg}: registry exists and is not a folder")
    _check_history(reg)
    recipes = run_recipes(run)
    tables = {group: selection_table(t) for group, t in best.items()}  # damaged: refused before anything is written
    reg.mkdir(parents=True, exist_ok=True)
    lines = []
    for group, t in sorted(best.items()):
        name = _folder(group)
        recover(reg, name)
        dst = reg / name
        old = None
        if dst.exists():
            try:
                old = read_json(dst / "metrics.json", WinnerMetrics)
            except RunError as e:
                if not force:
                    lines.append(f"{group}: kept the current winner: it cannot be compared ({e}; use --force to "
                                 "replace)")
                    continue
        if old is not None and not force:
            why = _compare(old, run, group, t)
            if why is not None:
                lines.append(f"{group}: kept the current winner: {why}")
                continue
        vdir = reg / VERSIONS / name
        vdir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        # The atomic unit is a whole version folder, not a file (atomic_write's job): write it
        # hidden, then rename it into place.
        tmp = vdir / f".tmp-{stamp}-{os.getpid()}"
        tmp.mkdir()
        try:
            metrics = _write_winner(tmp, run, t, recipes[group], refit, tables[group])
            version = vdir / f"{stamp}-{t.trial_id}"
            os.replace(tmp, version)
            fsync_dir(vdir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        publish(reg, name, version)  # the commit point
        history_line(reg, {
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "group": group,
            "run": str(run.path.resolve()), "trial_id": t.trial_id, "version": version.name,
            "forced": bool(force and old is not None),
            "before": {k: old.get(k) for k in ("val_rmse_best", "test_rmse", "test_skill", "run", "trial_id")}
            if old else None,
            "after": {k: metrics.get(k) for k in ("val_rmse_best", "test_rmse", "test_skill")},
        })
        prune(reg, name)
        skill = metrics.get("test_skill")
        skill_s = f"{skill * 100:+.2f}%" if isinstance(skill, (int, float)) else "n/a"
        verb = "replaced the current winner with" if old is not None else "exported"
        prod = (f"; production model trained through {metrics['trained_through']}" if metrics.get("production")
                else "; no production refit (forecasts use the selection model)")
        lines.append(f"{group}: {verb} trial {t.trial_id} ({t.config.get('family')}, val RMSE {t.best:.6g}, "
                     f"test skill {skill_s}) to {dst}{prod}")
    return lines


def refit_registry(registry: Path | str, refit: Refit, *, asset: str | None = None,
                   timeframe: str | None = None) -> list[str]:
    """Retrain the production model of every published winner (or of one asset/timeframe).

    Each winner gets a new version folder: the current version's files (the selection
    model, its recipe and scores) plus a new ``production/`` from ``refit``, published by
    the same atomic link swap as an export and recorded in ``history.jsonl``. The
    previous version stays on disk and loadable.

    Raises:
        RunError: no winner matches, or the registry is not a folder.
    """
    reg = Path(registry)
    if not reg.is_dir():
        raise RunError(f"{reg}: no such registry folder; run `tunefactory export RUN_DIR --registry {reg}` first")
    _check_history(reg)
    names = sorted(p.name for p in reg.iterdir() if not p.name.startswith(".") and p.is_dir() and "_" in p.name)
    chosen = [n for n in names if (asset is None or n.rpartition("_")[0] == asset)
              and (timeframe is None or n.rpartition("_")[2] == timeframe)]
    if not chosen:
        raise RunError(f"{reg}: no exported winner for {asset or 'any asset'} {timeframe or 'any timeframe'} "
                       f"(registry holds: {', '.join(names) or 'nothing'})")
    lines = []
    for name in chosen:
        recover(reg, name)
        a, _, tf = name.rpartition("_")
        w = load_winner(reg, a, tf)
        recipe = read_recipe(w.path / "recipe.json")
        vdir = reg / VERSIONS / name
        vdir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        tmp = vdir / f".tmp-{stamp}-{os.getpid()}"
        shutil.copytree(w.path, tmp, ignore=shutil.ignore_patterns(PRODUCTION))
        try:
            if not (tmp / SELECTION).is_dir():  # an export from before selection/ existed
                (tmp / SELECTION).mkdir()
                for n in (*ARTIFACTS, "trial.json"):
                    if (tmp / n).is_file():
                        os.rename(tmp / n, tmp / SELECTION / n)
            metrics = dict(w.metrics)
            before = metrics.get("trained_through")
            metrics.update(_production(tmp, refit, recipe, (w.config.get("trial") or {}), metrics))
            write_text(tmp / "metrics.json", json.dumps(metrics, indent=1))
            fsync_dir(tmp)
            version = vdir / f"{stamp}-{metrics.get('trial_id', 'refit')}"
            os.replace(tmp, version)
            fsync_dir(vdir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        publish(reg, name, version)
        group = f"{a}/{tf}"
        history_line(reg, {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "group": group,
                            "refit": True, "run": metrics.get("run"), "trial_id": metrics.get("trial_id"),
                            "version": version.name, "previous_version": w.path.name,
                            "before": {"trained_through": before}, "after": {"trained_through":
                                                                            metrics["trained_through"]}})
        prune(reg, name)
        lines.append(f"{group}: production model of trial {metrics.get('trial_id')} retrained through "
                     f"{metrics['trained_through']} (was {before}); previous version {w.path.name} kept")
    return lines

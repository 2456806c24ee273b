"""Read a run directory from disk (no Ray needed): trials, their histories and final scores.

Run directory layout (written by ``cluster.sweep``)::

    spec.yaml                 the fully merged spec
    groups.json               per (asset, timeframe): spans, sample counts, persistence RMSE
    trial_<id>/params.json    the trial config
    trial_<id>/result.json    JSON lines: one row per epoch, the last (``done``) with test scores
    trial_<id>/error.txt      Ray's traceback when the trial failed
    trial_<id>/checkpoint_*/  model.keras, scaler.json, trial.json, predictions.npy + .json
                              (older runs: predictions.csv; see trainables.predictions)
    test_span/<ASSET>_<TF>.csv  the test rows every trial of a group shares
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from trainables.errors import RunError
from trainables.predictions import TRIAL_HINT as TRIAL_FILE_HINT
from trainables.records import Record, read_bytes, read_json, read_jsonl, read_yaml
from trainables.run_files import GroupsFile, ResultRow, TrialParams

#: What to do about a damaged run-level file.
RUN_HINT = "restore it or run the sweep again"

#: Statuses of trials that produced a usable validation score.
SCORED = ("finished", "stopped")
#: Written into the run folder when ``tunefactory run``/``resume`` saw the sweep end (not
#: when it was interrupted): without it, trials lacking final scores may still be running.
FINISHED_MARKER = "sweep_finished.json"


@dataclass
class Trial:
    """One trial as found on disk.

    Attributes:
        trial_id: Ray's trial id.
        path: the trial folder.
        config: ``params.json``.
        history: per-epoch rows (without the final scores row).
        final: the final row (``done``, with test scores) or ``None``.
        status: ``finished`` | ``stopped`` (cut by ASHA) | ``failed`` | ``running``.
        error: last line of ``error.txt`` for failed trials.
        checkpoint: the newest checkpoint folder holding ``model.keras``.
        started, ended: Unix seconds of the trial's first and last report (NaN if unknown).
        wall_seconds: Ray's wall time of the trial (includes set-up; NaN if unknown).
    """

    trial_id: str
    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    final: dict[str, Any] | None
    status: str
    error: str | None = None
    checkpoint: Path | None = None
    started: float = math.nan
    ended: float = math.nan
    wall_seconds: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)
    #: Whether the trial has ended: failed, or its last result row is marked ``done`` (Ray 2.60
    #: marks the last row of a trial ASHA stopped ``done`` too). False while it may still run.
    closed: bool = False

    @property
    def group(self) -> str:
        return str(self.config.get("group", "?"))

    @property
    def number(self) -> int | None:
        """The searcher's trial number within its group (issue order), if recorded."""
        n = self.config.get("trial_number")
        return int(n) if isinstance(n, (int, float)) else None

    @property
    def best(self) -> float:
        """Best validation RMSE over the epochs run (``inf`` when no epoch reported)."""
        if self.final is not None and "val_rmse_best" in self.final:
            return float(self.final["val_rmse_best"])
        rows = [r for r in self.history if "val_rmse_best" in r]
        return float(rows[-1]["val_rmse_best"]) if rows else float("inf")


@dataclass
class Run:
    """A run directory: its spec, groups (spans and baselines) and trials."""

    path: Path
    spec: dict[str, Any]
    groups: dict[str, dict[str, Any]]
    trials: list[Trial]
    meta: dict[str, Any]
    finished: dict[str, Any] | None = None  # the FINISHED_MARKER's content; None while the sweep may run

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.name)

    @property
    def partial(self) -> bool:
        """Whether this may be a sweep still running: no finished marker and some trial has not ended.

        A trial ASHA stopped has no final scores but has ended (its last row is ``done``), so a
        finished sweep from before the marker existed is not called partial for those.
        """
        return self.finished is None and any(not t.closed for t in self.trials)


#: What to do about a damaged trial file (the rest of the run is fine).
TRIAL_HINT = TRIAL_FILE_HINT


def _read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # Ray appends a row per epoch: the last line may be mid-write while we read (torn_tail);
    # any other broken line is damage.
    return read_jsonl(path, ResultRow, torn_tail=True, hint=TRIAL_HINT)


def _error_text(trial_dir: Path) -> str | None:
    f = trial_dir / "error.txt"
    if not f.is_file():
        return None
    # Ray's traceback, not ours to validate: any bytes, shown only as a bounded last line.
    text = read_bytes(f, hint=TRIAL_HINT).decode("utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # Ray writes the whole traceback; the reason a user needs is its last line.
    return lines[-1].strip()[:500] if lines else "failed"


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def load_trial(trial_dir: Path, *, model: type[Record] = TrialParams) -> Trial | None:
    """Read one trial folder (``None`` when Ray has not written its params yet).

    Args:
        trial_dir: the ``trial_<id>`` folder.
        model: the shape of its ``params.json`` (a confirmation's trials hold only an index).

    Raises:
        RunError: a file of the trial is damaged (one line naming the file and key or line).
    """
    params = trial_dir / "params.json"
    if not params.exists() or (params.is_file() and params.stat().st_size == 0):
        return None  # Ray creates the folder, then the file: the next report picks it up
    config = read_json(params, model, hint=TRIAL_HINT)
    rows = _read_results(trial_dir / "result.json")
    final = next((r for r in reversed(rows) if r.get("done") is True and "test_rmse" in r), None)
    epochs = [r for r in rows if "test_rmse" not in r]
    err = _error_text(trial_dir)
    if final is not None:
        status = "finished"
    elif err is not None:
        status = "failed"
    elif epochs:
        status = "stopped"
    else:
        status = "running"
    ckpts = sorted(p for p in trial_dir.glob("checkpoint_*") if (p / "model.keras").is_file())
    tid = str(rows[-1].get("trial_id")) if rows and rows[-1].get("trial_id") else trial_dir.name.removeprefix("trial_")
    if rows:
        first, last = rows[0], rows[-1]
        started = _num(first.get("timestamp")) - (_num(first.get("time_this_iter_s")) if
                                                   "time_this_iter_s" in first else 0.0)
        ended, wall = _num(last.get("timestamp")), _num(last.get("time_total_s"))
    else:
        # A trial that failed before its first report: the files' times are all we have.
        started = params.stat().st_mtime
        ended = (trial_dir / "error.txt").stat().st_mtime if err is not None else math.nan
        wall = ended - started if err is not None else math.nan
    closed = err is not None or final is not None or bool(rows and rows[-1].get("done") is True)
    return Trial(tid, trial_dir, config, epochs, final, status, err, ckpts[-1] if ckpts else None,
                 started, ended, wall, closed=closed)


def load_run(run_dir: Path | str) -> Run:
    """Read every trial of a run directory.

    Raises:
        RunError: the directory is not a tunefactory run.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run folder" if run_dir.exists() else "no such run directory"
        raise RunError(f"{run_dir}: {what}; pass the folder that `tunefactory run` printed")
    if not (run_dir / "groups.json").exists():
        raise RunError(f"{run_dir}: not a tunefactory run directory (no groups.json); pass the folder that "
                       "`tunefactory run` printed")
    meta = read_json(run_dir / "groups.json", GroupsFile, hint=RUN_HINT)
    groups = meta["groups"]
    spec: Any = {}
    if (run_dir / "spec.yaml").exists():
        spec = read_yaml(run_dir / "spec.yaml", dict[str, Any] | None, hint=RUN_HINT)
    trials = []
    for d in sorted(run_dir.glob("trial_*")):
        if d.is_dir():
            t = load_trial(d)
            if t is not None:
                trials.append(t)
    finished: Any = None
    if (run_dir / FINISHED_MARKER).is_file():
        # Through the reading layer (size cap, strict JSON); a damaged marker counts as none:
        # the report may then say "partial", which is the safe side.
        with contextlib.suppress(RunError):
            finished = read_json(run_dir / FINISHED_MARKER)
    return Run(run_dir, spec if isinstance(spec, dict) else {}, groups, trials, meta,
               finished if isinstance(finished, dict) else None)


LEADERBOARD_COLUMNS = [
    "group", "rank", "trial_id", "trial_number", "status", "family", "val_rmse_best", "val_skill", "test_rmse",
    "test_persistence_rmse", "test_skill", "test_mae", "test_diracc", "test_mape", "test_price_mape", "epochs",
    "best_epoch",
    "train_seconds", "wall_seconds", "lookback", "batch_size", "learning_rate", "loss", "optimizer", "model",
    "indicators", "n_indicators", "seed", "n_params", "error",
]


def leaderboard(run: Run) -> pd.DataFrame:
    """One row per trial, ranked by validation RMSE within each (asset, timeframe).

    Test scores are shown, never used to rank: the test span stays out of selection.
    ``indicators`` lists the feature columns the trial trained on (pool members with their
    chosen parameters, e.g. ``rsi_14``).
    """
    rows = []
    for t in run.trials:
        c, f = t.config, t.final or {}
        g = run.groups.get(t.group, {})
        pv = g.get("persistence_rmse", {}).get("val")
        best = t.best if t.history or t.final else math.nan
        last = t.history[-1] if t.history else {}
        rows.append({
            "group": t.group, "trial_id": t.trial_id, "trial_number": t.number, "status": t.status,
            "family": c.get("family"),
            "val_rmse_best": best,
            "val_skill": (1 - best / pv) if pv and math.isfinite(best) else math.nan,
            "test_rmse": f.get("test_rmse", math.nan),
            "test_persistence_rmse": g.get("persistence_rmse", {}).get("test", math.nan),
            "test_skill": f.get("test_skill", math.nan), "test_mae": f.get("test_mae", math.nan),
            "test_diracc": f.get("test_diracc", math.nan), "test_mape": f.get("test_mape", math.nan),
            "test_price_mape": f.get("test_price_mape", math.nan),
            "epochs": len(t.history), "best_epoch": f.get("best_epoch", last.get("best_epoch")),
            "train_seconds": f.get("train_seconds", last.get("train_seconds", math.nan)),
            "wall_seconds": t.wall_seconds,
            "lookback": c.get("lookback"), "batch_size": c.get("batch_size"), "learning_rate": c.get("learning_rate"),
            "loss": c.get("loss"), "optimizer": c.get("optimizer"),
            "model": json.dumps(c.get("model", {}), sort_keys=True),
            "indicators": " ".join(map(str, c.get("columns", []))), "n_indicators": len(c.get("columns", [])),
            "seed": c.get("seed"), "n_params": f.get("n_params"), "error": t.error or "",
        })
    df = pd.DataFrame(rows, columns=[c for c in LEADERBOARD_COLUMNS if c != "rank"])
    if df.empty:
        df.insert(1, "rank", pd.Series(dtype="Int64"))
        return df
    df["val_rmse_best"] = pd.to_numeric(df["val_rmse_best"], errors="coerce").replace(math.inf, math.nan)
    # Unscored trials (failed, running) go last; ties keep the searcher's issue order.
    df = df.sort_values(["group", "val_rmse_best", "trial_number"], na_position="last", kind="stable")
    df.insert(1, "rank", df.groupby("group").cumcount() + 1)
    return df.reset_index(drop=True)

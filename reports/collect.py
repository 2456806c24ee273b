"""Read a run directory from disk (no Ray needed): trials, their histories and final scores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from trainables.errors import RunError


@dataclass
class Trial:
    """One trial as found on disk."""

    trial_id: str
    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    final: dict[str, Any] | None
    status: str  # finished | stopped | failed | running
    error: str | None = None
    checkpoint: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return str(self.config.get("group", "?"))

    @property
    def best(self) -> float:
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


def _read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written while we read; the rest is intact
    return rows


def _error_text(trial_dir: Path) -> str | None:
    f = trial_dir / "error.txt"
    if not f.is_file():
        return None
    lines = [ln for ln in f.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    # Ray writes the whole traceback; the reason a user needs is its last line.
    return lines[-1][:500] if lines else "failed"


def load_trial(trial_dir: Path) -> Trial | None:
    """Read one trial folder (``None`` when it has no params yet)."""
    params = trial_dir / "params.json"
    if not params.is_file():
        return None
    config = json.loads(params.read_text(encoding="utf-8"))
    history = _read_results(trial_dir / "result.json")
    final = next((r for r in reversed(history) if r.get("done") is True and "test_rmse" in r), None)
    epochs = [r for r in history if "test_rmse" not in r]
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
    tid = str(history[-1].get("trial_id")) if history else trial_dir.name.removeprefix("trial_")
    return Trial(tid, trial_dir, config, epochs, final, status, err, ckpts[-1] if ckpts else None)


def load_run(run_dir: Path | str) -> Run:
    """Read every trial of a run directory.

    Raises:
        RunError: the directory is not a tunefactory run.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "groups.json").is_file():
        raise RunError(f"{run_dir}: not a tunefactory run directory (no groups.json); pass the folder that "
                       "`tunefactory run` printed")
    meta = json.loads((run_dir / "groups.json").read_text(encoding="utf-8"))
    import yaml

    spec = yaml.safe_load((run_dir / "spec.yaml").read_text(encoding="utf-8")) if (run_dir / "spec.yaml").is_file() else {}
    trials = []
    for d in sorted(run_dir.glob("trial_*")):
        if d.is_dir():
            t = load_trial(d)
            if t is not None:
                trials.append(t)
    return Run(run_dir, spec or {}, meta["groups"], trials, meta)


LEADERBOARD_COLUMNS = [
    "group", "rank", "trial_id", "status", "family", "val_rmse_best", "val_skill", "test_rmse",
    "test_persistence_rmse", "test_skill", "test_mae", "test_diracc", "epochs", "best_epoch",
    "train_seconds", "lookback", "batch_size", "learning_rate", "loss", "optimizer", "model", "indicators",
    "n_indicators", "seed", "n_params", "error",
]


def leaderboard(run: Run) -> pd.DataFrame:
    """One row per trial, ranked by validation RMSE within each (asset, timeframe).

    Test scores are shown, never used to rank: the test span stays out of selection.
    """
    rows = []
    for t in run.trials:
        c, f = t.config, t.final or {}
        g = run.groups.get(t.group, {})
        pv = g.get("persistence_rmse", {}).get("val")
        best = t.best if t.history else float("nan")
        rows.append({
            "group": t.group, "trial_id": t.trial_id, "status": t.status, "family": c.get("family"),
            "val_rmse_best": best,
            "val_skill": (1 - best / pv) if pv and best == best and best != float("inf") else float("nan"),
            "test_rmse": f.get("test_rmse", float("nan")),
            "test_persistence_rmse": g.get("persistence_rmse", {}).get("test", float("nan")),
            "test_skill": f.get("test_skill", float("nan")), "test_mae": f.get("test_mae", float("nan")),
            "test_diracc": f.get("test_diracc", float("nan")),
            "epochs": len(t.history), "best_epoch": f.get("best_epoch", t.history[-1].get("best_epoch") if t.history else None),
            "train_seconds": f.get("train_seconds", t.history[-1].get("train_seconds") if t.history else float("nan")),
            "lookback": c.get("lookback"), "batch_size": c.get("batch_size"), "learning_rate": c.get("learning_rate"),
            "loss": c.get("loss"), "optimizer": c.get("optimizer"),
            "model": json.dumps(c.get("model", {}), sort_keys=True),
            "indicators": " ".join(c.get("columns", [])), "n_indicators": len(c.get("columns", [])),
            "seed": c.get("seed"), "n_params": f.get("n_params"), "error": t.error or "",
        })
    df = pd.DataFrame(rows, columns=[c for c in LEADERBOARD_COLUMNS if c != "rank"])
    if df.empty:
        df.insert(1, "rank", pd.Series(dtype="Int64"))
        return df
    df["val_rmse_best"] = df["val_rmse_best"].replace(float("inf"), float("nan"))
    df = df.sort_values(["group", "val_rmse_best"], na_position="last", kind="stable")
    df.insert(1, "rank", df.groupby("group").cumcount() + 1)
    return df.reset_index(drop=True)

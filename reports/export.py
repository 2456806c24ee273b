"""Export the winner of each (asset, timeframe) of a run into a winners registry.

``<registry>/<ASSET>_<TF>/`` holds ``config.yaml`` (fully resolved trial config plus the
data and target it needs to rebuild features), ``model.keras``, ``scaler.json``,
``metrics.json`` and ``predictions.csv`` over the test span. A folder is replaced only by a
winner that is better on the **same** validation span (the selection criterion; the test
span is reported, never used to choose), and every replacement is appended to
``history.jsonl``. The swap is atomic: the new folder is written beside the old one and
renamed into place, so a crash mid-export leaves the previous winner intact.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from reports.collect import Run, Trial, load_run
from trainables.errors import RunError


def winners(run: Run) -> dict[str, Trial]:
    """Best trial per group by validation RMSE, among trials that saved a model."""
    best: dict[str, Trial] = {}
    for t in run.trials:
        if t.checkpoint is None or t.final is None:
            continue
        cur = best.get(t.group)
        if cur is None or t.best < cur.best:
            best[t.group] = t
    return best


def _folder(group: str) -> str:
    asset, tf = group.split("/")
    return f"{asset}_{tf}"


def _write_winner(dst: Path, run: Run, t: Trial) -> dict[str, Any]:
    g = run.groups[t.group]
    ck = t.checkpoint
    assert ck is not None
    for name in ("model.keras", "scaler.json", "predictions.csv"):
        shutil.copy2(ck / name, dst / name)
    metrics = {k: v for k, v in (t.final or {}).items()
               if isinstance(v, (int, float)) and not k.startswith(("time_", "timestamp", "pid"))}
    metrics.update({"val_rmse_best": t.best, "persistence_rmse": g["persistence_rmse"], "spans": g["spans"],
                    "samples": g["samples"], "run": str(run.path), "trial_id": t.trial_id})
    (dst / "metrics.json").write_text(json.dumps(metrics, indent=1))
    data = dict(run.spec.get("data") or {})
    config = {
        "asset": g["asset"], "timeframe": g["timeframe"],
        "target": {"kind": g["target"], "horizon": g["horizon"]},
        "data": {"path": data.get("path"), "source": g["source"]},
        "pool": (run.spec.get("features") or {}).get("pool"),
        "split": run.spec.get("split") or {},
        "window": {"lookback": t.config["lookback"], "max_lookback": g["max_lookback"]},
        "trial": t.config,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (dst / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return metrics


def export_run(run_dir: Path | str, registry: Path | str = "winners", *, force: bool = False) -> list[str]:
    """Export every group's winner; return one human line per group (what happened and why).

    Args:
        run_dir: a run directory.
        registry: the winners folder.
        force: replace even when the current winner is better or was judged on another span.

    Raises:
        RunError: no trial of the run saved a model.
    """
    run = load_run(run_dir)
    best = winners(run)
    if not best:
        raise RunError(f"{run_dir}: no finished trial saved a model; nothing to export")
    reg = Path(registry)
    reg.mkdir(parents=True, exist_ok=True)
    lines = []
    for group, t in sorted(best.items()):
        dst = reg / _folder(group)
        val_span = run.groups[group]["spans"]["val"]
        old = json.loads((dst / "metrics.json").read_text()) if (dst / "metrics.json").is_file() else None
        if old is not None and not force:
            if old.get("spans", {}).get("val") != val_span:
                lines.append(f"{group}: kept the current winner: it was judged on validation span "
                             f"{old.get('spans', {}).get('val')}, this run on {val_span} (use --force to replace)")
                continue
            if old.get("val_rmse_best", float("inf")) <= t.best:
                lines.append(f"{group}: kept the current winner (val RMSE {old['val_rmse_best']:.6g} <= "
                             f"{t.best:.6g} of trial {t.trial_id})")
                continue
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.new-", dir=reg))
        try:
            metrics = _write_winner(tmp, run, t)
            # Swap: old → .old-*, new → dst, then drop old. A crash before the second rename
            # leaves the old winner at dst or recoverable beside it, never a half-written dst.
            trash = None
            if dst.exists():
                trash = reg / f".{dst.name}.old-{os.getpid()}"
                os.replace(dst, trash)
            os.replace(tmp, dst)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        with open(reg / "history.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({
                "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "group": group,
                "run": str(run.path), "trial_id": t.trial_id,
                "before": {k: old.get(k) for k in ("val_rmse_best", "test_rmse", "run", "trial_id")} if old else None,
                "after": {k: metrics.get(k) for k in ("val_rmse_best", "test_rmse", "test_skill")},
            }) + "\n")
        lines.append(f"{group}: exported trial {t.trial_id} ({t.config.get('family')}, val RMSE {t.best:.6g}, "
                     f"test skill {metrics.get('test_skill', float('nan')) * 100:+.2f}%) to {dst}")
    return lines

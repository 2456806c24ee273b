"""Write ``RUN_DIR/report/``: leaderboard.csv, leaderboard.json and a self-contained index.html."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from reports.collect import Run, leaderboard, load_run
from trainables.errors import RunError

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    # Everything from a spec or a data file is user text: escape it all, always.
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _fmt(v: Any, digits: int = 5) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _pct(v: Any) -> str:
    return "—" if v is None or not isinstance(v, float) or not math.isfinite(v) else f"{v * 100:+.2f}%"


_ENV.filters["fmt"] = _fmt
_ENV.filters["pct"] = _pct


def group_cards(run: Run, board: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (asset, timeframe): winner, baseline, counts and compute time."""
    cards = []
    for g, info in run.groups.items():
        rows = board[board["group"] == g]
        ok = rows[rows["status"].isin(["finished", "stopped"])]
        win = ok.iloc[0].to_dict() if len(ok) else None
        secs = float(rows["train_seconds"].fillna(0).sum()) if len(rows) else 0.0
        cards.append({
            "group": g, "info": info, "winner": win,
            "finished": int((rows["status"] == "finished").sum()),
            "stopped": int((rows["status"] == "stopped").sum()),
            "failed": int((rows["status"] == "failed").sum()), "total": len(rows),
            "compute_seconds": secs, "avg_seconds": secs / len(rows) if len(rows) else float("nan"),
            "beats_persistence_on_test": bool(win and win["test_skill"] == win["test_skill"] and win["test_skill"] > 0),
            "rows": rows.to_dict("records"),
        })
    return cards


def build_report(run_dir: Path | str) -> Path:
    """Write the report folder of a run and return its path.

    Raises:
        RunError: not a run directory.
    """
    run = load_run(run_dir)
    board = leaderboard(run)
    out = Path(run_dir) / "report"
    out.mkdir(exist_ok=True)
    from cluster.sweep import atomic_write

    atomic_write(out / "leaderboard.csv", board.to_csv(index=False))
    atomic_write(out / "leaderboard.json", json.dumps(
        json.loads(board.to_json(orient="records")), indent=1))
    html = _ENV.get_template("index.html.j2").render(
        name=run.meta.get("name", Path(run_dir).name), spec_file=run.meta.get("spec_file", ""),
        cards=group_cards(run, board), n_trials=len(board),
        target=(run.spec.get("target") or {}).get("kind", "multiplier"))
    atomic_write(out / "index.html", html)
    if board.empty:
        raise RunError(f"{run_dir}: no trials found; the report is empty")
    return out

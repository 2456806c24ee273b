"""What the report adds for volatility targets: spike scores as columns, a chart and a note.

Trials of a volatility target already put ``test_spike_<T>_{precision,recall,f1}`` in their
final result row, and every baseline has them in ``groups.json`` (both from
:func:`trainables.evaluation.scores.spike_metrics` on the same test samples). Here they
become leaderboard columns, trial-table columns, an F1-by-threshold chart (the winner
against each baseline) and a note saying how a spike is defined and how that differs from
the paper's evaluation code. Runs of other targets are left exactly as they were.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from reports import charts
from reports.collect import Run
from trainables.evaluation.scores import SPIKE_THRESHOLDS, threshold_key
from trainables.features.targets import TARGETS

#: Spike scores shown per threshold, in this order.
SPIKE_STATS: tuple[str, ...] = ("precision", "recall", "f1")
_SHORT = {"precision": "P", "recall": "R", "f1": "F1"}

SPIKE_NOTE = (
    "Volatility spikes at T = {thresholds} (target units), scored on the test samples. Actual spike: the "
    "realised volatility is ≥ T and did not fall below the last known value, as in the paper's published "
    "evaluation code. Predicted spike: the forecast alone is ≥ T. The paper's code instead counts a predicted "
    "spike when the forecast is ≥ 1.0 at every T, and this tool used to require a positive realised future "
    "return for a predicted spike, i.e. the outcome being scored (look-ahead). Neither is done here, so these "
    "scores are not comparable with the paper's. A dash: no spike on either side."
)


def is_volatility(target: object) -> bool:
    """True when ``target`` names a registered volatility target."""
    tg = TARGETS.get(str(target))
    return tg is not None and tg.kind == "volatility"


def spike_columns(thresholds: Sequence[float] = SPIKE_THRESHOLDS) -> list[str]:
    """Leaderboard column names: ``test_spike_<T>_<stat>`` for every threshold and stat."""
    return [f"test_spike_{threshold_key(t)}_{s}" for t in thresholds for s in SPIKE_STATS]


def _volatility_groups(run: Run) -> set[str]:
    return {g for g, info in run.groups.items() if isinstance(info, dict) and is_volatility(info.get("target"))}


def add_spike_columns(board: pd.DataFrame, run: Run) -> pd.DataFrame:
    """The leaderboard with spike precision/recall/F1 columns when the run has volatility groups.

    Values come from each trial's final row; trials without one (stopped, failed) and
    groups of other targets get NaN. A run without volatility groups is returned unchanged.
    """
    groups = _volatility_groups(run)
    if not groups:
        return board
    finals = {t.trial_id: (t.final or {}) if t.group in groups else {} for t in run.trials}
    out = board.copy()
    for col in spike_columns():
        out[col] = [_float(finals.get(str(tid), {}).get(col)) for tid in out["trial_id"]]
    return out


def table_columns(target: object) -> list[tuple[str, str, str, str]]:
    """Extra trial-table columns ``(header, board column, kind, css class)`` for a volatility target."""
    if not is_volatility(target):
        return []
    return [(f"{_SHORT[s]}@{threshold_key(t)}", f"test_spike_{threshold_key(t)}_{s}", "num", "")
            for t in SPIKE_THRESHOLDS for s in SPIKE_STATS]


def _float(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def f1_by_threshold(info: Mapping[str, Any], winner: Mapping[str, Any] | None) -> dict[str, list[float]]:
    """Test-span F1 per threshold of the winner and of every baseline in ``groups.json``."""
    series: dict[str, list[float]] = {}
    if winner is not None:
        series["winner"] = [_float(winner.get(f"test_spike_{threshold_key(t)}_f1")) for t in SPIKE_THRESHOLDS]
    for name, b in (info.get("baselines") or {}).items():
        if isinstance(b, dict):
            series[str(name)] = [_float(b.get(f"test_spike_{threshold_key(t)}_f1")) for t in SPIKE_THRESHOLDS]
    return series


def spike_figure(info: Mapping[str, Any], winner: Mapping[str, Any] | None) -> Any | None:
    """The F1-by-threshold chart of a volatility group (None for other targets)."""
    if not is_volatility(info.get("target")):
        return None
    return charts.fig_spike_f1(f1_by_threshold(info, winner), [threshold_key(t) for t in SPIKE_THRESHOLDS])


def notes(info: Mapping[str, Any]) -> list[str]:
    """Lines for the page of a volatility group: the spike definition and the HAR-RV fit."""
    if not is_volatility(info.get("target")):
        return []
    out = [SPIKE_NOTE.format(thresholds=", ".join(threshold_key(t) for t in SPIKE_THRESHOLDS))]
    har = (info.get("baselines") or {}).get("har")
    if isinstance(har, dict) and all(_float(har.get(k)) == _float(har.get(k)) for k in ("b0", "b_day")):
        out.append(
            f"HAR-RV baseline (Corsi 2009), fitted by OLS on {int(_float(har.get('n_fit')))} training samples in "
            f"the target's units: ŷ = {_float(har.get('b0')):.4g} + {_float(har.get('b_day')):.4g}·RV_day + "
            f"{_float(har.get('b_week')):.4g}·RV_week + {_float(har.get('b_month')):.4g}·RV_month (RV_day: the "
            "target's measure over the last day; week and month: its mean over the last 5 and 22 days).")
    return out

"""Spike columns, the F1 chart and the notes of volatility runs (reports.volatility), from files' contents."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from reports.collect import Run, Trial
from reports.volatility import (
    add_spike_columns,
    f1_by_threshold,
    notes,
    spike_columns,
    spike_figure,
    table_columns,
)


def _trial(tid: str, group: str, final: dict[str, float] | None) -> Trial:
    return Trial(tid, Path(tid), {"group": group}, [], final, "finished" if final else "stopped")


def test_spike_columns_come_from_final_rows_of_volatility_groups_only() -> None:
    cols = spike_columns()
    assert cols[:3] == ["test_spike_1.0_precision", "test_spike_1.0_recall", "test_spike_1.0_f1"]
    assert len(cols) == 12 and cols[-1] == "test_spike_1.3_f1"
    final = {c: 0.01 * i for i, c in enumerate(cols)}
    run = Run(Path("r"), {}, {"BTC/1d": {"target": "volatility_q"}, "ETH/1d": {"target": "multiplier"}},
              [_trial("a", "BTC/1d", final), _trial("b", "BTC/1d", None), _trial("c", "ETH/1d", final)], {})
    board = pd.DataFrame({"group": ["BTC/1d", "BTC/1d", "ETH/1d"], "trial_id": ["a", "b", "c"]})
    out = add_spike_columns(board, run)
    assert list(out.columns) == ["group", "trial_id", *cols]
    assert out.loc[0, "test_spike_1.2_f1"] == final["test_spike_1.2_f1"]
    # A trial without a final row (stopped), and a group of another target: no value, not a zero.
    assert math.isnan(out.loc[1, "test_spike_1.2_f1"]) and math.isnan(out.loc[2, "test_spike_1.0_f1"])
    # A run without volatility groups keeps its leaderboard exactly.
    plain = Run(Path("r"), {}, {"ETH/1d": {"target": "multiplier"}}, [_trial("c", "ETH/1d", final)], {})
    assert add_spike_columns(board, plain) is board
    assert table_columns("multiplier") == [] and table_columns("log_return") == []
    assert [h for h, *_ in table_columns("volatility")][:3] == ["P@1.0", "R@1.0", "F1@1.0"]


def test_f1_chart_compares_the_winner_with_every_baseline_and_notes_explain_spikes() -> None:
    info = {"target": "volatility", "baselines": {
        "persistence": {"test_spike_1.0_f1": 0.5, "test_spike_1.1_f1": None},
        "har": {"test_spike_1.0_f1": 0.25, "b0": 0.05, "b_day": 0.3, "b_week": 0.25, "b_month": 0.3, "n_fit": 1589.0}}}
    winner = {"test_spike_1.0_f1": 0.75, "test_spike_1.1_f1": 0.0}
    series = f1_by_threshold(info, winner)
    assert list(series) == ["winner", "persistence", "har"]
    assert series["winner"][:2] == [0.75, 0.0] and math.isnan(series["persistence"][1])
    fig = spike_figure(info, winner)
    assert fig is not None and [t.name for t in fig.data] == ["winner", "persistence", "har"]
    assert list(fig.data[0].x) == ["T = 1.0", "T = 1.1", "T = 1.2", "T = 1.3"]
    assert fig.data[1].y[1] is None  # undefined F1 is a gap, never a zero bar
    text = " ".join(notes(info))
    assert "forecast alone is ≥ T" in text and "look-ahead" in text and "1589 training samples" in text
    assert "0.3·RV_day" in text
    assert spike_figure({"target": "multiplier"}, winner) is None and notes({"target": "price"}) == []

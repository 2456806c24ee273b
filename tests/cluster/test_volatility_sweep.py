"""Issue 13, item 6 end to end: the synthesizer_paper preset, shrunk, on the embedded BTC candles.

The volatility target needs the 1d candles and, inside them, the 1h candles (realised
volatility from hourly returns): both are embedded (``trainables/data/embedded/ohlcv/BTC-USDT_1d.csv`` and
``BTC-USDT_1h.csv.gz``), so this runs offline. Three trials (two LSTM, one transformer), one
epoch each, through the real sweep and report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from tests.search_spaces.helpers import PRESET_DIR, shrink_overrides

PRESET = PRESET_DIR / "synthesizer_paper.yaml"
FAMILIES = ("{lstm: {layers: 1, units: 4, dropout: {type: grid, values: [0.1, 0.2]}}, "
            "transformer: {layers: 1, heads: 2, d_model: 8, dropout: 0.1}}")


def test_shrunk_synthesizer_paper_run_writes_spike_columns_and_the_har_baseline(tmp_path: Path,
                                                                                 ray_local: None) -> None:
    from cluster.sweep import run_sweep
    from search_spaces.loader import load_spec

    loaded = load_spec(PRESET, [*shrink_overrides(PRESET), f"model.families={FAMILIES}", "search.num_samples=3",
                                "target.kind=volatility_q"])
    run = run_sweep(loaded, name="paper", storage=str(tmp_path))

    board = pd.read_csv(run / "report" / "leaderboard.csv")
    assert len(board) == 3 and sorted(board["family"]) == ["lstm", "lstm", "transformer"]
    assert set(board["status"]) == {"finished"}
    for t in ("1.0", "1.1", "1.2", "1.3"):
        for s in ("precision", "recall", "f1"):
            assert f"test_spike_{t}_{s}" in board.columns
    # The columns hold what each trial reported in its final row (NaN where undefined).
    for _, row in board.iterrows():
        final = [json.loads(x) for x in (run / f"trial_{row['trial_id']}" / "result.json").read_text().splitlines()
                 if x.strip()][-1]
        for t in ("1.0", "1.3"):
            got, want = row[f"test_spike_{t}_f1"], final.get(f"test_spike_{t}_f1")
            undefined = want is None or (isinstance(want, float) and math.isnan(want))
            assert (undefined and math.isnan(got)) or got == want
        assert sum(final[f"test_spike_1.0_{k}"] for k in ("tp", "fn", "fp", "tn")) == int(json.loads(
            (run / "groups.json").read_text())["groups"]["BTC-USDT/1d"]["samples"]["test"])

    group = json.loads((run / "groups.json").read_text())["groups"]["BTC-USDT/1d"]
    har = group["baselines"]["har"]
    assert {"b0", "b_day", "b_week", "b_month", "n_fit", "test_rmse", "test_spike_1.0_f1"} <= set(har)
    assert 0 < har["n_fit"] < group["samples"]["train"]
    assert har["test_rmse"] < group["baselines"]["garch"]["test_rmse"]  # 0.090 vs 0.129 on 2019-2026 (measured)

    html = (run / "report" / "index.html").read_text()
    assert ">har</td>" in html and "HAR-RV baseline (Corsi 2009)" in html
    assert "F1@1.0" in html and 'data-kind="spikes"' in html and "look-ahead" in html
    records = json.loads((run / "report" / "leaderboard.json").read_text())["trials"]
    assert all("test_spike_1.2_f1" in r for r in records)

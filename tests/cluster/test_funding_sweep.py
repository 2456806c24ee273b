"""Issue 7 end to end: indicator subsets that include funding-rate features, BTC 8h."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SPEC = """\
name: funding
data:
  assets: [BTC-USDT]
  timeframes: [8h]
  start: 2025-01-01      # the vendored funding file has a hole 2023-06 .. 2024-12
  funding: true          # trainables/data/embedded/funding/BTC-USDT_perp_funding_rate_8h.csv, aligned as of candle close
window: {lookback: 6}
features:
  pool: [log_return, hl_spread, funding_rate, {funding_rate_change: {lag: [1, 3]}}]
  min_size: 2
  max_size: 4
  always: [funding_rate]
model:
  families:
    mlp: {units: 8}
training: {max_epochs: 1, patience: 0}
search: {algorithm: random, num_samples: 3, seed: 3}
scheduler: {kind: none}
"""


def test_sweep_searches_subsets_with_funding_features_on_btc_8h(tmp_path: Path, ray_local: None) -> None:
    from cluster.sweep import run_sweep
    from search_spaces.loader import load_spec

    spec = tmp_path / "funding.yaml"
    spec.write_text(SPEC)
    run = run_sweep(load_spec(spec), name="funding", storage=str(tmp_path / "runs"))
    groups = json.loads((run / "groups.json").read_text())["groups"]
    assert set(groups["BTC-USDT/8h"]["columns"]) >= {"funding_rate", "funding_rate_change_1", "funding_rate_change_3"}
    params = [json.loads(p.read_text()) for p in run.glob("trial_*/params.json")]
    assert len(params) == 3
    assert all("funding_rate" in p["columns"] for p in params)
    board = pd.read_csv(run / "report" / "leaderboard.csv")
    assert (board["status"] == "finished").all()
    assert board["indicators"].str.contains("funding_rate").all()

"""Every preset in search_spaces/ validates, prints its size, documents itself, and runs when shrunk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from search_spaces.loader import load_spec
from search_spaces.space import trials_per_group

from .helpers import PRESET_DIR, PRESETS, shrink_overrides, space_rows

EXPECTED = {
    # preset → (groups, trials per group, algorithm)
    "laptop.yaml": (4, 15, "optuna-tpe"),
    "factory.yaml": (48, 200, "optuna-tpe"),
    "bitcoin_factory.yaml": (1, 96, "grid"),
    "synthesizer_paper.yaml": (1, 880, "grid"),
    "liquidator.yaml": (2, 60, "optuna-tpe"),
    "liquidator_7d.yaml": (2, 60, "optuna-tpe"),
    "liquidator_30d.yaml": (2, 60, "optuna-tpe"),
}


def test_preset_list_is_complete() -> None:
    assert set(PRESETS) == set(EXPECTED)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_validates(preset: str, cli: Any) -> None:
    res = cli("validate", PRESET_DIR / preset)
    assert res.code == 0, res.err
    assert res.err == ""
    assert res.out.startswith(f"{PRESET_DIR / preset}: OK. Sweep '{preset[:-5]}'")
    assert len(res.out.strip().splitlines()) == 1  # one paragraph


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_space_prints_its_size(preset: str, cli: Any) -> None:
    groups, per, algo = EXPECTED[preset]
    res = cli("space", PRESET_DIR / preset)
    assert res.code == 0, res.err
    rows = space_rows(res.out)
    assert rows["groups (asset x timeframe)"] == str(groups)
    assert rows["trials"] == f"{groups * per:,} ({per:,} per group, {algo})"
    assert rows["trial-epochs"].startswith("<= ")
    spec = load_spec(PRESET_DIR / preset).spec
    assert trials_per_group(spec) == per and len(spec.groups) == groups


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_header_says_how_to_run_it_and_what_it_costs(preset: str) -> None:
    lines = (PRESET_DIR / preset).read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert f"tunefactory run search_spaces/{preset}" in text
    assert "Cost:" in text


def test_factory_covers_every_embedded_asset_and_timeframe() -> None:
    from trainables.data.candles import TIMEFRAMES, available

    s = load_spec(PRESET_DIR / "factory.yaml").spec
    assert sorted(s.data.assets) == sorted(available())
    assert s.data.timeframes == list(TIMEFRAMES)
    assert set(s.model.families) == {"lstm", "gru"}
    assert 0 < s.resources.gpus < 1


def test_bitcoin_factory_is_the_prior_art_recipe() -> None:
    s = load_spec(PRESET_DIR / "bitcoin_factory.yaml").spec
    assert s.data.assets == ["BTC-USDT"] and s.data.timeframes == ["1h"]
    assert s.model.families["lstm"]["layers"].values == (1,)
    assert s.training.batch_size.values == (72,) and s.training.loss.values == ("mae",)
    assert s.window.lookback.type == "grid" and s.window.lookback.values == (5, 10, 15)
    assert s.training.max_epochs == 750 and s.training.patience.values == (0,) and s.scheduler.kind == "none"


def test_synthesizer_paper_grid() -> None:
    from trainables.models.families import MODELS

    s = load_spec(PRESET_DIR / "synthesizer_paper.yaml").spec
    fams = set(s.model.families)
    assert "transformer" in fams and fams == {f for f in MODELS if f in ("transformer", "lstm") or f.startswith("synth_")}
    for family, space in s.model.families.items():
        assert space["layers"].values == (1, 2, 4, 8) and space["dropout"].values == (0.1, 0.2)
        if family == "lstm":  # the paper's LSTM: 64 units, no heads (its checkpoint: 8 layers, dropout 0.2)
            assert space["units"].values == (64,) and "heads" not in space
        else:
            assert space["heads"].values == (2, 4, 8)
    assert s.training.batch_size.values == (4, 8, 16, 32, 64)
    assert s.window.lookback.values == (64,) and s.training.patience.values == (200,)
    assert s.training.learning_rate.values == (1e-5,) and s.training.weight_decay.values == (1e-6,)
    assert s.training.optimizer.values == ("adam",)


def test_liquidator_features_are_changes() -> None:
    s = load_spec(PRESET_DIR / "liquidator.yaml").spec
    lags = [1, 2, 3, 5, 10, 20, 30]
    assert [m.key for m in s.features.pool] == [f"log_return_{k}" for k in lags] + [f"volume_change_{k}" for k in lags]
    assert s.data.assets == ["BTC-USDT", "ETH-USDT"] and s.data.timeframes == ["1d"]
    assert s.target.kind == "multiplier" and s.target.horizon == 1


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_shrunk_runs_end_to_end(preset: str, tmp_path: Path, ray_local: None) -> None:
    """Each preset, shrunk to 2 trials x 1 epoch on BTC daily since 2023, trains through the real sweep."""
    from cluster.sweep import run_sweep

    loaded = load_spec(PRESET_DIR / preset, shrink_overrides(PRESET_DIR / preset))
    assert trials_per_group(loaded.spec) == 2 and loaded.spec.groups == [("BTC-USDT", "1d")]
    run = run_sweep(loaded, name=preset[:-5], storage=str(tmp_path))
    board = pd.read_csv(run / "report" / "leaderboard.csv")
    assert len(board) == 2
    assert set(board["status"]) <= {"finished", "stopped"}
    params = [json.loads(p.read_text()) for p in run.glob("trial_*/params.json")]
    assert len(params) == 2
    fams = set(loaded.spec.model.families)
    for p in params:
        assert p["family"] in fams and p["max_epochs"] == 1 and p["lookback"] == 4

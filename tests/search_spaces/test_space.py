"""Distributions → Optuna, indicator subsets (size + priorities), grid enumeration, seeded determinism, composition."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from search_spaces.distributions import DistError, parse_dist
from search_spaces.loader import SpecError, deep_merge, load_spec
from search_spaces.schema import grid_size
from search_spaces.space import (
    CONFIG_KEYS,
    asha_epochs,
    grid_configs,
    n_subsets,
    subset_from_params,
    subset_params,
    subsets,
    suggest_config,
    trials_per_group,
)

from .helpers import PRESET_DIR, space_rows


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _spec(tmp_path: Path, tiny_spec_text: str, *sets: str) -> Any:
    return load_spec(_write(tmp_path, tiny_spec_text), list(sets)).spec


# ----------------------------------------------------------------------------- distributions
@pytest.mark.parametrize(("raw", "match"), [
    ({"type": "uniform", "low": 1.0, "high": 1.0}, r"low must be < high; got low=1.0, high=1.0"),
    ({"type": "randint", "low": 5, "high": 2}, r"low must be < high; got low=5, high=2"),
    ({"type": "randint", "low": 1.5, "high": 2}, r"low must be a whole number; got 1.5"),
    ({"type": "loguniform", "low": 0.0, "high": 1.0}, r"loguniform low must be > 0; got 0.0"),
    ({"type": "quniform", "low": 0.0, "high": 1.0, "q": 0.0}, r"q must be > 0; got 0.0"),
    ({"type": "quniform", "low": 0.0, "high": 1.0, "q": 2.0}, r"q must be <= high - low \(1\); got 2.0"),
    ({"type": "choice", "values": []}, r"choice\.values must not be empty; got \[\]"),
    ({"type": "choice", "values": [[1], [2]]}, r"choice\.values must be numbers, strings or booleans; got \[1\]"),
    ({"type": "choice", "values": [1, 1]}, r"choice\.values must not repeat a value; got \[1, 1\]"),
    ({"type": "choice"}, r"choice needs values; missing values"),
    ({"low": 1, "high": 2}, r"a distribution needs 'type'"),
    ({"type": "uniform", "low": 0, "high": float("inf")}, r"high must be a finite number; got inf"),
    ({"type": ["uniform"], "low": 0, "high": 1}, r"unknown distribution type; allowed: .*; got \['uniform'\]"),
])
def test_malformed_distributions(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(DistError, match=match):
        parse_dist(raw)


# ----------------------------------------------------------------------------- indicator subsets
def test_subset_is_the_size_highest_priorities_in_pool_order(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _spec(tmp_path, tiny_spec_text, "features.min_size=2", "features.max_size=3")
    keys = [m.key for m in spec.features.pool]
    assert spec.features.size_range() == (2, 3) and spec.features.free == keys[1:]
    prio = {"ind.log_return_3": 0.2, "ind.rsi_14": 0.9, "ind.hl_spread": 0.5, "ind.volume_change_1": 0.7}
    assert subset_from_params(spec, {"ind.size": 2, **prio}) == ["log_return_1", "rsi_14"]
    assert subset_from_params(spec, {"ind.size": 3, **prio}) == ["log_return_1", "rsi_14", "volume_change_1"]
    # Ties (only enqueued points make them) go to pool order.
    tie = dict.fromkeys(prio, 1.0)
    assert subset_from_params(spec, {"ind.size": 3, **tie}) == ["log_return_1", "log_return_3", "rsi_14"]
    with pytest.raises(ValueError, match=r"ind\.size=4 is outside the subset sizes 2\.\.3"):
        subset_from_params(spec, {"ind.size": 4, **prio})
    # Every subset within the bounds round-trips through its parameters.
    seen = set()
    for sub in subsets(spec):
        params = subset_params(spec, sub)
        assert set(params) == {"ind.size", *prio}
        assert subset_from_params(spec, params) == sub
        seen.add(tuple(sub))
    assert len(seen) == n_subsets(spec) == 10  # C(4,1) + C(4,2)


def test_one_size_only_samples_no_size_and_all_in_samples_nothing(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _spec(tmp_path, tiny_spec_text, "features.min_size=3", "features.max_size=3")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    t = study.ask()
    cfg = suggest_config(spec, t, group="BTC-USDT/1d", seed=0)
    assert len(cfg["indicators"]) == 3 and "ind.size" not in t.params and "ind.rsi_14" in t.params
    assert subset_from_params(spec, t.params) == cfg["indicators"]
    spec = _spec(tmp_path, tiny_spec_text, "features.min_size=5", "features.max_size=5")
    t = study.ask()
    cfg = suggest_config(spec, t, group="BTC-USDT/1d", seed=0)
    assert cfg["indicators"] == [m.key for m in spec.features.pool]
    assert not any(k.startswith("ind.") for k in t.params)  # nothing to choose, nothing recorded


def test_sampled_trials_respect_bounds(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _spec(tmp_path, tiny_spec_text)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for i in range(40):
        t = study.ask()
        cfg = suggest_config(spec, t, group="BTC-USDT/1d", seed=i)
        assert set(CONFIG_KEYS) <= set(cfg)
        assert 1 <= len(cfg["indicators"]) <= 3 and cfg["indicators"][0] == "log_return_1"
        assert cfg["columns"] == cfg["indicators"]  # fixed variants: the member key is the column
        # Conditional parameters exist only for the family drawn.
        fam_params = {k.split(".")[0] for k in t.params if k.startswith(("mlp.", "gru."))}
        assert fam_params <= {cfg["family"]}
        study.tell(t, float(i))


def test_searched_indicator_parameter_picks_a_precomputed_column(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _spec(tmp_path, tiny_spec_text, "features.pool=[log_return, {rsi: {period: {type: choice, values: [7, 21]}}}]",
                 "features.always=[log_return_1, rsi]", "features.min_size=2", "features.max_size=null")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    cols = set()
    for i in range(20):
        t = study.ask()
        cfg = suggest_config(spec, t, group="BTC-USDT/1d", seed=i)
        assert cfg["indicators"] == ["log_return_1", "rsi"]
        assert cfg["columns"][1] == f"rsi_{cfg['indicator_params']['rsi.period']}"
        cols.add(cfg["columns"][1])
        study.tell(t, 0.0)
    assert cols == {"rsi_7", "rsi_21"}


# ----------------------------------------------------------------------------- grid
GRID_SPEC = """\
name: grid
data: {assets: [BTC-USDT, ETH-USDT], timeframes: [1d]}
window: {lookback: {type: grid, values: [4, 8]}}
features:
  pool: [log_return, {rsi: {period: {type: grid, values: [7, 14, 21]}}}, {sma_ratio: {period: [10, 20]}}, hl_spread]
  always: [log_return_1]
  max_size: 3
model:
  families:
    mlp: {units: {type: grid, values: [8, 16]}, layers: {type: randint, low: 1, high: 2}}
    gru: {units: 8}
training:
  max_epochs: 3
  batch_size: {type: choice, values: [32, 64]}
  learning_rate: 1.0e-3
search: {algorithm: grid}
scheduler: {kind: none}
"""


def _space_numbers(cli: Any, spec: Path) -> dict[str, str]:
    res = cli("space", spec)
    assert res.code == 0, res.err
    return space_rows(res.out)


def test_grid_enumeration_matches_space_command(tmp_path: Path, cli: Any) -> None:
    path = _write(tmp_path, GRID_SPEC)
    spec = load_spec(path).spec
    pts = grid_configs(spec, group="BTC-USDT/1d")
    # subsets of {rsi(3 periods), sma_ratio_10, sma_ratio_20, hl_spread} of size 0..2 next to log_return_1,
    # weighted by rsi's 3 periods: 1 + (3+1+1+1) + (3*3 + 3 + 3*1... ) computed by brute force below.
    free_w = {"rsi": 3, "sma_ratio_10": 1, "sma_ratio_20": 1, "hl_spread": 1}
    subset_points = sum(math.prod(free_w[k] for k in c) for r in range(3) for c in itertools.combinations(free_w, r))
    expected = (2 * 2 + 1) * 2 * 2 * subset_points  # (mlp units x layers + gru) x lookback x batch x subsets
    assert len(pts) == grid_size(spec) == expected == trials_per_group(spec)
    assert len({json.dumps(p, sort_keys=True) for p in pts}) == len(pts)  # all distinct
    rows = _space_numbers(cli, path)
    assert rows["grid points per group"] == f"{expected:,}"
    assert rows["trials"] == f"{2 * expected:,} ({expected:,} per group, grid)"
    assert rows["indicator subsets"].startswith(f"{n_subsets(spec):,} (pool 5")
    assert rows["trial-epochs"].startswith(f"<= {2 * expected * 3:,}")


@pytest.mark.parametrize("preset", ["bitcoin_factory.yaml", "synthesizer_paper.yaml"])
def test_grid_presets_enumerate_what_space_prints(preset: str, cli: Any) -> None:
    spec = load_spec(PRESET_DIR / preset).spec
    pts = grid_configs(spec, group=f"{spec.data.assets[0]}/{spec.data.timeframes[0]}")
    rows = _space_numbers(cli, PRESET_DIR / preset)
    assert rows["grid points per group"] == f"{len(pts):,}"
    assert len(pts) == {"bitcoin_factory.yaml": 3 * 32, "synthesizer_paper.yaml": (7 * 4 * 3 * 2 + 4 * 2) * 5}[preset]


def test_grid_sample_is_a_seeded_subset(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GRID_SPEC)).spec
    full = [json.dumps(p, sort_keys=True) for p in grid_configs(spec, group="BTC-USDT/1d")]
    a = [json.dumps(p, sort_keys=True) for p in grid_configs(spec, group="BTC-USDT/1d", limit=7, seed=1)]
    b = [json.dumps(p, sort_keys=True) for p in grid_configs(spec, group="BTC-USDT/1d", limit=7, seed=1)]
    c = [json.dumps(p, sort_keys=True) for p in grid_configs(spec, group="BTC-USDT/1d", limit=7, seed=2)]
    assert a == b and a != c and len(set(a)) == 7 and set(a) <= set(full)
    assert len(grid_configs(spec, group="BTC-USDT/1d", limit=10_000)) == len(full)


def test_grid_capped_by_num_samples(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GRID_SPEC), ["search.num_samples=5"]).spec
    assert trials_per_group(spec) == 5


def test_huge_grid_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"search\.algorithm: the grid has 304,076 points per asset/timeframe, "
                       r"more than 100,000 can be enumerated; use optuna-tpe or random"):
        load_spec(_write(tmp_path, GRID_SPEC), ["model.families.mlp.units={type: randint, low: 1, high: 4000}",
                                                "model.families.mlp.layers=1", "model.families.gru=null"])


# ----------------------------------------------------------------------------- determinism
def _suggest(spec: Any, n: int, feedback: bool = True) -> list[dict[str, Any]]:
    from cluster.searcher import GroupedSearcher

    s = GroupedSearcher(spec)
    out = []
    for i in range(n):
        cfg = s.suggest(f"t{i}")
        out.append(cfg)
        if feedback:  # a deterministic "result" so TPE has something to model
            s.on_trial_complete(f"t{i}", {"val_ratio_best": (cfg["lookback"] * 7 + len(cfg["columns"])) % 5 / 5})
    return out


@pytest.mark.parametrize("algorithm", ["optuna-tpe", "random", "grid"])
def test_same_seed_same_trials_other_seed_other_trials(algorithm: str, tmp_path: Path, tiny_spec_text: str) -> None:
    sets = [f"search.algorithm={algorithm}", "search.num_samples=12", "search.n_startup_trials=3",
            "data.assets=[BTC-USDT, ETH-USDT]"]
    if algorithm == "grid":
        sets.append("training.learning_rate={type: choice, values: [0.001, 0.01]}")
    a = _suggest(_spec(tmp_path, tiny_spec_text, *sets, "search.seed=7"), 24)
    b = _suggest(_spec(tmp_path, tiny_spec_text, *sets, "search.seed=7"), 24)
    c = _suggest(_spec(tmp_path, tiny_spec_text, *sets, "search.seed=8"), 24)
    assert a == b
    assert [x["seed"] for x in a] != [x["seed"] for x in c]
    strip = [{k: v for k, v in x.items() if k != "seed"} for x in a]
    assert strip != [{k: v for k, v in x.items() if k != "seed"} for x in c]
    assert [x["group"] for x in a[:4]] == ["BTC-USDT/1d", "ETH-USDT/1d"] * 2  # round-robin
    assert len({x["seed"] for x in a}) == 24


def test_trial_configs_carry_what_the_trainable_reads(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _spec(tmp_path, tiny_spec_text, "scheduler={kind: asha, max_t: 1, grace_period: 1}")
    for cfg in _suggest(spec, 4):
        assert set(CONFIG_KEYS) <= set(cfg)
        assert cfg["max_epochs"] == 1  # ASHA's max_t caps every trial
        assert isinstance(cfg["batch_size"], int) and isinstance(cfg["patience"], int)


def test_asha_estimate() -> None:
    assert asha_epochs(27, 1, 3) == pytest.approx(1 + 2 / 3 + 6 / 9 + 18 / 27)
    assert asha_epochs(10, 10, 3) == 10


# ----------------------------------------------------------------------------- composition and splits
def test_deep_merge_rules() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "d": {"type": "choice", "values": [1, 2]}, "k": 1}
    over = {"a": {"y": [3]}, "d": {"values": [5]}, "k": {"type": "randint", "low": 1, "high": 2}}
    assert deep_merge(base, over) == {"a": {"x": 1, "y": [3]}, "d": {"type": "choice", "values": [5]},
                                      "k": {"type": "randint", "low": 1, "high": 2}}
    assert base["a"]["y"] == [1, 2]  # inputs untouched


def test_liquidator_siblings_inherit_everything_but_the_horizon() -> None:
    base = load_spec(PRESET_DIR / "liquidator.yaml")
    for h in (7, 30):
        sib = load_spec(PRESET_DIR / f"liquidator_{h}d.yaml")
        assert sib.spec.target.horizon == h and sib.name == f"liquidator_{h}d"
        a = sib.spec.model_dump(exclude={"name": True, "target": {"horizon"}})
        b = base.spec.model_dump(exclude={"name": True, "target": {"horizon"}})
        assert a == b


def test_base_chain_and_set_override_order(tmp_path: Path, tiny_spec_text: str) -> None:
    _write(tmp_path, tiny_spec_text, "root.yaml")
    _write(tmp_path, "base: root.yaml\ntraining: {max_epochs: 3}\nwindow: {lookback: {values: [2, 4]}}\n", "mid.yaml")
    sub = tmp_path / "sub"
    sub.mkdir()
    leaf = _write(sub, "base: ../mid.yaml\nname: leaf\ntraining: {patience: 1}\n", "leaf.yaml")
    loaded = load_spec(leaf, ["training.patience=0", "search.seed=3"])
    s = loaded.spec
    assert s.name == "leaf" and s.training.max_epochs == 3 and s.search.seed == 3
    assert s.training.patience.values == (0,)  # --set wins over the file
    assert s.window.lookback.type == "choice" and s.window.lookback.values == (2, 4)  # partial dist update
    assert s.training.learning_rate.type == "loguniform"  # from the root
    assert "base" not in loaded.raw
    assert yaml.safe_load(yaml.safe_dump(loaded.raw))["name"] == "leaf"


def test_split_by_dates(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _spec(tmp_path, tiny_spec_text, "split={val_start: 2024-01-01, test_start: 2025-01-01}")
    sp = spec.split
    assert sp.by_dates and sp.fractions() is None
    assert [str(d) for d in sp.dates()] == ["2024-01-01", "2025-01-01"]
    days = np.arange(np.datetime64("2023-01-01"), np.datetime64("2026-01-01")).astype("datetime64[ns]")
    tr, va, te = sp.fractions_for(days.astype("int64"))
    n = len(days)
    assert round(n * tr) == 365 and round(n * (tr + va)) == 365 + 366  # 2024 is a leap year
    assert tr + va + te == pytest.approx(1.0)


def test_split_fractions(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _spec(tmp_path, tiny_spec_text, "split={train: 0.6, test: 0.2}")
    assert spec.split.fractions() == pytest.approx((0.6, 0.2, 0.2))
    assert not spec.split.by_dates and spec.split.dates() is None
    assert spec.split.fractions_for([1, 2, 3]) == spec.split.fractions()

"""Indicator subsets through the real searcher: what Optuna records is what trains (issue 13, item 5).

Configs are drawn through :class:`cluster.searcher.GroupedSearcher` with the presets' own
pools, bounds and seeds; the subset is decoded from each Optuna trial's parameters and
compared with the config's ``indicators``/``columns``. Before the change (one boolean per
member, then a repair) 300 configs gave 130 (factory), 84 (laptop) and 93 (liquidator)
differences under ``random``, sizes bunched at the top (laptop 2..8: 0/0/5/29/57/53/156),
and the factory preset never drew fewer than 6 members: the bounds below fail for it.
"""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from cluster.searcher import GroupedSearcher, _trial_json
from search_spaces.loader import load_spec
from search_spaces.space import columns_for, subset_from_params

PRESETS = Path(__file__).resolve().parents[2] / "search_spaces"
N = 300

# 0.999 quantiles of chi-square (scipy.stats.chi2.ppf): the statistics are deterministic at the
# presets' fixed seeds, and a fair draw sits far below these; the old code sat far above.
CHI2_999 = {6: 22.46, 10: 29.59, 12: 32.91, 13: 34.53, 22: 48.27}


def _value(indicators: list[str], number: int) -> float:
    """A deterministic synthetic objective: an RSI member helps, more members cost a little."""
    rsi = any(m.startswith("rsi") for m in indicators)
    return 1.0 + 0.002 * len(indicators) - 0.05 * rsi + (number * 7919 % 101) / 10_000


_DRAWS: dict[tuple[str, str], tuple[Any, list[dict[str, Any]], list[optuna.trial.FrozenTrial]]] = {}


def _draw(preset: str, algorithm: str) -> tuple[Any, list[dict[str, Any]], list[optuna.trial.FrozenTrial]]:
    """N configs of the preset's first group, each told the synthetic value (cached per module)."""
    if (preset, algorithm) not in _DRAWS:
        spec = load_spec(PRESETS / f"{preset}.yaml", [f"search.algorithm={algorithm}", f"search.num_samples={N}",
                                                      "data.assets=[BTC-USDT]", "data.timeframes=[1d]"]).spec
        s = GroupedSearcher(spec)
        assert len(s.groups) == 1
        configs = []
        for i in range(N):
            cfg = s.suggest(f"t{i}")
            configs.append(cfg)
            s.on_trial_complete(f"t{i}", {"val_ratio_best": _value(cfg["indicators"], i)})
        _DRAWS[preset, algorithm] = spec, configs, s.studies[s.groups[0]].get_trials(deepcopy=False)
    return _DRAWS[preset, algorithm]


@pytest.mark.parametrize("algorithm", ["optuna-tpe", "random"])
@pytest.mark.parametrize("preset", ["factory", "laptop", "liquidator"])
def test_optuna_records_exactly_the_subset_that_trains(preset: str, algorithm: str) -> None:
    spec, configs, trials = _draw(preset, algorithm)
    assert len(trials) == len(configs) == N
    diffs = []
    for t, cfg in zip(trials, configs, strict=True):
        recorded = subset_from_params(spec, t.params)
        if recorded != cfg["indicators"] or columns_for(spec, recorded, cfg["indicator_params"]) != cfg["columns"]:
            diffs.append((t.number, recorded, cfg["indicators"]))
        assert t.user_attrs["indicators"] == cfg["indicators"]
    assert diffs == []
    lo, hi = spec.features.size_range()
    assert all(lo <= len(c["indicators"]) <= hi and c["indicators"][0] == "log_return_1" for c in configs)


@pytest.mark.parametrize("preset", ["factory", "laptop", "liquidator"])
def test_random_search_covers_every_size_and_treats_members_alike(preset: str) -> None:
    spec, configs, _ = _draw(preset, "random")
    f = spec.features
    lo, hi = f.size_range()
    sizes = Counter(len(c["indicators"]) for c in configs)
    assert set(sizes) == set(range(lo, hi + 1)), sorted(sizes.items())  # every size from min to max
    k = hi - lo + 1
    chi_sizes = sum((sizes[s] - N / k) ** 2 / (N / k) for s in range(lo, hi + 1))
    assert chi_sizes < CHI2_999[k - 1], (chi_sizes, sorted(sizes.items()))
    # Members against the design (size uniform, then every free member equally likely), not
    # against the sizes drawn: the old code's bunched sizes inflated every member's share.
    free = f.free
    n_always = len(f.always)
    expected = N * sum(s - n_always for s in range(lo, hi + 1)) / k / len(free)
    counts = Counter(m for c in configs for m in c["indicators"] if m in free)
    chi_members = sum((counts[m] - expected) ** 2 / expected for m in free)
    assert chi_members < CHI2_999[len(free)], (chi_members, expected, counts)
    # At each size, too: a member's share among the draws of that size is k_free / n_free.
    for s in range(lo, hi + 1):
        at = [c for c in configs if len(c["indicators"]) == s]
        share = Counter(m for c in at for m in c["indicators"] if m in free)
        assert max(share.values(), default=0) <= len(at)
        assert sum(share.values()) == len(at) * (s - n_always)


def _short_study(tmp_path: Path, tiny_spec_text: str, algorithm: str,
                 balance: bool = False) -> tuple[Any, GroupedSearcher, list[Any]]:
    raw = yaml.safe_load(tiny_spec_text)
    raw["data"]["assets"] = ["BTC-USDT", "ETH-USDT"]
    raw["features"].update(min_size=1, max_size=4)
    raw["search"].update(algorithm=algorithm, num_samples=40, n_startup_trials=8, balance_families=balance)
    (tmp_path / f"{algorithm}-{balance}.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp_path / f"{algorithm}-{balance}.yaml").spec
    s = GroupedSearcher(spec)
    configs = []
    for i in range(80):
        cfg = s.suggest(f"t{i}")
        configs.append(cfg)
        s.on_trial_complete(f"t{i}", {"val_ratio_best": _value(cfg["indicators"], i)})
    assert s.suggest("t80") == "FINISHED"
    return spec, s, configs


@pytest.mark.parametrize("balance", [False, True])
def test_tpe_learns_the_member_that_helps_in_a_short_grouped_study(tmp_path: Path, tiny_spec_text: str,
                                                                   balance: bool) -> None:
    """Two groups x 40 trials: after 8 random ones, TPE proposes rsi_14 (the objective rewards it) far
    more often than a random search of the same space does; also with the families balanced, where
    each family's TPE sees half the trials (so the share is judged over both groups together:
    seeds 0-4 and 7 gave 0.5-0.95 per group balanced, 0.15-0.4 random)."""
    spec, s, configs = _short_study(tmp_path, tiny_spec_text, "optuna-tpe", balance)
    _, _, rand = _short_study(tmp_path, tiny_spec_text, "random", balance)
    shares, shares_rand = [], []
    for g in s.groups:
        mine = [c for c in configs if c["group"] == g]
        trials = s.studies[g].get_trials(deepcopy=False)
        assert [subset_from_params(spec, t.params) for t in trials] == [c["indicators"] for c in mine]
        assert {"ind.size", "ind.rsi_14", "ind.hl_spread"} <= set(trials[-1].params)
        late = mine[20:]
        late_rand = [c for c in rand if c["group"] == g][20:]
        shares.append(sum("rsi_14" in c["indicators"] for c in late) / 20)
        shares_rand.append(sum("rsi_14" in c["indicators"] for c in late_rand) / 20)
    judged = [(sum(shares) / 2, sum(shares_rand) / 2)] if balance else list(zip(shares, shares_rand, strict=True))
    for share, share_rand in judged:
        assert share >= 0.6 and share >= share_rand + 0.2, (shares, shares_rand)


def test_points_to_evaluate_switches_become_the_subset_first_trained(tmp_path: Path, tiny_spec_text: str) -> None:
    raw = yaml.safe_load(tiny_spec_text)
    raw["search"].update(algorithm="optuna-tpe", num_samples=3, points_to_evaluate=[
        {"ind.rsi_14": True, "ind.hl_spread": True, "ind.volume_change_1": False},  # size 3: two switched on
        {"ind.size": 3, "ind.log_return_3": False, "ind.rsi_14": False},  # the two left, in pool order
        {"ind.volume_change_1": True}])  # smallest size holding it: 2
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp_path / "s.yaml").spec
    s = GroupedSearcher(spec)
    got = [s.suggest(f"t{i}")["indicators"] for i in range(3)]
    assert got == [["log_return_1", "rsi_14", "hl_spread"], ["log_return_1", "hl_spread", "volume_change_1"],
                   ["log_return_1", "volume_change_1"]]
    trials = s.studies["BTC-USDT/1d"].get_trials(deepcopy=False)
    assert [subset_from_params(spec, t.params) for t in trials] == got


TRAINED = [["log_return_1", "rsi_14"], ["log_return_1", "log_return_3", "hl_spread"]]


def _format_1_study(spec: Any) -> optuna.Study:
    """Two finished trials as the code before this change recorded them: booleans, then a repaired subset."""
    old = optuna.create_study(direction="minimize")
    for i, ind in enumerate(TRAINED):
        t = old.ask()
        t.suggest_categorical("family", list(spec.model.families))
        for m in ("log_return_3", "rsi_14", "hl_spread", "volume_change_1"):
            t.suggest_categorical(f"ind.{m}", [True, False])  # what the repair then overrode
        t.set_user_attr("indicators", ind)
        old.tell(t, 0.9 - i / 10)
    return old


@pytest.mark.parametrize("kind", ["json", "pickle"])
def test_a_format_1_state_resumes_with_the_subsets_that_trained(tmp_path: Path, tiny_spec_text: str,
                                                                 kind: str) -> None:
    """A searcher state saved before this change (booleans + repair) is carried into the new parametrisation:
    the JSON of format 1, or the pickle from before the JSON state (which resume verifies first)."""
    raw = yaml.safe_load(tiny_spec_text)
    raw["search"].update(algorithm="optuna-tpe", num_samples=6, n_startup_trials=2)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp_path / "s.yaml").spec
    old = _format_1_study(spec)
    trained = TRAINED
    if kind == "json":
        state = {"format": "tunefactory-grouped-searcher/1", "issued": {"BTC-USDT/1d": 2}, "live": {},
                 "studies": {"BTC-USDT/1d": [_trial_json(t) for t in old.trials]}}
        (tmp_path / "state.pkl").write_text(json.dumps(state))
    else:
        a = GroupedSearcher(spec)
        a.studies["BTC-USDT/1d"], a.issued = old, {"BTC-USDT/1d": 2}
        (tmp_path / "state.pkl").write_bytes(pickle.dumps(a.__dict__))
    s = GroupedSearcher(spec)
    s.restore(str(tmp_path / "state.pkl"))
    restored = s.studies["BTC-USDT/1d"].get_trials(deepcopy=False)
    assert [subset_from_params(spec, t.params) for t in restored] == trained
    assert [t.value for t in restored] == [0.9, 0.8] and all(isinstance(t.params["ind.rsi_14"], float) for t in restored)
    more = [s.suggest(f"u{i}") for i in range(4)]  # no clash with the old boolean distributions
    assert [c["trial_number"] for c in more] == [2, 3, 4, 5]
    s.save(str(tmp_path / "state2.pkl"))
    assert json.loads((tmp_path / "state2.pkl").read_text())["format"] == "tunefactory-grouped-searcher/2"
    for i in range(4):
        s.on_trial_complete(f"u{i}", {"val_ratio_best": 0.5})
    now = s.studies["BTC-USDT/1d"].get_trials(deepcopy=False)
    assert [subset_from_params(spec, t.params) for t in now[2:]] == [c["indicators"] for c in more]

"""Spec distributions → Optuna and Ray Tune: one definition gives the same values in both.

Moved from ``tests/search_spaces/test_space.py`` with :func:`cluster.searcher.to_tune`
(the spec language imports no Ray).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from cluster.searcher import to_tune
from search_spaces.distributions import parse_dist

# ----------------------------------------------------------------------------- distributions
DISTS: list[tuple[dict[str, Any], type, dict[str, Any], list[Any] | None]] = [
    # raw, Optuna distribution class, its attributes, every value (discrete) or None (continuous)
    ({"type": "choice", "values": [16, 32, 64]}, optuna.distributions.CategoricalDistribution,
     {"choices": (16, 32, 64)}, [16, 32, 64]),
    ({"type": "grid", "values": ["mse", "mae"]}, optuna.distributions.CategoricalDistribution,
     {"choices": ("mse", "mae")}, ["mse", "mae"]),
    ({"type": "uniform", "low": 0.1, "high": 0.5}, optuna.distributions.FloatDistribution,
     {"low": 0.1, "high": 0.5, "log": False, "step": None}, None),
    ({"type": "quniform", "low": 0.0, "high": 0.3, "q": 0.1}, optuna.distributions.FloatDistribution,
     {"low": 0.0, "high": 0.3, "step": 0.1}, [0.0, 0.1, 0.2, 0.3]),
    ({"type": "loguniform", "low": 1e-4, "high": 1e-2}, optuna.distributions.FloatDistribution,
     {"low": 1e-4, "high": 1e-2, "log": True}, None),
    ({"type": "randint", "low": 1, "high": 3}, optuna.distributions.IntDistribution,
     {"low": 1, "high": 3, "step": 1}, [1, 2, 3]),
    ({"type": "qrandint", "low": 4, "high": 12, "q": 4}, optuna.distributions.IntDistribution,
     {"low": 4, "high": 12, "step": 4}, [4, 8, 12]),
    # low not a multiple of q: Optuna steps from low; Ray gets the same values as a choice.
    ({"type": "qrandint", "low": 2, "high": 10, "q": 4}, optuna.distributions.IntDistribution,
     {"low": 2, "high": 10, "step": 4}, [2, 6, 10]),
    ({"type": "quniform", "low": 0.05, "high": 0.25, "q": 0.1}, optuna.distributions.FloatDistribution,
     {"low": 0.05, "high": 0.25, "step": 0.1}, [0.05, 0.15, 0.25]),
]


@pytest.mark.parametrize(("raw", "cls", "attrs", "values"), DISTS, ids=[f"{d[0]['type']}-{i}" for i, d in enumerate(DISTS)])
def test_one_definition_maps_to_optuna_and_ray(raw: dict[str, Any], cls: type, attrs: dict[str, Any],
                                              values: list[Any] | None) -> None:
    d = parse_dist(raw)
    # Optuna, define-by-run.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(200):
        t = study.ask()
        drawn.append(d.suggest(t, "x"))
        study.tell(t, 0.0)
    dist = t.distributions["x"]
    assert isinstance(dist, cls)
    for k, v in attrs.items():
        got = getattr(dist, k)
        assert got == pytest.approx(v) if isinstance(v, float) else got == v, k
    # Ray Tune.
    dom = to_tune(d)
    if raw["type"] == "grid":
        assert dom == {"grid_search": raw["values"]}
        ray_drawn = list(raw["values"])
    else:
        ray_drawn = list(dom.sample(size=300, random_state=np.random.default_rng(0)))
    if values is None:
        lo, hi = raw["low"], raw["high"]
        assert all(lo <= v <= hi for v in drawn + ray_drawn)
        if raw["type"] == "loguniform":  # log-spaced: about half below the geometric mean
            mid = math.sqrt(lo * hi)
            assert 0.3 < np.mean([v < mid for v in ray_drawn]) < 0.7
            assert 0.3 < np.mean([v < mid for v in drawn]) < 0.7
    else:
        # Both libraries produce exactly the grid values, inclusive bounds included.
        assert sorted({round(v, 9) if isinstance(v, float) else v for v in drawn}) == sorted(values)
        assert sorted({round(float(v), 9) if isinstance(v, float) else v for v in ray_drawn}) == sorted(values)
        assert d.grid_values() == values
        assert d.size() == len(values)


def test_fixed_value_is_not_searched() -> None:
    d = parse_dist(32)
    assert d.fixed and to_tune(d) == 32 and d.size() == 1 and d.grid_values() == [32]
    study = optuna.create_study()
    t = study.ask()
    assert d.suggest(t, "x") == 32 and "x" not in t.params


# ----------------------------------------------------------------------------- state on resume (issue 14, item 1)
@pytest.mark.parametrize("algorithm", ["optuna-tpe", "random"])
def test_searcher_state_is_json_and_restores_the_studies(tmp_path: Path, tiny_spec_text: str,
                                                         algorithm: str) -> None:
    from cluster.searcher import GroupedSearcher
    from search_spaces.loader import load_spec

    raw = yaml.safe_load(tiny_spec_text)
    raw["search"].update(num_samples=8, algorithm=algorithm)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp_path / "s.yaml").spec
    a = GroupedSearcher(spec, metric="val_ratio_best", mode="min")
    configs = [a.suggest(f"t{i}") for i in range(4)]
    a.on_trial_complete("t0", {"val_ratio_best": 0.9})
    a.on_trial_complete("t1", error=True)
    a.on_trial_complete("t2", {"val_ratio_best": 0.8})
    a.save(str(tmp_path / "state.pkl"))
    state = json.loads((tmp_path / "state.pkl").read_text())  # JSON: reading it back runs no code
    assert state["format"].startswith("tunefactory-grouped-searcher/") and state["live"] == {"t3": ["BTC-USDT/1d", 3]}

    b = GroupedSearcher(spec, metric="val_ratio_best", mode="min")  # what tuner.pkl brings back
    b.restore(str(tmp_path / "state.pkl"))
    trials = b.studies["BTC-USDT/1d"].trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "RUNNING"]
    assert [t.value for t in trials] == [0.9, None, 0.8, None]
    assert [t.params for t in trials] == [t.params for t in a.studies["BTC-USDT/1d"].trials]
    assert b.issued == {"BTC-USDT/1d": 4}
    b.on_trial_complete("t3", {"val_ratio_best": 0.7})  # the trial in flight at the snapshot
    assert b.studies["BTC-USDT/1d"].trials[3].value == 0.7
    more = [b.suggest(f"u{i}") for i in range(4)]
    assert [c["trial_number"] for c in more] == [4, 5, 6, 7]
    assert b.suggest("u4") == "FINISHED"  # the group's budget of 8 is spent
    strip = ("seed", "trial_number")
    firsts = [{k: v for k, v in c.items() if k not in strip} for c in configs]
    assert not all({k: v for k, v in c.items() if k not in strip} in firsts for c in more)  # no replay


def test_max_concurrent_is_held_by_the_searcher_so_resumed_trials_reach_optuna(tmp_path: Path,
                                                                               tiny_spec_text: str) -> None:
    """Ray's ConcurrencyLimiter forgot, on resume, the trials in flight at the snapshot and
    dropped their completions; the searcher now limits concurrency itself (real limiter)."""
    from ray.tune.search import ConcurrencyLimiter

    from cluster.searcher import GroupedSearcher
    from search_spaces.loader import load_spec

    raw = yaml.safe_load(tiny_spec_text)
    raw["search"].update(num_samples=6, algorithm="optuna-tpe")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp_path / "s.yaml").spec
    a = ConcurrencyLimiter(GroupedSearcher(spec, metric="val_ratio_best", mode="min"), max_concurrent=2)
    assert isinstance(a.suggest("t0"), dict) and isinstance(a.suggest("t1"), dict)
    assert a.suggest("t2") is None  # two in flight: no third
    a.on_trial_complete("t0", {"val_ratio_best": 0.9})
    assert isinstance(a.suggest("t2"), dict)
    a.searcher.save(str(tmp_path / "state.pkl"))  # t1 and t2 in flight at the snapshot

    fresh = GroupedSearcher(spec, metric="val_ratio_best", mode="min")  # what resume brings back
    fresh.restore(str(tmp_path / "state.pkl"))
    b = ConcurrencyLimiter(fresh, max_concurrent=2)  # Tune wraps it again, with an empty live set
    assert b.suggest("u0") is None  # t1 and t2 still count
    b.on_trial_complete("t1", {"val_ratio_best": 0.7})
    b.on_trial_complete("t2", {"val_ratio_best": 0.8})
    study = fresh.studies["BTC-USDT/1d"]
    assert [t.value for t in study.trials] == [0.9, 0.7, 0.8]  # Optuna learnt both resumed trials
    assert isinstance(b.suggest("u0"), dict) and isinstance(b.suggest("u1"), dict) and b.suggest("u2") is None


@pytest.mark.parametrize("algorithm", ["optuna-tpe", "random"])
def test_balance_families_gives_every_family_its_turn_after_the_queued_points(tmp_path: Path, tiny_spec_text: str,
                                                                             algorithm: str) -> None:
    from cluster.searcher import GroupedSearcher
    from search_spaces.loader import load_spec

    raw = yaml.safe_load(tiny_spec_text)
    raw["model"]["families"]["lstm"] = {"units": 8}
    raw["search"].update(num_samples=10, algorithm=algorithm, n_startup_trials=2, balance_families=True,
                         points_to_evaluate=[{"family": "gru"}])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp_path / "s.yaml").spec
    s = GroupedSearcher(spec, metric="val_ratio_best", mode="min")
    fams = []
    for i in range(10):
        cfg = s.suggest(f"t{i}")
        assert isinstance(cfg, dict)
        fams.append(cfg["family"])
        s.on_trial_complete(f"t{i}", {"val_ratio_best": 0.5 if cfg["family"] == "mlp" else 1.0})
    # The queued point first (trial 0), then the families by trial number, although TPE left
    # alone would settle on mlp, the family that scored best.
    order = list(spec.model.families)
    assert len(order) == 3 and fams == ["gru"] + [order[n % 3] for n in range(1, 10)]
    assert [t.params["family"] for t in s.studies["BTC-USDT/1d"].trials] == fams  # Optuna records what ran

"""Spec distributions → Optuna and Ray Tune: one definition gives the same values in both.

Moved from ``tests/search_spaces/test_space.py`` with :func:`cluster.searcher.to_tune`
(the spec language imports no Ray).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest

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

"""From a validated spec to trial configs: Optuna define-by-run sampling, grid enumeration,
space size.

One definition serves every algorithm: ``optuna-tpe`` and ``random`` sample through the
same define-by-run function (conditional parameters exist only for the family drawn), and
``grid`` enumerates the same dimensions.

Indicator subsets: a pool of N members has 2^N subsets. Under TPE/random each non-fixed
member gets one boolean (``ind.<member>``), so TPE learns per-indicator usefulness; a
deterministic repair then adds or removes members (in an order seeded by the boolean
vector itself) until the size is within ``[min_size, max_size]``, and ``always`` members
are always in. The repaired subset is what the trial trains on and what reports show.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Iterator
from typing import Any

from search_spaces.distributions import Dist
from search_spaces.schema import Spec
from trainables.indicators import INDICATORS, PoolMember

TRAINING_KEYS = ("batch_size", "learning_rate", "weight_decay", "loss", "optimizer")


def trial_seed(base: int, group: str, number: int) -> int:
    """A stable 31-bit seed per (search seed, group, trial number)."""
    h = hashlib.sha256(f"{base}|{group}|{number}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def _repair(spec: Spec, chosen: list[str], bits_key: str) -> list[str]:
    f = spec.features
    always = list(f.always)
    keys = [m.key for m in f.pool]
    free = [k for k in keys if k not in always]
    picked = [k for k in free if k in chosen]
    rng = random.Random(bits_key)
    lo = max(f.min_size, 1) - len(always)
    hi = f.upper - len(always)
    if len(picked) > hi:
        rng.shuffle(picked)
        picked = picked[:hi]
    elif len(picked) < lo:
        rest = [k for k in free if k not in picked]
        rng.shuffle(rest)
        picked += rest[: lo - len(picked)]
    chosen_set = set(always) | set(picked)
    return [k for k in keys if k in chosen_set]  # pool order: stable column order


def _member(spec: Spec, key: str) -> PoolMember:
    return next(m for m in spec.features.pool if m.key == key)


def columns_for(spec: Spec, indicators: list[str], ind_params: dict[str, Any]) -> list[str]:
    """Feature columns of a subset given the searched indicator parameters."""
    cols = []
    for key in indicators:
        m = _member(spec, key)
        chosen = {p: ind_params[f"{key}.{p}"] for p in m.searched}
        cols.append(m.column_for(chosen) if m.searched else m.columns()[0])
    return cols


def _base_config(spec: Spec, group: str, seed: int) -> dict[str, Any]:
    asset, tf = group.split("/")
    t = spec.training
    return {
        "group": group, "asset": asset, "timeframe": tf, "seed": seed,
        "max_epochs": t.max_epochs, "patience": t.patience, "jit_compile": t.jit_compile,
        "steps_per_execution": t.steps_per_execution, "threads": max(1, int(spec.resources.cpus)),
    }


def suggest_config(spec: Spec, trial: Any, *, group: str, seed: int) -> dict[str, Any]:
    """Sample one trial config with an Optuna trial (define-by-run).

    Args:
        spec: validated spec.
        trial: ``optuna.Trial`` (from ``study.ask()``).
        group: ``ASSET/TF``.
        seed: the trial's training seed.

    Returns:
        The config dict the trainable consumes.
    """
    cfg = _base_config(spec, group, seed)
    fams = list(spec.model.families)
    family = trial.suggest_categorical("family", fams) if len(fams) > 1 else fams[0]
    cfg["family"] = family
    cfg["model"] = {k: d.suggest(trial, f"{family}.{k}") for k, d in spec.model.families[family].items()}
    cfg["lookback"] = int(spec.window.lookback.suggest(trial, "lookback"))
    for k in TRAINING_KEYS:
        cfg[k] = getattr(spec.training, k).suggest(trial, k)
    f = spec.features
    chosen = []
    bits = []
    for m in f.pool:
        if m.key in f.always:
            continue
        on = bool(trial.suggest_categorical(f"ind.{m.key}", [True, False]))
        bits.append("1" if on else "0")
        if on:
            chosen.append(m.key)
    indicators = _repair(spec, chosen, f"{spec.search.seed}|{''.join(bits)}")
    ind_params: dict[str, Any] = {}
    for key in indicators:
        m = _member(spec, key)
        for p in m.searched:
            vals = sorted({dict(v)[p] for v in m.variants})
            ind_params[f"{key}.{p}"] = trial.suggest_categorical(f"ind.{key}.{p}", vals)
    cfg["indicators"] = indicators
    cfg["indicator_params"] = ind_params
    cfg["columns"] = columns_for(spec, indicators, ind_params)
    trial.set_user_attr("indicators", indicators)
    return cfg


def _finite(d: Dist, where: str) -> list[Any]:
    vals = d.grid_values()
    if vals is None:
        raise ValueError(f"{where}: search.algorithm=grid needs a finite set of values; got {d.type} — use "
                         "choice, grid, randint, qrandint or quniform")
    return vals


def subsets(spec: Spec) -> Iterator[list[str]]:
    """Every indicator subset within the size bounds (for grid search), in pool order."""
    f = spec.features
    keys = [m.key for m in f.pool]
    free = [k for k in keys if k not in f.always]
    lo = max(f.min_size, 1) - len(f.always)
    for k in range(max(lo, 0), f.upper - len(f.always) + 1):
        for combo in itertools.combinations(free, k):
            s = set(f.always) | set(combo)
            yield [x for x in keys if x in s]


def n_subsets(spec: Spec) -> int:
    """How many indicator subsets the size bounds allow."""
    f = spec.features
    n_free = len(f.pool) - len(f.always)
    lo = max(max(f.min_size, 1) - len(f.always), 0)
    return sum(math.comb(n_free, k) for k in range(lo, f.upper - len(f.always) + 1))


def grid_configs(spec: Spec, *, group: str) -> list[dict[str, Any]]:
    """Enumerate the full grid of one group (every finite combination).

    Raises:
        ValueError: a dimension is continuous.
    """
    out = []
    train_vals = [_finite(getattr(spec.training, k), f"training.{k}") for k in TRAINING_KEYS]
    lookbacks = _finite(spec.window.lookback, "window.lookback")
    for family, space in spec.model.families.items():
        names = list(space)
        model_vals = [_finite(space[k], f"model.families.{family}.{k}") for k in names]
        for mv in itertools.product(*model_vals):
            for lb in lookbacks:
                for tv in itertools.product(*train_vals):
                    for sub in subsets(spec):
                        searched = [(f"{k}.{p}", sorted({dict(v)[p] for v in _member(spec, k).variants}))
                                    for k in sub for p in _member(spec, k).searched]
                        for combo in itertools.product(*[vals for _, vals in searched]):
                            ip = {n: v for (n, _), v in zip(searched, combo, strict=True)}
                            cfg = _base_config(spec, group, 0)
                            cfg.update({"family": family, "model": dict(zip(names, mv, strict=True)),
                                        "lookback": int(lb), **dict(zip(TRAINING_KEYS, tv, strict=True)),
                                        "indicators": sub, "indicator_params": ip,
                                        "columns": columns_for(spec, sub, ip)})
                            out.append(cfg)
    return out


def grid_size(spec: Spec) -> float:
    """Points in the full grid of one group (``inf`` if any dimension is continuous)."""
    size = 0.0
    per_sub = 0.0
    for sub in subsets(spec) if n_subsets(spec) <= 100_000 else []:
        n = 1
        for k in sub:
            m = _member(spec, k)
            n *= len(m.variants) if m.searched else 1
        per_sub += n
    if n_subsets(spec) > 100_000:
        per_sub = float(n_subsets(spec))
    common = spec.window.lookback.size() * math.prod(getattr(spec.training, k).size() for k in TRAINING_KEYS)
    for space in spec.model.families.values():
        size += math.prod(d.size() for d in space.values()) * common * per_sub
    return size


def trials_per_group(spec: Spec) -> int:
    """Trials each (asset, timeframe) gets."""
    if spec.search.algorithm == "grid":
        g = grid_size(spec)
        n = int(g) if math.isfinite(g) else 0
        return min(n, spec.search.num_samples) if spec.search.num_samples else n
    return int(spec.search.num_samples or 10)


def param_names(spec: Spec) -> set[str]:
    """Names of every Optuna parameter the define-by-run function can create."""
    names = {"family", "lookback", *TRAINING_KEYS}
    for fam, space in spec.model.families.items():
        names |= {f"{fam}.{k}" for k in space}
    for m in spec.features.pool:
        names.add(f"ind.{m.key}")
        names |= {f"ind.{m.key}.{p}" for p in m.searched}
    return names


def check_space(spec: Spec) -> list[str]:
    """Cross-checks that need the whole space; returns ``key: rule; got VALUE`` strings."""
    problems = []
    if spec.search.algorithm == "grid":
        try:
            for family, space in spec.model.families.items():
                for k, d in space.items():
                    _finite(d, f"model.families.{family}.{k}")
            _finite(spec.window.lookback, "window.lookback")
            for k in TRAINING_KEYS:
                _finite(getattr(spec.training, k), f"training.{k}")
        except ValueError as e:
            problems.append(str(e))
    allowed = param_names(spec)
    for i, point in enumerate(spec.search.points_to_evaluate):
        for k in point:
            if k not in allowed:
                import difflib

                near = difflib.get_close_matches(k, sorted(allowed), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                problems.append(f"search.points_to_evaluate[{i}]: unknown parameter {k!r}{hint}")
    for m in spec.features.pool:
        assert m.indicator in INDICATORS
    return problems


def asha_epochs(max_epochs: int, grace: int, rf: float) -> float:
    """Expected epochs per trial under ASHA if every rung keeps 1/rf of the trials."""
    rungs = []
    r = float(grace)
    while r < max_epochs:
        rungs.append(r)
        r *= rf
    total, prev, alive = 0.0, 0.0, 1.0
    for rung in [*rungs, float(max_epochs)]:
        total += (rung - prev) * alive
        prev, alive = rung, alive / rf
    return total

"""From a validated spec to trial configs: Optuna define-by-run sampling, grid enumeration,
space size.

One definition serves every algorithm: ``optuna-tpe`` and ``random`` sample through the
same define-by-run function (conditional parameters exist only for the family drawn), and
``grid`` enumerates the same dimensions (its size is counted by
:func:`search_spaces.schema.grid_size`, which the schema also uses to refuse huge grids).

Indicator subsets: a pool of N members has 2^N subsets. Under TPE/random each non-fixed
member gets one boolean (``ind.<member>``), so TPE learns per-indicator usefulness; a
deterministic repair then adds or removes members (in an order seeded by the boolean
vector itself) until the size is within ``[min_size, max_size]``, and ``always`` members
are always in. The repaired subset is what the trial trains on and what reports show.
Under ``grid`` every subset within the bounds is enumerated (keep such pools small).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Iterator
from typing import Any

from search_spaces.distributions import Dist
from search_spaces.schema import Spec, grid_size
from trainables.features.indicators import PoolMember
from trainables.trial.config import TRAINING_KEYS

#: Keys every trial config carries (what ``trainables.trial.fit.fit_trial`` reads).
CONFIG_KEYS = ("group", "asset", "timeframe", "seed", "max_epochs", "jit_compile", "steps_per_execution",
               "threads", "family", "model", "lookback", *TRAINING_KEYS, "indicators", "indicator_params",
               "columns")


def trial_seed(base: int, group: str, number: int) -> int:
    """A stable 31-bit seed per (search seed, group, trial number)."""
    h = hashlib.sha256(f"{base}|{group}|{number}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def repair(spec: Spec, chosen: list[str], bits_key: str) -> list[str]:
    """Bring a raw subset within the size bounds, always-on members included, in pool order.

    Members are dropped or added in an order seeded by ``bits_key``, so the same raw subset
    always repairs to the same subset.
    """
    f = spec.features
    always = list(f.always)
    keys = [m.key for m in f.pool]
    free = [k for k in keys if k not in always]
    picked = [k for k in free if k in chosen]
    rng = random.Random(bits_key)
    lo = f.lower - len(always)
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


def _variant_values(m: PoolMember, p: str) -> list[Any]:
    return sorted({dict(v)[p] for v in m.variants})


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
        "max_epochs": spec.max_t, "jit_compile": t.jit_compile,
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
        The config dict the trainable consumes (keys: :data:`CONFIG_KEYS`).
    """
    cfg = _base_config(spec, group, seed)
    fams = list(spec.model.families)
    family = trial.suggest_categorical("family", fams) if len(fams) > 1 else fams[0]
    cfg["family"] = family
    cfg["model"] = {k: d.suggest(trial, f"{family}.{k}") for k, d in spec.model.families[family].items()}
    cfg["lookback"] = int(spec.window.lookback.suggest(trial, "lookback"))
    for k in TRAINING_KEYS:
        cfg[k] = getattr(spec.training, k).suggest(trial, k)
    cfg["batch_size"], cfg["patience"] = int(cfg["batch_size"]), int(cfg["patience"])
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
    indicators = repair(spec, chosen, f"{spec.search.seed}|{''.join(bits)}")
    ind_params: dict[str, Any] = {}
    for key in indicators:
        m = _member(spec, key)
        for p in m.searched:
            ind_params[f"{key}.{p}"] = trial.suggest_categorical(f"ind.{key}.{p}", _variant_values(m, p))
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
    lo = f.lower - len(f.always)
    for k in range(max(lo, 0), f.upper - len(f.always) + 1):
        for combo in itertools.combinations(free, k):
            s = set(f.always) | set(combo)
            yield [x for x in keys if x in s]


def n_subsets(spec: Spec) -> int:
    """How many indicator subsets the size bounds allow."""
    f = spec.features
    n_free = len(f.pool) - len(f.always)
    lo = max(f.lower - len(f.always), 0)
    return sum(math.comb(n_free, k) for k in range(lo, f.upper - len(f.always) + 1))


def _grid_points(spec: Spec) -> Iterator[tuple[Any, ...]]:
    """The grid as raw tuples (cheap to iterate); :func:`grid_configs` turns them into configs."""
    train_vals = [_finite(getattr(spec.training, k), f"training.{k}") for k in TRAINING_KEYS]
    lookbacks = _finite(spec.window.lookback, "window.lookback")
    subs = []
    for sub in subsets(spec):
        searched = [(f"{k}.{p}", _variant_values(_member(spec, k), p))
                    for k in sub for p in _member(spec, k).searched]
        subs.append((sub, searched))
    for family, space in spec.model.families.items():
        names = list(space)
        model_vals = [_finite(space[k], f"model.families.{family}.{k}") for k in names]
        for mv in itertools.product(*model_vals):
            for lb in lookbacks:
                for tv in itertools.product(*train_vals):
                    for sub, searched in subs:
                        for combo in itertools.product(*[vals for _, vals in searched]):
                            yield family, names, mv, lb, tv, sub, searched, combo


def grid_configs(spec: Spec, *, group: str, limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Enumerate the grid of one group (every finite combination), or a seeded sample of it.

    Args:
        spec: validated spec (``search.algorithm: grid`` guarantees finite dimensions).
        group: ``ASSET/TF``.
        limit: when given and smaller than the grid, return this many distinct points
            chosen with ``random.Random(seed)`` (without building the others).
        seed: sampling seed for ``limit``.

    Raises:
        ValueError: a dimension is continuous.
    """
    keep: set[int] | None = None
    if limit is not None:
        size = grid_size(spec)
        if math.isfinite(size) and limit < size:
            keep = set(random.Random(seed).sample(range(int(size)), limit))
    out = []
    for i, (family, names, mv, lb, tv, sub, searched, combo) in enumerate(_grid_points(spec)):
        if keep is not None and i not in keep:
            continue
        ip = {n: v for (n, _), v in zip(searched, combo, strict=True)}
        cfg = _base_config(spec, group, 0)
        cfg.update({"family": family, "model": dict(zip(names, mv, strict=True)), "lookback": int(lb),
                    **dict(zip(TRAINING_KEYS, tv, strict=True)), "indicators": list(sub),
                    "indicator_params": ip, "columns": columns_for(spec, sub, ip)})
        cfg["batch_size"], cfg["patience"] = int(cfg["batch_size"]), int(cfg["patience"])
        out.append(cfg)
    return out


def trials_per_group(spec: Spec) -> int:
    """Trials each (asset, timeframe) gets."""
    if spec.search.algorithm == "grid":
        g = grid_size(spec)
        n = int(g) if math.isfinite(g) else 0
        return min(n, spec.search.num_samples) if spec.search.num_samples else n
    return int(spec.search.num_samples or 10)


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


def epochs_per_trial(spec: Spec) -> float:
    """Expected epochs per trial: ``max_t`` without a scheduler, the ASHA estimate with one."""
    if spec.scheduler.kind == "asha":
        return asha_epochs(spec.max_t, spec.scheduler.grace_period, spec.scheduler.reduction_factor)
    return float(spec.max_t)

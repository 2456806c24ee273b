"""From a validated spec to trial configs: Optuna define-by-run sampling, grid enumeration,
space size.

One definition serves every algorithm: ``optuna-tpe`` and ``random`` sample through the
same define-by-run function (conditional parameters exist only for the family drawn), and
``grid`` enumerates the same dimensions (its size is counted by
:func:`search_spaces.schema.grid_size`, which the schema also uses to refuse huge grids).

Indicator subsets under TPE/random. A pool of N members has 2^N subsets; ``always``
members are in every one, the other (free) members are chosen by two kinds of parameter:

* ``ind.size``: the subset size, an integer in ``[min_size, max_size]`` (``always``
  members counted; absent when the bounds allow one size only);
* ``ind.<member>``: one priority in ``[0, 1]`` per free member.

The subset is ``always`` plus the ``ind.size - len(always)`` free members of highest
priority (ties, which only enqueued points can make, go to pool order). Nothing repairs
the subset afterwards: :func:`subset_from_params` decodes exactly the trained subset from
the parameters Optuna records, so TPE, fANOVA and every report read what trained.

Why this and not one boolean per member plus a repair (the earlier design) or booleans
decided in pool order with forced members: with booleans, Optuna's random sampler draws
sizes Binomial(N, 1/2), so sizes bunch around N/2 and the bounds cut that bell off (the
factory preset never drew fewer than 6 of its allowed 2..12); the repair then changed the
subset behind Optuna's back (130 of 300 factory configs). Deciding booleans in pool order
and forcing the last ones makes late members more likely than early ones at small sizes.
Here the random sampler draws the size uniformly and N i.i.d. uniform priorities, whose
top k is a uniformly random k-subset: every size is equally likely, and at each size every
member is. TPE models the size directly ("how many indicators") and each member's priority
(a member that helps shows up with high priority among the good trials, so TPE proposes it
high), with every member treated alike rather than by its position in the pool. Recording
the repaired booleans instead (``add_trial`` at tell time) would keep the sizes bunched
and leave the trials in flight, which ``constant_liar`` reads, with the unrepaired values.

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


SIZE_PARAM = "ind.size"


def _varies(spec: Spec) -> tuple[bool, bool]:
    """Whether a trial samples the size, and whether it samples member priorities."""
    f = spec.features
    lo, hi = f.size_range()
    n_always, n_free = len(set(f.always)), len(f.free)
    # Priorities decide nothing when every free member is out (size = always) or in.
    return lo < hi, lo < hi or 0 < lo - n_always < n_free


def subset_from_params(spec: Spec, params: dict[str, Any]) -> list[str]:
    """The indicator subset a trial's Optuna parameters describe, in pool order.

    ``always`` members plus the ``ind.size - len(always)`` free members with the highest
    ``ind.<member>`` priority (ties to pool order). The inverse of
    :func:`subset_params` up to the priorities' exact values.

    Raises:
        ValueError: ``ind.size`` outside the spec's size range.
    """
    f = spec.features
    lo, hi = f.size_range()
    size = int(params.get(SIZE_PARAM, lo))
    if not lo <= size <= hi:
        raise ValueError(f"{SIZE_PARAM}={size} is outside the subset sizes {lo}..{hi}")
    keys = [m.key for m in f.pool]
    free = f.free
    ranked = sorted(range(len(free)), key=lambda i: (-float(params.get(f"ind.{free[i]}", 0.0)), i))
    chosen = set(f.always) | {free[i] for i in ranked[: size - len(set(f.always))]}
    return [k for k in keys if k in chosen]  # pool order: stable column order


def subset_params(spec: Spec, indicators: list[str]) -> dict[str, Any]:
    """Optuna parameters that decode to ``indicators`` (priority 1 in, 0 out; size when searched).

    Used for points to evaluate and to carry trials recorded under the earlier boolean
    parametrisation into a resumed study.
    """
    f = spec.features
    size_searched, prio_searched = _varies(spec)
    chosen = set(indicators) | set(f.always)
    out: dict[str, Any] = {}
    if size_searched:
        out[SIZE_PARAM] = len(chosen)
    if prio_searched:
        out.update({f"ind.{k}": 1.0 if k in chosen else 0.0 for k in f.free})
    return out


def point_params(spec: Spec, point: dict[str, Any]) -> dict[str, Any]:
    """A ``search.points_to_evaluate`` entry as Optuna parameters of this parametrisation.

    A point says ``ind.<member>: true/false`` (validated by the schema): switched-on members
    get priority 1, switched-off ones 0, so they rank first and last. Without ``ind.size``
    the size is the smallest the bounds allow that holds every switched-on member, so the
    unlisted members are added only as far as ``min_size`` requires.
    """
    f = spec.features
    size_searched, prio_searched = _varies(spec)
    switches = {k[4:]: v for k, v in point.items() if k.startswith("ind.") and k[4:] in f.free}
    out = {k: v for k, v in point.items() if not (k.startswith("ind.") and k[4:] in f.free)}
    if prio_searched:
        out.update({f"ind.{m}": 1.0 if on else 0.0 for m, on in switches.items()})
    if size_searched and SIZE_PARAM not in out:
        lo, _ = f.size_range()
        out[SIZE_PARAM] = max(lo, len(set(f.always)) + sum(1 for on in switches.values() if on))
    return out


def suggest_subset(spec: Spec, trial: Any) -> list[str]:
    """Sample ``ind.size`` and the member priorities with an Optuna trial; the subset they give."""
    f = spec.features
    size_searched, prio_searched = _varies(spec)
    params: dict[str, Any] = {}
    if size_searched:
        lo, hi = f.size_range()
        params[SIZE_PARAM] = trial.suggest_int(SIZE_PARAM, lo, hi)
    if prio_searched:
        for k in f.free:
            params[f"ind.{k}"] = trial.suggest_float(f"ind.{k}", 0.0, 1.0)
    return subset_from_params(spec, params)


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
    indicators = suggest_subset(spec, trial)
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

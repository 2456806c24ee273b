"""The ``features`` section: the indicator pool and the sizes of the subsets a trial may use.

Pool items are parsed against the indicator registry (names, parameters and their types),
and a list of parameter values expands into several pool members, so every later stage
(sampling, grid enumeration, column names) sees a flat list of
:class:`~trainables.features.indicators.PoolMember`.
"""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import Field, field_validator, model_validator

from search_spaces.distributions import DistError, check_dist, did_you_mean, fmt_value
from search_spaces.schema._base import Errors, Int, Section
from trainables.features.indicators import INDICATORS, PoolMember, make_member


def _pool_item(i: int, item: Any, err: Errors) -> list[PoolMember]:
    params: Any
    if isinstance(item, str):
        name, params = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        name, params = next(iter(item.items()))
        params = {} if params is None else params
        if not isinstance(params, dict):
            err.add((i, str(name)), "indicator parameters must be a mapping like {period: 14}", params)
            return []
    else:
        err.add((i,), "must be an indicator name or {name: {param: value}}", item)
        return []
    if not isinstance(name, str) or name not in INDICATORS:
        err.add((i,), f"unknown indicator{did_you_mean(name, INDICATORS)}; allowed: {', '.join(sorted(INDICATORS))}",
                name)
        return []
    ind = INDICATORS[name]
    fixed: dict[str, Any] = {}
    expanded: dict[str, list[Any]] = {}
    searched: dict[str, list[Any]] = {}
    bad = False
    for k, pv in params.items():
        loc = (i, name, str(k))
        if k not in ind.defaults:
            allowed = ", ".join(ind.defaults) or "none"
            err.add(loc, f"unknown parameter{did_you_mean(k, ind.defaults)}; {name} takes {allowed}", pv)
            bad = True
            continue
        kind = type(ind.defaults[k])
        lo = 1 if kind is int else 1e-9
        try:
            if isinstance(pv, list):
                if not pv:
                    raise DistError("a list of values must not be empty; got []")
                expanded[k] = [check_dist(x, kind=kind, low=lo).values[0] for x in pv]
                if len(set(expanded[k])) != len(expanded[k]):
                    raise DistError(f"values must not repeat; got {fmt_value(pv)}")
            elif isinstance(pv, dict):
                d = check_dist(pv, kind=kind, low=lo)
                if d.type not in ("choice", "grid"):
                    raise DistError(f"indicator parameters are precomputed, so only choice/grid (or a list of "
                                    f"values) are allowed; got {d.type}")
                searched[k] = list(d.values)
            else:
                fixed[k] = check_dist(pv, kind=kind, low=lo).values[0]
        except DistError as e:
            err.add(loc, str(e))
            bad = True
    if bad:
        return []
    members = []
    for combo in itertools.product(*[[(k, x) for x in xs] for k, xs in expanded.items()]):
        members.append(make_member(name, {**fixed, **dict(combo)}, searched=searched))
    return members


class FeaturesSection(Section):
    """The indicator pool and how subsets of it are searched.

    ``pool`` items: ``rsi`` (defaults), ``{rsi: {period: 21}}`` (one fixed variant),
    ``{rsi: {period: [7, 14, 21]}}`` (three pool members ``rsi_7``, ``rsi_14``, ``rsi_21``),
    or ``{rsi: {period: {type: choice, values: [7, 14, 21]}}}`` (one member ``rsi`` whose
    period is a hyperparameter of the trial). Every trial uses a subset of the pool of
    ``min_size``..``max_size`` members that includes every ``always`` member.
    """

    pool: list[Any] = Field(min_length=1)
    min_size: Int = Field(default=1, ge=1)
    max_size: Int | None = Field(default=None, ge=1)
    always: list[str] = Field(default_factory=list)

    @field_validator("pool")
    @classmethod
    def _pool(cls, v: list[Any]) -> list[PoolMember]:
        err = Errors()
        members: list[PoolMember] = []
        where: dict[str, int] = {}
        for i, item in enumerate(v):
            for m in _pool_item(i, item, err):
                if m.key in where:
                    err.add((i,), f"pool member {m.key!r} is already listed at features.pool[{where[m.key]}]; "
                            "list each member once", item)
                    continue
                where[m.key] = i
                members.append(m)
        err.raise_if_any()
        return members

    @model_validator(mode="after")
    def _bounds(self) -> FeaturesSection:
        err = Errors()
        n = len(self.pool)
        keys = [m.key for m in self.pool]
        for i, a in enumerate(self.always):
            if a not in keys:
                err.add(("always", i), f"not in the pool{did_you_mean(a, keys)}; pool members: {', '.join(keys)}", a)
            elif a in self.always[:i]:
                err.add(("always", i), "is listed twice", a)
        if self.max_size is not None and self.max_size > n:
            err.add("max_size", f"subset size bound is larger than the pool ({n} members)", self.max_size)
        hi = min(self.max_size if self.max_size is not None else n, n)
        if self.min_size > n:
            err.add("min_size", f"subset size bound is larger than the pool ({n} members)", self.min_size)
        elif self.min_size > hi:
            err.add("min_size", f"must be <= features.max_size ({hi})", self.min_size)
        if len(set(self.always)) > hi:
            err.add("always", f"lists {len(set(self.always))} members but subsets hold at most {hi}", self.always)
        err.raise_if_any()
        return self

    @property
    def upper(self) -> int:
        return self.max_size if self.max_size is not None else len(self.pool)

    @property
    def lower(self) -> int:
        return max(self.min_size, 1)

    @property
    def free(self) -> list[str]:
        """Pool members in pool order that are not ``always`` in: the ones a search chooses."""
        return [m.key for m in self.pool if m.key not in self.always]

    def size_range(self) -> tuple[int, int]:
        """Smallest and largest subset size a trial can get, ``always`` members included."""
        n_always = len(set(self.always))
        return max(self.lower, n_always), min(self.upper, len(self.pool))

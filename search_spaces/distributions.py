"""Search distributions: one definition → Ray Tune space, Optuna suggestion, grid values.

In a spec, a searchable value is either a plain scalar (fixed) or a mapping with ``type``::

    learning_rate: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
    units: {type: choice, values: [16, 32, 64]}
    layers: {type: randint, low: 1, high: 3}       # inclusive bounds, as Optuna
    dropout: {type: quniform, low: 0.0, high: 0.5, q: 0.1}
    batch_size: {type: grid, values: [32, 64]}      # enumerated under search.algorithm=grid

Bounds are **inclusive** for the integer types (``randint`` 1..3 can give 3); Ray's
exclusive upper bound is adjusted in :meth:`Dist.to_tune`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DIST_TYPES: tuple[str, ...] = ("choice", "grid", "uniform", "quniform", "loguniform", "randint", "qrandint")


class DistError(ValueError):
    """A malformed distribution; the message is the rule and the bad value."""


@dataclass(frozen=True)
class Dist:
    """A searchable value.

    Attributes:
        type: one of :data:`DIST_TYPES`, or ``fixed``.
        values: for ``choice``/``grid``/``fixed``.
        low, high, q: for the numeric types.
    """

    type: str
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    q: float | None = None

    @property
    def fixed(self) -> bool:
        return self.type == "fixed"

    @property
    def categorical(self) -> bool:
        return self.type in ("choice", "grid", "fixed")

    def grid_values(self) -> list[Any] | None:
        """All values when the set is finite (choice, grid, fixed, q-stepped, randint), else None."""
        if self.categorical:
            return list(self.values)
        if self.type in ("randint", "qrandint"):
            step = int(self.q or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.type == "quniform" and self.q:
            n = int(math.floor((self.high - self.low) / self.q + 1e-9))
            return [round(self.low + i * self.q, 12) for i in range(n + 1)]
        return None

    def size(self) -> float:
        """Number of distinct values (``inf`` for continuous)."""
        g = self.grid_values()
        return float(len(g)) if g is not None else math.inf

    def suggest(self, trial: Any, name: str) -> Any:
        """Sample with an Optuna trial (define-by-run), under ``name``."""
        if self.type == "fixed":
            return self.values[0]
        if self.type in ("choice", "grid"):
            return trial.suggest_categorical(name, list(self.values))
        if self.type == "uniform":
            return trial.suggest_float(name, self.low, self.high)
        if self.type == "quniform":
            return trial.suggest_float(name, self.low, self.high, step=self.q)
        if self.type == "loguniform":
            return trial.suggest_float(name, self.low, self.high, log=True)
        if self.type == "randint":
            return trial.suggest_int(name, int(self.low), int(self.high))
        if self.type == "qrandint":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.q or 1))
        raise DistError(f"unknown distribution type {self.type!r}")

    def to_tune(self) -> Any:
        """The equivalent Ray Tune domain (for users driving Ray's own searchers)."""
        from ray import tune

        if self.type == "fixed":
            return self.values[0]
        if self.type == "choice":
            return tune.choice(list(self.values))
        if self.type == "grid":
            return tune.grid_search(list(self.values))
        if self.type == "uniform":
            return tune.uniform(self.low, self.high)
        if self.type == "quniform":
            return tune.quniform(self.low, self.high, self.q)
        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.type == "randint":
            return tune.randint(int(self.low), int(self.high) + 1)  # Ray's upper bound is exclusive
        if self.type == "qrandint":
            return tune.qrandint(int(self.low), int(self.high), int(self.q or 1))  # inclusive in Ray
        raise DistError(f"unknown distribution type {self.type!r}")


_KEYS = {
    "choice": {"values"}, "grid": {"values"}, "uniform": {"low", "high"}, "quniform": {"low", "high", "q"},
    "loguniform": {"low", "high"}, "randint": {"low", "high"}, "qrandint": {"low", "high", "q"},
}


def _num(v: Any, key: str, integer: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DistError(f"{key} must be a number; got {v!r}")
    if integer and float(v) != int(v):
        raise DistError(f"{key} must be a whole number; got {v!r}")
    return float(v)


def parse_dist(raw: Any) -> Dist:
    """Parse a spec value into a :class:`Dist`.

    Raises:
        DistError: with the rule and the bad value (the caller prefixes the key path).
    """
    if not isinstance(raw, dict):
        return Dist("fixed", (raw,))
    if "type" not in raw:
        raise DistError(f"a distribution needs 'type' (one of {', '.join(DIST_TYPES)}); got keys {sorted(raw)}")
    t = raw["type"]
    if t not in _KEYS:
        import difflib

        near = difflib.get_close_matches(str(t), DIST_TYPES, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise DistError(f"unknown distribution type {t!r}{hint}; allowed: {', '.join(DIST_TYPES)}")
    need = _KEYS[t]
    extra = set(raw) - need - {"type"}
    if extra:
        raise DistError(f"{t} takes {', '.join(sorted(need))}; unknown key {sorted(extra)[0]!r}")
    missing = need - set(raw) - ({"q"} if t == "qrandint" else set())
    if missing:
        raise DistError(f"{t} needs {', '.join(sorted(need))}; missing {', '.join(sorted(missing))}")
    if t in ("choice", "grid"):
        vals = raw["values"]
        if not isinstance(vals, list):
            raise DistError(f"{t}.values must be a list; got {vals!r}")
        if not vals:
            raise DistError(f"{t}.values must not be empty; got []")
        return Dist(t, tuple(vals))
    integer = t in ("randint", "qrandint")
    low, high = _num(raw["low"], "low", integer), _num(raw["high"], "high", integer)
    q = _num(raw["q"], "q", integer) if "q" in raw else None
    if low > high or (low == high and not integer):
        raise DistError(f"low ({raw['low']}) must be < high ({raw['high']})")
    if t == "loguniform" and low <= 0:
        raise DistError(f"loguniform low must be > 0; got {raw['low']}")
    if q is not None and q <= 0:
        raise DistError(f"q must be > 0; got {raw['q']}")
    return Dist(t, (), low, high, q)

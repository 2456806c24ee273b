"""Search distributions: one definition → Optuna suggestion, grid values (and a Ray Tune domain).

In a spec, a searchable value is either a plain scalar (fixed) or a mapping with ``type``::

    learning_rate: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
    units: {type: choice, values: [16, 32, 64]}
    layers: {type: randint, low: 1, high: 3}       # inclusive bounds, as Optuna
    dropout: {type: quniform, low: 0.0, high: 0.5, q: 0.1}
    batch_size: {type: grid, values: [32, 64]}      # enumerated under search.algorithm=grid

Bounds are **inclusive** for the integer types (``randint`` 1..3 can give 3), and
``quniform``/``qrandint`` step from ``low``, as Optuna does. The equivalent Ray Tune domain
is built by :func:`cluster.searcher.to_tune` (beside the only code that imports Ray), which
adjusts Ray's exclusive upper bound and, where Ray's rounding to multiples of ``q`` would
give other values, uses a ``choice`` of the exact values. This module imports no Ray, so
validating a spec stays fast.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from dataclasses import dataclass
from typing import Any

DIST_TYPES: tuple[str, ...] = ("choice", "grid", "uniform", "quniform", "loguniform", "randint", "qrandint")
#: Types that only ever produce whole numbers (allowed for integer parameters).
INT_TYPES: tuple[str, ...] = ("fixed", "choice", "grid", "randint", "qrandint")
#: Types whose values are listed (allowed for string and boolean parameters).
CATEGORICAL_TYPES: tuple[str, ...] = ("fixed", "choice", "grid")


class DistError(ValueError):
    """A malformed distribution; the message is the rule and the bad value."""


def fmt_value(v: Any, limit: int = 80) -> str:
    """A spec value as a short YAML-like string for error messages (``got VALUE``).

    Stops building the string once it is longer than ``limit`` (so a huge or aliased
    structure costs nothing), and ends it with ``...``.
    """
    parts: list[str] = []
    size = 0

    def put(s: str) -> bool:
        nonlocal size
        parts.append(s)
        size += len(s)
        return size <= limit

    def f(x: Any, depth: int = 0) -> bool:
        if depth > 20:
            return put("...")
        if isinstance(x, bool):
            return put("true" if x else "false")
        if x is None:
            return put("null")
        if isinstance(x, str):
            return put(repr(x[: limit + 2]) if len(x) > limit else repr(x))
        if isinstance(x, (dt.date, dt.datetime)):
            return put(x.isoformat())
        if isinstance(x, float):
            return put(repr(x))
        if isinstance(x, int):
            return put(str(x) if x.bit_length() < 256 else f"<a {int(x.bit_length() * 0.30103) + 1}-digit number>")
        if isinstance(x, dict):
            if not put("{"):
                return False
            for i, (k, val) in enumerate(x.items()):
                if (i and not put(", ")) or not put(f"{k}: ") or not f(val, depth + 1):
                    return False
            return put("}")
        if isinstance(x, (list, tuple)):
            if not put("["):
                return False
            for i, val in enumerate(x):
                if (i and not put(", ")) or not f(val, depth + 1):
                    return False
            return put("]")
        return put(str(x)[: limit + 1])

    f(v)
    s = "".join(parts)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def did_you_mean(word: Any, options: Any) -> str:
    """`` (did you mean 'x'?)`` when ``word`` is close to one of ``options``, else ``''``."""
    opts = [str(o) for o in options]
    w = str(word)
    # A word that starts an option (``log_return`` → ``log_return_1``) means the first such option.
    near = [o for o in opts if w and o.startswith(w) and o != w][:1] or difflib.get_close_matches(w, opts, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str))


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
        return self.type in CATEGORICAL_TYPES

    def size(self) -> float:
        """Number of distinct values (``inf`` for continuous), computed without enumerating."""
        if self.categorical:
            return float(len(self.values))
        if self.type in ("randint", "qrandint"):
            step = int(self.q or 1)
            return float((int(self.high) - int(self.low)) // step + 1)
        if self.type == "quniform" and self.q:
            return float(math.floor((self.high - self.low) / self.q + 1e-9) + 1)
        return math.inf

    def grid_values(self, limit: int = 1_000_000) -> list[Any] | None:
        """All values when the set is finite and at most ``limit`` long, else None."""
        if self.size() > limit:
            return None
        if self.categorical:
            return list(self.values)
        if self.type in ("randint", "qrandint"):
            step = int(self.q or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.type == "quniform" and self.q:
            n = int(self.size())
            return [round(self.low + i * self.q, 12) for i in range(n)]
        return None

    def bounds(self) -> tuple[Any, Any]:
        """Smallest and largest value (numeric types) or first and last listed value."""
        if self.categorical:
            try:
                return min(self.values), max(self.values)
            except TypeError:
                return self.values[0], self.values[-1]
        if self.type in ("randint", "qrandint"):
            vals_hi = int(self.low) + (int(self.high) - int(self.low)) // int(self.q or 1) * int(self.q or 1)
            return int(self.low), vals_hi
        return self.low, self.high

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this distribution can produce (for points_to_evaluate)."""
        if self.categorical:
            def same(a: Any, b: Any) -> bool:
                num = (isinstance(a, (int, float)) and not isinstance(a, bool)
                       and isinstance(b, (int, float)) and not isinstance(b, bool))
                return (num or type(a) is type(b)) and a == b

            return any(same(value, v) for v in self.values)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.type in ("randint", "qrandint"):
            return float(value) == int(value) and (int(value) - int(self.low)) % int(self.q or 1) == 0
        if self.type == "quniform" and self.q:
            k = (value - self.low) / self.q
            return abs(k - round(k)) < 1e-6
        return True

    def describe(self) -> str:
        """Short human form: ``32``, ``choice[16, 32]``, ``loguniform(0.0003, 0.003)``."""
        if self.fixed:
            return fmt_value(self.values[0])
        if self.categorical:
            return f"{self.type}{fmt_value(list(self.values))}"
        q = f", q={self.q:g}" if self.q else ""
        return f"{self.type}({self.low:g}, {self.high:g}{q})"

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


_KEYS = {
    "choice": {"values"}, "grid": {"values"}, "uniform": {"low", "high"}, "quniform": {"low", "high", "q"},
    "loguniform": {"low", "high"}, "randint": {"low", "high"}, "qrandint": {"low", "high", "q"},
}


def _num(v: Any, key: str, integer: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DistError(f"{key} must be a number; got {fmt_value(v)}")
    if not math.isfinite(v):
        raise DistError(f"{key} must be a finite number; got {fmt_value(v)}")
    if integer and float(v) != int(v):
        raise DistError(f"{key} must be a whole number; got {fmt_value(v)}")
    return float(v)


def parse_dist(raw: Any) -> Dist:
    """Parse a spec value into a :class:`Dist`.

    Raises:
        DistError: with the rule and the bad value (the caller prefixes the key path).
    """
    if not isinstance(raw, dict):
        return Dist("fixed", (raw,))
    if "type" not in raw:
        raise DistError(f"a distribution needs 'type' (one of {', '.join(DIST_TYPES)}); "
                        f"got keys {', '.join(sorted(map(str, raw))) or 'none'}")
    t = raw["type"]
    if not isinstance(t, str) or t not in _KEYS:
        hint = did_you_mean(t, DIST_TYPES) if isinstance(t, str) else ""
        raise DistError(f"unknown distribution type{hint}; allowed: {', '.join(DIST_TYPES)}; "
                        f"got {fmt_value(t)}")
    need = _KEYS[t]
    extra = sorted(map(str, set(raw) - need - {"type"}))
    if extra:
        raise DistError(f"{t} takes {', '.join(sorted(need))}; unknown key {extra[0]!r}"
                        f"{did_you_mean(extra[0], need)}; got {fmt_value(raw)}")
    missing = need - set(raw) - ({"q"} if t == "qrandint" else set())
    if missing:
        raise DistError(f"{t} needs {', '.join(sorted(need))}; missing {', '.join(sorted(missing))}; "
                        f"got {fmt_value(raw)}")
    if t in ("choice", "grid"):
        vals = raw["values"]
        if not isinstance(vals, list):
            raise DistError(f"{t}.values must be a list; got {fmt_value(vals)}")
        if not vals:
            raise DistError(f"{t}.values must not be empty; got []")
        for v in vals:
            if not _is_scalar(v) or (isinstance(v, float) and not math.isfinite(v)):
                raise DistError(f"{t}.values must be numbers, strings or booleans; got {fmt_value(v)}")
        seen: list[Any] = []
        for v in vals:
            if any(type(v) is type(s) and v == s for s in seen):
                raise DistError(f"{t}.values must not repeat a value; got {fmt_value(vals)}")
            seen.append(v)
        return Dist(t, tuple(vals))
    integer = t in ("randint", "qrandint")
    low, high = _num(raw["low"], "low", integer), _num(raw["high"], "high", integer)
    q = _num(raw["q"], "q", integer) if "q" in raw else None
    if low > high or (low == high and not integer):
        raise DistError(f"low must be < high; got low={fmt_value(raw['low'])}, high={fmt_value(raw['high'])}")
    if t == "loguniform" and low <= 0:
        raise DistError(f"loguniform low must be > 0; got {fmt_value(raw['low'])}")
    if q is not None and q <= 0:
        raise DistError(f"q must be > 0; got {fmt_value(raw['q'])}")
    if q is not None and q > high - low and not (integer and low == high):
        raise DistError(f"q must be <= high - low ({high - low:g}); got {fmt_value(raw['q'])}")
    return Dist(t, (), low, high, q)


_KIND_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def check_dist(value: Any, *, kind: type, low: float | None = None, high: float | None = None,
               allowed: tuple[Any, ...] | None = None) -> Dist:
    """Parse a searchable value for a parameter of type ``kind`` and check every value it can take.

    Integer parameters accept fixed values, ``choice``/``grid`` and ``randint``/``qrandint``;
    string and boolean parameters only fixed values and ``choice``/``grid``. Whole floats
    given for integer parameters are normalised to ``int``.

    Raises:
        DistError: the rule and the offending value.
    """
    if isinstance(value, list):
        raise DistError(f"a list is not a distribution; write {{type: choice, values: {fmt_value(value)}}} to "
                        f"search these values; got {fmt_value(value)}")
    d = parse_dist(value)
    if kind in (str, bool) and d.type not in CATEGORICAL_TYPES:
        raise DistError(f"must be {_KIND_NAMES[kind]}: use a fixed value, choice or grid; got {d.type}")
    if kind is int and d.type not in INT_TYPES:
        raise DistError(f"takes whole numbers: use a fixed value, choice, grid, randint or qrandint; got {d.type}")
    points = list(d.values) if d.categorical else [d.low, d.high]
    out = []
    for v in points:
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        if numeric and not math.isfinite(v):
            raise DistError(f"must be a finite number; got {fmt_value(v)}")
        ok = ((kind is float and numeric) or (kind is int and numeric and float(v) == int(v))
              or (kind is str and isinstance(v, str)) or (kind is bool and isinstance(v, bool)))
        if ok and kind is int:
            v = int(v)
        if not ok:
            raise DistError(f"must be {_KIND_NAMES.get(kind, kind.__name__)}; got {fmt_value(v)}")
        if allowed is not None and v not in allowed:
            raise DistError(f"must be one of {', '.join(map(str, allowed))}{did_you_mean(v, allowed)}; "
                            f"got {fmt_value(v)}")
        if low is not None and v < low:
            raise DistError(f"must be >= {low:g}; got {fmt_value(v)}")
        if high is not None and v > high:
            raise DistError(f"must be <= {high:g}; got {fmt_value(v)}")
        out.append(v)
    if d.categorical and kind is int:
        if len(set(out)) != len(out):
            raise DistError(f"{d.type}.values must not repeat a value; got {fmt_value(list(d.values))}")
        return Dist(d.type, tuple(out))
    return d

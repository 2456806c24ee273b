"""The sweep-spec schema (pydantic): the only definition of what a spec may contain.

Unknown keys are rejected with a did-you-mean; every searchable value is parsed into a
:class:`~search_spaces.distributions.Dist` and type-checked against what consumes it (a
model family's declared parameters, the indicator registry, the target registry).
Errors are collected (as many as pydantic can find in one pass) and rendered one per
line by :func:`search_spaces.loader.format_errors` as ``FILE: path.to.key: rule; got VALUE``.

Validated with ``context={"files": True}`` (what :func:`~search_spaces.loader.load_spec`
does), the spec is also checked against the candle files it names: every asset has a file
in ``data.path``, every timeframe can be read or resampled, and the horizon, lookback,
indicator warm-up and date split fit in the data. Those checks read each file once (line
count, first and last timestamp) and are cached per process.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from search_spaces.distributions import Dist, DistError, check_dist, did_you_mean, fmt_value
from trainables.data.candles import EMBEDDED_DIR, EMBEDDED_FUNDING_DIR, TIMEFRAMES, available, candle_file
from trainables.features.indicators import INDICATORS, PoolMember, make_member
from trainables.features.targets import TARGETS
from trainables.models.families import MODELS

ALGORITHMS = ("optuna-tpe", "random", "grid")
LOSSES = ("mse", "mae", "huber")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
ASSET_PATTERN = r"^[A-Z0-9]{2,15}-[A-Z0-9]{2,10}$"
#: Largest grid (points per asset/timeframe) that ``search.algorithm: grid`` will enumerate.
GRID_LIMIT = 100_000
#: Fewest samples a group needs once horizon, lookback and warm-up are taken off.
MIN_SAMPLES = 30


# ----------------------------------------------------------------------------- error plumbing
class Errors:
    """Collects ``(loc, message)`` problems and raises them as one pydantic ValidationError.

    Raised from inside a validator, pydantic prefixes each ``loc`` with the field's own
    location, so a section can report several problems at their exact keys.
    Messages end with ``; got VALUE`` (added here from ``value`` unless ``value`` is omitted).
    """

    _NONE = object()

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, loc: tuple[Any, ...] | str, msg: str, value: Any = _NONE) -> None:
        if isinstance(loc, str):
            loc = tuple(int(p) if p.isdigit() else p for p in loc.split(".")) if loc else ()
        if value is not Errors._NONE and "; got " not in msg:
            msg = f"{msg}; got {fmt_value(value)}"
        self.items.append({"type": PydanticCustomError("spec", msg),
                           "loc": loc, "input": None if value is Errors._NONE else value})

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, title: str = "Spec") -> None:
        if self.items:
            raise ValidationError.from_exception_data(title, self.items)  # type: ignore[arg-type]


def _strict_number(rule: str) -> Any:
    def check(v: Any) -> Any:
        # YAML gives real numbers; a quoted "3" or `true` where a number belongs is a mistake.
        if isinstance(v, (bool, str)):
            raise PydanticCustomError("spec_rule", rule)
        return v

    return BeforeValidator(check)


Int = Annotated[int, _strict_number("must be a whole number")]
Float = Annotated[float, _strict_number("must be a number")]
_FIRST_DAY, _LAST_DAY = dt.date(1970, 1, 1), dt.date(2200, 12, 31)


def _day_range(v: dt.date) -> dt.date:
    if not _FIRST_DAY <= v <= _LAST_DAY:
        raise PydanticCustomError("spec_rule", f"must be between {_FIRST_DAY} and {_LAST_DAY}")
    return v


Day = Annotated[dt.date, AfterValidator(_day_range)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_default=True,
                              allow_inf_nan=False)


def _dist(value: Any, **kw: Any) -> Dist:
    try:
        return check_dist(value, **kw)
    except DistError as e:
        raise PydanticCustomError("spec", str(e)) from None


# ----------------------------------------------------------------------------- candle inventory
@lru_cache(maxsize=256)
def _scan(path: str, mtime: float, size: int) -> tuple[int, dt.datetime, dt.datetime] | None:
    """(rows, first timestamp, last timestamp) of a candle file, or None if unreadable."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:  # type: ignore[operator]
            data = fh.read()
        lines = data.strip().split(b"\n")
        if len(lines) < 2:
            return None

        def ts(line: bytes) -> dt.datetime:
            s = line.split(b",", 1)[0].decode().strip().replace("Z", "+00:00")
            t = dt.datetime.fromisoformat(s)
            return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)

        return len(lines) - 1, ts(lines[1]), ts(lines[-1])
    except (OSError, ValueError, EOFError, UnicodeDecodeError, gzip.BadGzipFile):
        return None  # the loader reports the exact problem (file, line, rule) at run time


def candle_source(directory: Path, asset: str, timeframe: str) -> tuple[Path, str] | None:
    """The file ``load_candles`` would read for (asset, timeframe): native, or the finest divisor."""
    target = TIMEFRAMES[timeframe]
    finer = sorted((tf for tf, d in TIMEFRAMES.items() if d < target and target % d == dt.timedelta(0)),
                   key=TIMEFRAMES.__getitem__)
    for tf in [timeframe, *finer]:
        f = candle_file(directory, asset, tf)
        if f is not None:
            return f, tf
    return None


@dataclass(frozen=True)
class Extent:
    """Candles of one (asset, timeframe) inside ``[data.start, data.end)``.

    Attributes:
        n: about how many candles (exact for a native file without a date range; otherwise
            the span divided by the timeframe, an upper bound as gaps are not subtracted).
        lo, hi: first and last candle inside the range.
        first, last: first and last candle of the file.
    """

    n: int
    lo: dt.datetime
    hi: dt.datetime
    first: dt.datetime
    last: dt.datetime

    def describe(self, asset: str, timeframe: str) -> str:
        return f"{asset} {timeframe} has about {self.n:,} candles ({self.lo:%Y-%m-%d}..{self.hi:%Y-%m-%d})"


def data_extent(directory: Path, asset: str, timeframe: str, start: dt.date | None = None,
                end: dt.date | None = None) -> Extent | None:
    """How much of (asset, timeframe) lies in ``[start, end)``; None when there is no readable file."""
    src = candle_source(directory, asset, timeframe)
    if src is None:
        return None
    f, native = src
    st = f.stat()
    info = _scan(str(f.resolve()), st.st_mtime, st.st_size)
    if info is None:
        return None
    rows, first, last = info
    step = TIMEFRAMES[timeframe].to_pytimedelta()
    lo = max(first, dt.datetime.combine(start, dt.time(), dt.timezone.utc)) if start else first
    hi = min(last, dt.datetime.combine(end, dt.time(), dt.timezone.utc) - step) if end else last
    if hi < lo:
        return Extent(0, lo, hi, first, last)
    n = int((hi - lo) // step) + 1
    if native == timeframe:
        n = rows if not (start or end) else min(n, rows)
    else:
        n = min(n, rows * TIMEFRAMES[native].to_pytimedelta() // step)
    return Extent(n, lo, hi, first, last)


def _where(path: str | None) -> str:
    return f"in {path}" if path else "in the embedded candles"


# ----------------------------------------------------------------------------- sections
class DataSection(Section):
    """Which candles: assets × timeframes, from the embedded set or a folder of CSVs.

    ``path`` is a folder of ``<ASSET>_<TF>.csv[.gz]`` files (relative paths are relative
    to the working directory); ``start``/``end`` restrict the candles to ``[start, end)``.
    """

    assets: list[str] = Field(min_length=1)
    timeframes: list[str] = Field(min_length=1)
    path: str | None = None
    start: Day | None = None
    end: Day | None = None
    #: ``drop_windows``: no window or label spans a missing candle. ``ffill``: holes of up
    #: to ``ffill_limit`` candles are filled with flat candles (open = high = low = close =
    #: the last close, volume 0) first; longer holes are still dropped.
    gap_policy: Literal["drop_windows", "ffill"] = "drop_windows"
    ffill_limit: int = Field(default=3, ge=1, le=1000)
    #: Attach the asset's perpetual funding rates (``true``: the embedded file
    #: ``data/funding/<ASSET>_perp_funding_rate_8h.csv``; or a file path with ``{asset}``).
    funding: bool | str = False
    #: Wide metric tables (``timestamp`` + one column per metric, Glassnode style), one path
    #: per entry; ``{asset}`` and ``{base}`` (e.g. ``BTC``) are replaced per asset.
    metrics: list[str] = Field(default_factory=list)

    def funding_file(self, asset: str) -> Path | None:
        """The funding-rate file of ``asset`` (None when funding is off)."""
        if self.funding is False:
            return None
        if self.funding is True:
            return EMBEDDED_FUNDING_DIR / f"{asset}_perp_funding_rate_8h.csv"
        return Path(str(self.funding).format(asset=asset, base=asset.split("-")[0]))

    def metric_files(self, asset: str) -> list[Path]:
        """The wide metric tables of ``asset``."""
        return [Path(m.format(asset=asset, base=asset.split("-")[0])) for m in self.metrics]

    @field_validator("assets")
    @classmethod
    def _assets(cls, v: list[str]) -> list[str]:
        err = Errors()
        for i, a in enumerate(v):
            if not re.match(ASSET_PATTERN, a):
                fixed = a.upper().replace("/", "-").replace("_", "-")
                hint = f" (did you mean {fixed!r}?)" if re.match(ASSET_PATTERN, fixed) else ""
                err.add((i,), f"must look like BASE-QUOTE in capitals, e.g. BTC-USDT{hint}", a)
            elif a in v[:i]:
                err.add((i,), "is listed twice; list each asset once", a)
        err.raise_if_any()
        return v

    @field_validator("timeframes")
    @classmethod
    def _tfs(cls, v: list[str]) -> list[str]:
        err = Errors()
        for i, tf in enumerate(v):
            if tf not in TIMEFRAMES:
                err.add((i,), f"unknown timeframe{did_you_mean(tf, TIMEFRAMES)}; allowed: {', '.join(TIMEFRAMES)}",
                        tf)
            elif tf in v[:i]:
                err.add((i,), "is listed twice; list each timeframe once", tf)
        err.raise_if_any()
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or "\x00" in v):
            raise PydanticCustomError("spec_rule", "must be a folder of candle files")
        return v

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> DataSection:
        err = Errors()
        if self.start and self.end and self.start >= self.end:
            err.add("end", f"must be after data.start ({self.start})", self.end)
        err.raise_if_any()
        if (info.context or {}).get("files"):
            self._check_files(err)
            err.raise_if_any()
        return self

    @property
    def directory(self) -> Path:
        """The candle folder (``path`` or the embedded set)."""
        return Path(self.path).expanduser() if self.path else EMBEDDED_DIR

    def _check_files(self, err: Errors) -> None:
        d = self.directory
        try:
            if not d.is_dir():
                err.add("path", "folder does not exist", self.path)
                return
            have = available(d)
        except OSError as e:
            err.add("path", f"cannot be read ({e.strerror or e})", self.path)
            return
        where = _where(self.path)
        firsts: list[dt.datetime] = []
        lasts: list[dt.datetime] = []
        for i, a in enumerate(self.assets):
            if a not in have:
                listed = ", ".join(have) or "none"
                err.add(("assets", i), f"no candle file for this asset {where}{did_you_mean(a, have)}; "
                        f"available: {listed}", a)
                continue
            for j, tf in enumerate(self.timeframes):
                ext = data_extent(d, a, tf)
                if candle_source(d, a, tf) is None:
                    err.add(("timeframes", j), f"no {a} candles at {tf} or at a finer timeframe that divides it "
                            f"{where} (files: {a} {', '.join(have[a])})", tf)
                elif ext is not None:
                    firsts.append(ext.first)
                    lasts.append(ext.last)
        for a in self.assets:
            f = self.funding_file(a)
            if f is not None and not f.is_file():
                err.add("funding", f"no funding-rate file for {a} (looked for {f})", self.funding)
            for j, m in enumerate(self.metric_files(a)):
                if not m.is_file():
                    err.add(("metrics", j), f"no metric table for {a} (looked for {m})", self.metrics[j])
        if firsts and self.start and dt.datetime.combine(self.start, dt.time(), dt.timezone.utc) > max(lasts):
            err.add("start", f"is after the last candle ({max(lasts):%Y-%m-%d}); no data left", self.start)
        if firsts and self.end and dt.datetime.combine(self.end, dt.time(), dt.timezone.utc) <= min(firsts):
            err.add("end", f"is before the first candle ({min(firsts):%Y-%m-%d}); no data left", self.end)


class TargetSection(Section):
    """What to predict: ``kind`` at ``horizon`` candles ahead."""

    kind: str = "multiplier"
    horizon: Int = Field(default=1, ge=1, le=100_000)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in TARGETS:
            raise PydanticCustomError("spec_rule", f"unknown target{did_you_mean(v, TARGETS)}; "
                                      f"allowed: {', '.join(TARGETS)}")
        return v


class SplitSection(Section):
    """Chronological train / validation / test spans, in that time order.

    Either fractions of the sample timeline (``train``, ``val``, ``test``; give two and
    the third is what is left; default 0.7 / 0.15 / 0.15), or dates: ``val_start`` and
    ``test_start`` (training is everything before ``val_start``, validation
    ``[val_start, test_start)``, test from ``test_start`` to the end of the data).
    """

    train: Float | None = Field(default=None, gt=0, lt=1)
    val: Float | None = Field(default=None, gt=0, lt=1)
    test: Float | None = Field(default=None, gt=0, lt=1)
    val_start: Day | None = None
    test_start: Day | None = None

    @model_validator(mode="after")
    def _check(self) -> SplitSection:
        err = Errors()
        fr = {"train": self.train, "val": self.val, "test": self.test}
        given = {k: v for k, v in fr.items() if v is not None}
        if self.val_start is not None or self.test_start is not None:
            for k, v in given.items():
                err.add(k, "use either fractions (train/val/test) or dates (val_start/test_start), not both", v)
            for k in ("val_start", "test_start"):
                if getattr(self, k) is None:
                    err.add(k, "a date split needs both val_start and test_start; this one is missing")
            if self.val_start and self.test_start and self.test_start <= self.val_start:
                err.add("test_start", f"must be after split.val_start ({self.val_start}): validation comes "
                        "before test and the spans must not overlap", self.test_start)
            err.raise_if_any()
            return self
        if not given:
            self.train, self.val, self.test = 0.7, 0.15, 0.15
        elif len(given) == 2:
            (missing,) = set(fr) - set(given)
            rest = 1.0 - sum(given.values())
            if rest <= 1e-9:
                err.add(next(reversed(given)), f"fractions leave nothing for {missing}: "
                        f"{' + '.join(f'{k} ({v:g})' for k, v in given.items())} must be < 1 (the spans would "
                        "overlap)", next(reversed(given.values())))
            else:
                setattr(self, missing, round(rest, 12))
        elif len(given) == 1:
            (k, v), = given.items()
            err.add(k, "give two or three of train, val, test (or none for 0.7 / 0.15 / 0.15)", v)
        else:
            total = sum(given.values())
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                why = "the spans would overlap" if total > 1 else "data would be left unused"
                err.add("test", f"train + val + test must be 1 ({why}); "
                        f"got {self.train:g} + {self.val:g} + {self.test:g} = {total:g}")
        err.raise_if_any()
        return self

    @property
    def by_dates(self) -> bool:
        """True when the split is given by dates (``val_start``/``test_start``), not fractions."""
        return self.val_start is not None

    def dates(self) -> tuple[dt.date, dt.date] | None:
        """``(val_start, test_start)`` of a date split, or None for a fraction split."""
        if self.val_start is None or self.test_start is None:
            return None
        return self.val_start, self.test_start

    def fractions(self) -> tuple[float, float, float] | None:
        """``(train, val, test)`` of a fraction split, or None for a date split."""
        if self.train is None or self.val is None or self.test is None:
            return None
        return self.train, self.val, self.test

    def fractions_for(self, timestamps: Any) -> tuple[float, float, float]:
        """Fractions that cut a sorted sample timeline exactly where the split says.

        For a fraction split, the fractions themselves; for a date split, the share of
        ``timestamps`` (candle open times: numpy datetime64/int64 ns UTC, or pandas) before
        ``val_start``, in ``[val_start, test_start)`` and from ``test_start`` on. With these,
        ``round(n * train)`` in ``trainables.features.dataset.prepare`` is the first validation sample.
        """
        fr = self.fractions()
        if fr is not None:
            return fr
        import numpy as np
        import pandas as pd

        ts = pd.to_datetime(np.asarray(timestamps), utc=True)
        n = len(ts)
        if n == 0:
            return 0.0, 0.0, 0.0
        a = int((ts < pd.Timestamp(self.val_start, tz="UTC")).sum())
        b = int((ts < pd.Timestamp(self.test_start, tz="UTC")).sum())
        return a / n, (b - a) / n, (n - b) / n


class WindowSection(Section):
    """Input window length in candles (searchable)."""

    lookback: Any = 16

    @field_validator("lookback", mode="before")
    @classmethod
    def _lb(cls, v: Any) -> Dist:
        return _dist(v, kind=int, low=1, high=4096)

    @property
    def max_lookback(self) -> int:
        return int(self.lookback.bounds()[1])

    @property
    def min_lookback(self) -> int:
        return int(self.lookback.bounds()[0])


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


def _family_space(fam: str, space: dict[Any, Any], err: Errors) -> dict[str, Dist]:
    params = MODELS[fam].params
    parsed: dict[str, Dist] = {}
    for k, pv in space.items():
        if k not in params:
            err.add((fam, str(k)), f"unknown parameter{did_you_mean(k, params)}; {fam} takes {', '.join(params)}",
                    pv)
            continue
        p = params[k]
        try:
            parsed[k] = check_dist(pv, kind=p.type, low=p.low, high=p.high)
        except DistError as e:
            err.add((fam, k), str(e))
    # Cross-parameter rules the builders enforce at trial time, checked here instead.
    if "heads" in params and "d_model" in params:
        heads = parsed.get("heads") or Dist("fixed", (params["heads"].default,))
        dm = parsed.get("d_model") or Dist("fixed", (params["d_model"].default,))
        hv, dv = heads.grid_values(10_000), dm.grid_values(10_000)
        if hv is not None and dv is not None and ("heads" in space or "d_model" in space):
            bad = sorted({h for h in hv for d in dv if d % h})
            if bad:
                key = "heads" if "heads" in space else "d_model"
                err.add((fam, key), f"heads must divide d_model (d_model: {dm.describe()}); heads that do not: "
                        f"{fmt_value(bad)}", space[key])
    if "pos_encoding" in parsed:
        from trainables.models.families import POS_ENCODINGS

        kinds = POS_ENCODINGS
        for v in parsed["pos_encoding"].values:
            if v not in kinds:
                err.add((fam, "pos_encoding"), f"must be one of {', '.join(kinds)}{did_you_mean(v, kinds)}", v)
    return parsed


class ModelSection(Section):
    """Model families and their parameter spaces: ``families: {lstm: {units: ...}, mlp: {...}}``.

    A family's parameters are the ones it declares in ``trainables.models.families.MODELS``, so a
    conditional parameter (e.g. ``heads``) exists only for the families that have it.
    """

    families: dict[str, dict[str, Any]] = Field(min_length=1)

    @field_validator("families", mode="before")
    @classmethod
    def _families(cls, v: Any) -> dict[str, dict[str, Dist]]:
        if not isinstance(v, dict) or not v:
            raise PydanticCustomError("spec", "must map family names to parameter spaces, e.g. {lstm: {units: 32}}; "
                                      f"allowed families: {', '.join(MODELS)}; got {fmt_value(v)}")
        err = Errors()
        out: dict[str, dict[str, Dist]] = {}
        for fam, space in v.items():
            if not isinstance(fam, str) or fam not in MODELS:
                err.add((str(fam),), f"unknown model family{did_you_mean(fam, MODELS)}; allowed: {', '.join(MODELS)}",
                        fam)
                continue
            space = {} if space is None else space
            if not isinstance(space, dict):
                err.add((fam,), "must be a mapping of parameters (or empty for the defaults)", space)
                continue
            out[fam] = _family_space(fam, space, err)
        err.raise_if_any()
        return out


class TrainingSection(Section):
    """Optimisation: the epoch budget, plus searchable patience, batch size, lr, loss, optimiser.

    ``max_epochs`` is fixed: it is every trial's budget (and ASHA's ``max_t``).
    ``patience`` 0 means no early stopping.
    """

    max_epochs: Int = Field(default=30, ge=1, le=100_000)
    patience: Any = 5
    batch_size: Any = 64
    learning_rate: Any = 1e-3
    weight_decay: Any = 0.0
    loss: Any = "mse"
    optimizer: Any = "adam"
    jit_compile: bool = False
    steps_per_execution: Int = Field(default=16, ge=1, le=100_000)

    @field_validator("patience", mode="before")
    @classmethod
    def _pat(cls, v: Any) -> Dist:
        return _dist(v, kind=int, low=0, high=100_000)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _bs(cls, v: Any) -> Dist:
        return _dist(v, kind=int, low=1, high=1 << 16)

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _lr(cls, v: Any) -> Dist:
        return _dist(v, kind=float, low=1e-12, high=10.0)

    @field_validator("weight_decay", mode="before")
    @classmethod
    def _wd(cls, v: Any) -> Dist:
        return _dist(v, kind=float, low=0.0, high=1.0)

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, v: Any) -> Dist:
        return _dist(v, kind=str, allowed=LOSSES)

    @field_validator("optimizer", mode="before")
    @classmethod
    def _opt(cls, v: Any) -> Dist:
        return _dist(v, kind=str, allowed=OPTIMIZERS)


class SearchSection(Section):
    """Search algorithm and budget. ``num_samples`` is per (asset, timeframe).

    Under ``grid`` it caps the grid (a seeded random subset of the points); without it
    the whole grid runs. ``points_to_evaluate`` are Optuna parameter dicts tried first
    (``family``, ``lookback``, ``lstm.units``, ``ind.rsi``, ...).
    """

    algorithm: Literal["optuna-tpe", "random", "grid"] = "optuna-tpe"
    num_samples: Int | None = Field(default=None, ge=1, le=10_000_000)
    seed: Int = Field(default=0, ge=0, le=1_000_000)
    max_concurrent: Int | None = Field(default=None, ge=1)
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    n_startup_trials: Int = Field(default=5, ge=0)


class SchedulerSection(Section):
    """Early stopping across trials: ASHA on the scale-free ``val_ratio_best``, or none.

    ``max_t`` (epochs; default ``training.max_epochs``) is where ASHA's rungs end and every
    trial stops; ``grace_period`` epochs run before a trial can be stopped; each rung keeps
    ``1 / reduction_factor`` of the trials.
    """

    kind: Literal["asha", "none"] = "asha"
    max_t: Int | None = Field(default=None, ge=1)
    grace_period: Int = Field(default=3, ge=1)
    reduction_factor: Float = Field(default=3.0, gt=1, le=1000)


class ResourcesSection(Section):
    """Per-trial resources; fractional GPUs (e.g. 0.125) pack several trials onto one GPU."""

    cpus: Float = Field(default=1.0, gt=0, le=1024)
    gpus: Float = Field(default=0.0, ge=0, le=64)
    max_failures: Int = Field(default=1, ge=0)

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise PydanticCustomError("spec_rule", "a GPU request above 1 must be a whole number of GPUs")
        return v


_OPTIONAL_SECTIONS = ("target", "split", "window", "training", "search", "scheduler", "resources")


class Spec(Section):
    """A whole sweep spec."""

    name: str | None = None
    description: str | None = None
    data: DataSection
    target: TargetSection = Field(default_factory=TargetSection)
    split: SplitSection = Field(default_factory=SplitSection)
    window: WindowSection = Field(default_factory=WindowSection)
    features: FeaturesSection
    model: ModelSection
    training: TrainingSection = Field(default_factory=TrainingSection)
    search: SearchSection = Field(default_factory=SearchSection)
    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    storage: str = "runs"

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, v: Any) -> Any:
        # `training:` with every line commented out is an empty section, not an error.
        if isinstance(v, dict):
            return {k: val for k, val in v.items() if not (k in _OPTIONAL_SECTIONS and val is None)}
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", v):
            raise PydanticCustomError("spec_rule", "must be 1-100 letters, digits, '.', '_' or '-' (it names the "
                                      "run folder)")
        return v

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        if not v.strip() or "\x00" in v:
            raise PydanticCustomError("spec_rule", "must be a folder for run directories")
        return v

    @model_validator(mode="after")
    def _cross(self, info: ValidationInfo) -> Spec:
        err = Errors()
        sch, tr = self.scheduler, self.training
        if sch.max_t is not None and sch.kind != "asha":
            err.add("scheduler.max_t", "only applies to scheduler.kind asha; remove it or use training.max_epochs",
                    sch.max_t)
        elif sch.max_t is not None and sch.max_t > tr.max_epochs:
            err.add("scheduler.max_t", f"must be <= training.max_epochs ({tr.max_epochs})", sch.max_t)
        if sch.kind == "asha" and sch.grace_period > self.max_t:
            what = "scheduler.max_t" if sch.max_t is not None else "training.max_epochs"
            err.add("scheduler.grace_period", f"must be <= {what} ({self.max_t})", sch.grace_period)
        min_lb = self.window.min_lookback
        for fam, space in self.model.families.items():
            if "factor" in space and space["factor"].bounds()[1] > min_lb:
                err.add(f"model.families.{fam}.factor", f"must be <= the shortest window.lookback ({min_lb})",
                        space["factor"].bounds()[1])
            elif "factor" in MODELS[fam].params and "factor" not in space and MODELS[fam].params["factor"].default > min_lb:
                err.add(f"model.families.{fam}", f"the default factor ({MODELS[fam].params['factor'].default}) "
                        f"must be <= the shortest window.lookback ({min_lb}); set factor", {})
        self._check_target(err)
        if self.search.algorithm == "grid":
            self._check_grid(err)
        self._check_points(err)
        err.raise_if_any()
        if self.search.algorithm != "grid" and self.search.num_samples is None:
            self.search.num_samples = 10
        if (info.context or {}).get("files"):
            self._check_length(err)
            err.raise_if_any()
        return self

    @property
    def max_t(self) -> int:
        """Epochs a trial may run: ASHA's ``scheduler.max_t`` if given, else ``training.max_epochs``."""
        if self.scheduler.kind == "asha" and self.scheduler.max_t is not None:
            return self.scheduler.max_t
        return self.training.max_epochs

    def searched(self) -> dict[str, Dist]:
        """Every non-model dimension by its key path (``window.lookback``, ``training.batch_size``, ...)."""
        from search_spaces.space import TRAINING_KEYS

        out = {"window.lookback": self.window.lookback}
        out.update({f"training.{k}": getattr(self.training, k) for k in TRAINING_KEYS})
        return out

    def _check_target(self, err: Errors) -> None:
        """Rules of particular targets (realised volatility needs at least two hourly returns)."""
        tg = TARGETS[self.target.kind]
        if getattr(tg, "kind", "") != "volatility":
            return
        hour = TIMEFRAMES["1h"]
        for tf in self.data.timeframes:
            if self.target.horizon * (TIMEFRAMES[tf] // hour) < 2:
                err.add("target.horizon", f"{self.target.kind} on {tf} candles needs horizon >= 2 (e.g. 24 for "
                        "next-day volatility): the volatility of one hourly return is only its size",
                        self.target.horizon)
                return

    def _check_grid(self, err: Errors) -> None:
        dims = dict(self.searched())
        for fam, space in self.model.families.items():
            dims.update({f"model.families.{fam}.{k}": d for k, d in space.items()})
        cont = False
        for key, d in dims.items():
            if not math.isfinite(d.size()):
                err.add(key, "search.algorithm grid needs a finite set of values (fixed, choice, grid, randint, "
                        f"qrandint or quniform); got {d.type}")
                cont = True
        if cont:
            return
        from search_spaces.space import grid_size

        size = grid_size(self)
        if size > GRID_LIMIT:
            err.add("search.algorithm", f"the grid has {size:,.0f} points per asset/timeframe, more than "
                    f"{GRID_LIMIT:,} can be enumerated; use optuna-tpe or random with search.num_samples", "grid")

    def param_names(self) -> dict[str, Dist | None]:
        """Optuna parameter names the define-by-run function can create → their distribution.

        ``None`` marks the indicator switches ``ind.<member>`` (booleans) and ``family``.
        """
        from search_spaces.space import TRAINING_KEYS

        names: dict[str, Dist | None] = {"family": None, "lookback": self.window.lookback}
        names.update({k: getattr(self.training, k) for k in TRAINING_KEYS})
        for fam, space in self.model.families.items():
            names.update({f"{fam}.{k}": d for k, d in space.items()})
        for m in self.features.pool:
            if m.key not in self.features.always:
                names[f"ind.{m.key}"] = None
            for p in m.searched:
                names[f"ind.{m.key}.{p}"] = Dist("choice", tuple(sorted({dict(v)[p] for v in m.variants})))
        return names

    def _check_points(self, err: Errors) -> None:
        names = self.param_names()
        for i, point in enumerate(self.search.points_to_evaluate):
            loc = f"search.points_to_evaluate.{i}"
            for k, v in point.items():
                if k not in names:
                    err.add(f"{loc}.{k}", f"unknown parameter{did_you_mean(k, names)}; parameters: "
                            f"{', '.join(sorted(names))}", v)
                    continue
                d = names[k]
                if k == "family":
                    if v not in self.model.families:
                        err.add(f"{loc}.{k}", f"must be one of the spec's families ({', '.join(self.model.families)})",
                                v)
                elif d is None:
                    if not isinstance(v, bool):
                        err.add(f"{loc}.{k}", "indicator switches are true or false", v)
                elif not d.contains(v):
                    err.add(f"{loc}.{k}", f"is not a value of {d.describe()}", v)

    def _check_length(self, err: Errors) -> None:
        """Horizon, lookback, warm-up and split dates against the candles on disk."""
        d = self.data
        warm, warm_item = 0, None
        for m in self.features.pool:
            for v in m.variants:
                w = int(INDICATORS[m.indicator].warmup(dict(v)))
                if w > warm:
                    warm, warm_item = w, {m.indicator: dict(v)} if v else m.indicator
        if getattr(TARGETS[self.target.kind], "needs_intraday", False):
            for i, a in enumerate(d.assets):
                if any(tf != "1h" for tf in d.timeframes) and candle_file(d.directory, a, "1h") is None:
                    err.add(("data", "assets", i), f"target {self.target.kind} is computed from 1h candles, and "
                            f"there is no {a}_1h.csv[.gz] {_where(d.path)}", a)
        lb, h = self.window.max_lookback, self.target.horizon
        fr = self.split.fractions()
        need = max(MIN_SAMPLES, math.ceil(10 / min(fr))) if fr else MIN_SAMPLES
        reported: set[str] = set()
        for a, tf in self.groups:
            ext = data_extent(d.directory, a, tf, d.start, d.end)
            if ext is None:
                continue
            n, lo, hi = ext.n, ext.lo, ext.hi
            span = ext.describe(a, tf)
            usable = n - warm - (lb - 1) - h
            if "length" in reported:
                pass
            elif n == 0:
                key = "data.start" if d.start and d.start > ext.last.date() else "data.end"
                err.add(key, f"leaves no {a} {tf} candles (they span {ext.first:%Y-%m-%d}..{ext.last:%Y-%m-%d})",
                        getattr(d, key.split(".")[1]))
                reported.add("length")
            elif h >= n:
                err.add("target.horizon", f"is longer than the data: {span}", h)
                reported.add("length")
            elif n and warm >= n:
                err.add("features.pool", f"indicator warm-up of {warm} candles is longer than the data: {span}; "
                        "use shorter periods or lags", warm_item)
                reported.add("length")
            elif usable < need:
                # Blame the largest of the three.
                key, val = max((("target.horizon", h), ("window.lookback", lb), ("features.pool", warm)),
                               key=lambda kv: kv[1])
                err.add(key, f"lookback ({lb}), target.horizon ({h}) and indicator warm-up ({warm}) leave about "
                        f"{max(usable, 0):,} samples; need at least {need} (10 in each split span): {span}",
                        warm_item if key == "features.pool" else val)
                reported.add("length")
            sp = self.split
            if sp.by_dates and n:
                for key in ("val_start", "test_start"):
                    day = getattr(sp, key)
                    t = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
                    if not lo < t <= hi and key not in reported:
                        err.add(f"split.{key}", f"must fall inside the data, after its first candle: {span}", day)
                        reported.add(key)

    @property
    def groups(self) -> list[tuple[str, str]]:
        """Every (asset, timeframe) the sweep covers, in spec order."""
        return [(a, tf) for a in self.data.assets for tf in self.data.timeframes]

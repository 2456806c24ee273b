"""The sweep-spec schema (pydantic): the only definition of what a spec may contain.

Unknown keys are rejected with a did-you-mean; every searchable value is parsed into a
:class:`~search_spaces.distributions.Dist` and type-checked against what consumes it (a
model family's declared parameters, the indicator registry, the target registry).
Errors are collected and rendered one per line as ``FILE: path.to.key: rule; got VALUE``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from search_spaces.distributions import Dist, DistError, parse_dist
from trainables.data import TIMEFRAMES
from trainables.indicators import INDICATORS, PoolMember, make_member
from trainables.models import MODELS
from trainables.targets import TARGETS

ALGORITHMS = ("optuna-tpe", "random", "grid")
LOSSES = ("mse", "mae", "huber")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
ASSET_PATTERN = r"^[A-Z0-9]{2,15}-[A-Z0-9]{2,10}$"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_default=True)


def _dist(value: Any, *, kind: type, low: float | None = None, high: float | None = None,
          allowed: tuple[Any, ...] | None = None) -> Dist:
    """Parse a searchable value and check every value it can take."""
    try:
        d = parse_dist(value)
    except DistError as e:
        raise ValueError(str(e)) from None
    vals = d.grid_values()
    points = vals if vals is not None else [d.low, d.high]
    for v in points:
        if kind is float and isinstance(v, (int, float)) and not isinstance(v, bool):
            pass
        elif kind is int and isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == int(v):
            pass
        elif kind is str and isinstance(v, str):
            pass
        elif kind is bool and isinstance(v, bool):
            pass
        else:
            raise ValueError(f"must be {kind.__name__}; got {v!r}")
        if allowed is not None and v not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}; got {v!r}")
        if low is not None and v < low:
            raise ValueError(f"must be >= {low:g}; got {v!r}")
        if high is not None and v > high:
            raise ValueError(f"must be <= {high:g}; got {v!r}")
    return d


class DataSection(Section):
    """Which candles: assets × timeframes, from the embedded set or a folder of CSVs."""

    assets: list[str] = Field(min_length=1)
    timeframes: list[str] = Field(min_length=1)
    path: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    gap_policy: Literal["drop_windows"] = "drop_windows"

    @field_validator("assets")
    @classmethod
    def _assets(cls, v: list[str]) -> list[str]:
        import re

        for a in v:
            if not isinstance(a, str) or not re.match(ASSET_PATTERN, a):
                raise ValueError(f"asset {a!r} must look like BASE-QUOTE in capitals, e.g. BTC-USDT")
        if len(set(v)) != len(v):
            raise ValueError(f"assets must be unique; got {v}")
        return v

    @field_validator("timeframes")
    @classmethod
    def _tfs(cls, v: list[str]) -> list[str]:
        for tf in v:
            if tf not in TIMEFRAMES:
                raise ValueError(f"unknown timeframe {tf!r}; allowed: {', '.join(TIMEFRAMES)}")
        if len(set(v)) != len(v):
            raise ValueError(f"timeframes must be unique; got {v}")
        return v

    @model_validator(mode="after")
    def _span(self) -> DataSection:
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be before end ({self.end})")
        return self


class TargetSection(Section):
    """What to predict: ``kind`` at ``horizon`` candles ahead."""

    kind: str = "multiplier"
    horizon: int = Field(default=1, ge=1, le=10_000)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in TARGETS:
            raise ValueError(f"unknown target {v!r}; allowed: {', '.join(TARGETS)}")
        return v


class SplitSection(Section):
    """Chronological train / validation / test fractions (in that time order)."""

    train: float = Field(default=0.7, gt=0, lt=1)
    val: float = Field(default=0.15, gt=0, lt=1)
    test: float = Field(default=0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum(self) -> SplitSection:
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + val + test must be 1; got {self.train} + {self.val} + {self.test} = {total:g}")
        return self


class WindowSection(Section):
    """Input window length in candles (searchable)."""

    lookback: Any = 16

    @field_validator("lookback", mode="before")
    @classmethod
    def _lb(cls, v: Any) -> Dist:
        return _dist(v, kind=int, low=1, high=4096)

    @property
    def max_lookback(self) -> int:
        d: Dist = self.lookback
        vals = d.grid_values()
        return int(max(vals)) if vals else int(d.high)


class FeaturesSection(Section):
    """The indicator pool and how subsets of it are searched.

    ``pool`` items: ``rsi`` (defaults), ``{rsi: {period: 21}}`` (one fixed variant),
    ``{rsi: {period: [7, 14, 21]}}`` (three pool members ``rsi_7``, ``rsi_14``, ``rsi_21``),
    or ``{rsi: {period: {type: choice, values: [7, 14, 21]}}}`` (one member ``rsi`` whose
    period is a hyperparameter of the trial).
    """

    pool: list[Any] = Field(min_length=1)
    min_size: int = Field(default=1, ge=0)
    max_size: int | None = Field(default=None, ge=1)
    always: list[str] = Field(default_factory=list)
    subsets: Literal["search", "all"] = "search"

    @field_validator("pool")
    @classmethod
    def _pool(cls, v: list[Any]) -> list[PoolMember]:
        members: list[PoolMember] = []
        for i, item in enumerate(v):
            if isinstance(item, str):
                name, params = item, {}
            elif isinstance(item, dict) and len(item) == 1:
                name, params = next(iter(item.items()))
                params = params or {}
                if not isinstance(params, dict):
                    raise ValueError(f"[{i}]: parameters of {name!r} must be a mapping; got {params!r}")
            else:
                raise ValueError(f"[{i}]: must be an indicator name or {{name: {{param: value}}}}; got {item!r}")
            if name not in INDICATORS:
                import difflib

                near = difflib.get_close_matches(str(name), list(INDICATORS), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(f"[{i}]: unknown indicator {name!r}{hint}; allowed: {', '.join(sorted(INDICATORS))}")
            ind = INDICATORS[name]
            fixed: dict[str, Any] = {}
            expanded: dict[str, list[Any]] = {}
            searched: dict[str, list[Any]] = {}
            for k, pv in params.items():
                if k not in ind.defaults:
                    allowed = ", ".join(ind.defaults) or "none"
                    raise ValueError(f"[{i}].{name}: unknown parameter {k!r}; allowed: {allowed}")
                kind = type(ind.defaults[k])
                if isinstance(pv, list):
                    expanded[k] = [_dist(x, kind=kind, low=1e-9).values[0] for x in pv]
                elif isinstance(pv, dict):
                    d = _dist(pv, kind=kind, low=1e-9)
                    if d.type not in ("choice", "grid"):
                        raise ValueError(f"[{i}].{name}.{k}: indicator parameters are precomputed, so only "
                                         f"choice/grid (or a list of values) are allowed; got {d.type}")
                    searched[k] = list(d.values)
                else:
                    fixed[k] = _dist(pv, kind=kind, low=1e-9).values[0]
            import itertools

            for combo in itertools.product(*[[(k, x) for x in xs] for k, xs in expanded.items()]):
                members.append(make_member(name, {**fixed, **dict(combo)}, searched=searched))
        keys = [m.key for m in members]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"pool lists {dup[0]!r} twice; each member once")
        return members

    @model_validator(mode="after")
    def _bounds(self) -> FeaturesSection:
        n = len(self.pool)
        keys = [m.key for m in self.pool]
        for a in self.always:
            if a not in keys:
                raise ValueError(f"always: {a!r} is not in the pool; pool members: {', '.join(keys)}")
        hi = self.max_size if self.max_size is not None else n
        if hi > n:
            raise ValueError(f"max_size ({hi}) is larger than the pool ({n} members)")
        if self.min_size > hi:
            raise ValueError(f"min_size ({self.min_size}) must be <= max_size ({hi})")
        if len(self.always) > hi:
            raise ValueError(f"always lists {len(self.always)} members but max_size is {hi}")
        if hi == 0:
            raise ValueError("max_size must be >= 1: a model needs at least one input column")
        return self

    @property
    def upper(self) -> int:
        return self.max_size if self.max_size is not None else len(self.pool)


class ModelSection(Section):
    """Model families and their parameter spaces: ``families: {lstm: {units: ...}, mlp: {...}}``."""

    families: dict[str, dict[str, Any]] = Field(min_length=1)

    @field_validator("families", mode="before")
    @classmethod
    def _families(cls, v: Any) -> dict[str, dict[str, Dist]]:
        if not isinstance(v, dict) or not v:
            raise ValueError(f"must map family names to parameter spaces; allowed families: {', '.join(MODELS)}; got {v!r}")
        out: dict[str, dict[str, Dist]] = {}
        for fam, space in v.items():
            if fam not in MODELS:
                import difflib

                near = difflib.get_close_matches(str(fam), list(MODELS), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(f"unknown model family {fam!r}{hint}; allowed: {', '.join(MODELS)}")
            space = space or {}
            if not isinstance(space, dict):
                raise ValueError(f"{fam}: must be a mapping of parameters; got {space!r}")
            params = MODELS[fam].params
            parsed: dict[str, Dist] = {}
            for k, pv in space.items():
                if k not in params:
                    import difflib

                    near = difflib.get_close_matches(str(k), list(params), n=1)
                    hint = f" (did you mean {near[0]!r}?)" if near else ""
                    raise ValueError(f"{fam}.{k}: unknown parameter{hint}; {fam} takes {', '.join(params)}")
                p = params[k]
                try:
                    parsed[k] = _dist(pv, kind=p.type, low=p.low, high=p.high)
                except ValueError as e:
                    raise ValueError(f"{fam}.{k}: {e}") from None
            out[fam] = parsed
        return out


class TrainingSection(Section):
    """Optimisation: epochs and early stopping, plus searchable batch size, lr, loss, optimiser."""

    max_epochs: int = Field(default=30, ge=1, le=100_000)
    patience: int = Field(default=5, ge=0)
    batch_size: Any = 64
    learning_rate: Any = 1e-3
    weight_decay: Any = 0.0
    loss: Any = "mse"
    optimizer: Any = "adam"
    jit_compile: bool = False
    steps_per_execution: int = Field(default=16, ge=1)

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
    """Search algorithm and budget. ``num_samples`` is per (asset, timeframe)."""

    algorithm: Literal["optuna-tpe", "random", "grid"] = "optuna-tpe"
    num_samples: int | None = Field(default=None, ge=1)
    seed: int = 0
    max_concurrent: int | None = Field(default=None, ge=1)
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    n_startup_trials: int = Field(default=5, ge=0)


class SchedulerSection(Section):
    """Early stopping across trials: ASHA on the scale-free ``val_ratio_best``, or none."""

    kind: Literal["asha", "none"] = "asha"
    grace_period: int = Field(default=3, ge=1)
    reduction_factor: float = Field(default=3.0, gt=1)


class ResourcesSection(Section):
    """Per-trial resources; fractional GPUs pack several trials onto one GPU."""

    cpus: float = Field(default=1.0, gt=0)
    gpus: float = Field(default=0.0, ge=0)
    max_failures: int = Field(default=1, ge=0)

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"a GPU request above 1 must be a whole number; got {v}")
        return v


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

    @model_validator(mode="after")
    def _cross(self) -> Spec:
        if self.scheduler.kind == "asha" and self.scheduler.grace_period > self.training.max_epochs:
            raise ValueError(f"scheduler.grace_period ({self.scheduler.grace_period}) must be <= "
                             f"training.max_epochs ({self.training.max_epochs})")
        if self.search.algorithm != "grid" and self.search.num_samples is None:
            self.search.num_samples = 10
        return self

    @property
    def groups(self) -> list[tuple[str, str]]:
        """Every (asset, timeframe) the sweep covers, in spec order."""
        return [(a, tf) for a in self.data.assets for tf in self.data.timeframes]

"""The root of the spec schema: :class:`Spec`, a whole sweep spec, and its cross-section rules.

The sections live beside this module (:mod:`~search_spaces.schema.sections`,
:mod:`~search_spaces.schema.features`, :mod:`~search_spaces.schema.model_sections`); the
rules that relate several of them are called from :meth:`Spec._cross` (scheduler and
model rules inline, the others in :mod:`~search_spaces.schema.rules`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from search_spaces.distributions import Dist
from search_spaces.schema._base import Errors, Section
from search_spaces.schema.features import FeaturesSection
from search_spaces.schema.grid import GRID_LIMIT, grid_size
from search_spaces.schema.model_sections import (
    ModelSection,
    ResourcesSection,
    SchedulerSection,
    SearchSection,
    TrainingSection,
)
from search_spaces.schema.report_section import ReportSection
from search_spaces.schema.rules import check_length, check_points, check_target
from search_spaces.schema.sections import DataSection, SplitSection, TargetSection, WindowSection
from search_spaces.schema.tracking import TrackingSection
from trainables.models.families import MODELS
from trainables.trial.config import TRAINING_KEYS

_OPTIONAL_SECTIONS = ("target", "split", "window", "training", "search", "scheduler", "resources", "report",
                      "tracking")

#: What a run name (``name:`` in a spec, ``--name``) may hold: it names the run folder and
#: is rendered into job scripts, so no path separators, no ``..``, no shell metacharacters.
RUN_NAME_ALLOWED = "1-100 characters from A-Z a-z 0-9 . _ - (no '..', no path separators)"
_RUN_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def run_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run (None when it can)."""
    if not _RUN_NAME.fullmatch(name) or ".." in name or name in (".", ".."):
        return f"must be {RUN_NAME_ALLOWED}"
    return None


def control_characters(value: str) -> bool:
    """Whether ``value`` holds a control character (newline, tab, NUL, DEL, ...)."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)


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
    report: ReportSection = Field(default_factory=ReportSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
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
        problem = None if v is None else run_name_problem(v)
        if problem:
            raise PydanticCustomError("spec_rule", f"{problem} (it names the run folder)")
        return v

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        if not v.strip() or control_characters(v):
            raise PydanticCustomError("spec_rule", "must be a folder for run directories (no newlines or other "
                                      "control characters)")
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
            # The usual way here is shrinking a spec with --set training.max_epochs=N: say which
            # --set to add rather than adjusting the grace period silently.
            err.add("scheduler.grace_period", f"must be <= {what} ({self.max_t}); got {sch.grace_period}; "
                    f"add --set scheduler.grace_period={max(1, self.max_t // 2)} (or raise {what})")
        min_lb = self.window.min_lookback
        for fam, space in self.model.families.items():
            if "factor" in space and space["factor"].bounds()[1] > min_lb:
                err.add(f"model.families.{fam}.factor", f"must be <= the shortest window.lookback ({min_lb})",
                        space["factor"].bounds()[1])
            elif "factor" in MODELS[fam].params and "factor" not in space and MODELS[fam].params["factor"].default > min_lb:
                err.add(f"model.families.{fam}", f"the default factor ({MODELS[fam].params['factor'].default}) "
                        f"must be <= the shortest window.lookback ({min_lb}); set factor", {})
        check_target(err, target=self.target, timeframes=self.data.timeframes)
        if self.search.algorithm == "grid":
            self._check_grid(err)
        check_points(err, points=self.search.points_to_evaluate, names=self.param_names(),
                     families=list(self.model.families), features=self.features)
        err.raise_if_any()
        if self.search.algorithm != "grid" and self.search.num_samples is None:
            self.search.num_samples = 10
        if (info.context or {}).get("files"):
            check_length(err, data=self.data, target=self.target, window=self.window, split=self.split,
                         features=self.features, groups=self.groups)
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
        out = {"window.lookback": self.window.lookback}
        out.update({f"training.{k}": getattr(self.training, k) for k in TRAINING_KEYS})
        return out

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
        size = grid_size(self)
        if size > GRID_LIMIT:
            err.add("search.algorithm", f"the grid has {size:,.0f} points per asset/timeframe, more than "
                    f"{GRID_LIMIT:,} can be enumerated; use optuna-tpe or random with search.num_samples", "grid")

    def param_names(self) -> dict[str, Dist | None]:
        """Optuna parameter names the define-by-run function can create → their distribution.

        ``None`` marks the indicator switches ``ind.<member>`` (true/false in a point; the
        searcher turns them into priorities, see :mod:`search_spaces.space`) and ``family``;
        ``ind.size`` (the subset size) exists when the size bounds allow more than one.
        """
        names: dict[str, Dist | None] = {"family": None, "lookback": self.window.lookback}
        lo, hi = self.features.size_range()
        if lo < hi:
            names["ind.size"] = Dist("randint", low=lo, high=hi)
        names.update({k: getattr(self.training, k) for k in TRAINING_KEYS})
        for fam, space in self.model.families.items():
            names.update({f"{fam}.{k}": d for k, d in space.items()})
        for m in self.features.pool:
            if m.key not in self.features.always:
                names[f"ind.{m.key}"] = None
            for p in m.searched:
                names[f"ind.{m.key}.{p}"] = Dist("choice", tuple(sorted({dict(v)[p] for v in m.variants})))
        return names

    @property
    def groups(self) -> list[tuple[str, str]]:
        """Every (asset, timeframe) the sweep covers, in spec order."""
        return [(a, tf) for a in self.data.assets for tf in self.data.timeframes]

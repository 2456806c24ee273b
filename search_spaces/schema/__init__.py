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

Modules, bottom to top: ``_base`` (error collector, strict scalar types, base section),
``inventory`` (which candle file serves a group, how many candles it has), ``sections``
(data, target, split, window), ``features`` (the indicator pool), ``model_sections``
(model, training, search, scheduler, resources), ``report_section`` (report),
``grid`` (grid size arithmetic),
``rules`` (cross-section rules) and ``spec`` (the root :class:`Spec`).
"""

from __future__ import annotations

from search_spaces.schema.features import FeaturesSection
from search_spaces.schema.grid import GRID_LIMIT, grid_size
from search_spaces.schema.inventory import Extent, candle_source, data_extent
from search_spaces.schema.model_sections import (
    LOSSES,
    OPTIMIZERS,
    ModelSection,
    ResourcesSection,
    SchedulerSection,
    SearchSection,
    TrainingSection,
)
from search_spaces.schema.report_section import DEFAULT_ALPHA, ReportOnly, ReportSection
from search_spaces.schema.rules import MIN_SAMPLES
from search_spaces.schema.sections import (
    ASSET_PATTERN,
    DataSection,
    SplitSection,
    TargetSection,
    WindowSection,
)
from search_spaces.schema.spec import Spec

__all__ = [
    "ASSET_PATTERN",
    "DEFAULT_ALPHA",
    "GRID_LIMIT",
    "LOSSES",
    "MIN_SAMPLES",
    "OPTIMIZERS",
    "DataSection",
    "Extent",
    "FeaturesSection",
    "ModelSection",
    "ReportOnly",
    "ReportSection",
    "ResourcesSection",
    "SchedulerSection",
    "SearchSection",
    "Spec",
    "SplitSection",
    "TargetSection",
    "TrainingSection",
    "WindowSection",
    "candle_source",
    "data_extent",
    "grid_size",
]

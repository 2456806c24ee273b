"""Grid arithmetic: how many points the grid of one group holds, counted without enumerating it.

This sits below both users of the count: the root :class:`~search_spaces.schema.Spec`
refuses grids larger than :data:`GRID_LIMIT` while validating, and
:mod:`search_spaces.space` sizes and samples the grid it enumerates. Keeping it here lets
``space`` import the schema without the schema ever importing ``space``.
"""

from __future__ import annotations

import math
from typing import Protocol

from search_spaces.schema.features import FeaturesSection
from search_spaces.schema.model_sections import ModelSection, TrainingSection
from search_spaces.schema.sections import WindowSection
from trainables.trial.config import TRAINING_KEYS

#: Largest grid (points per asset/timeframe) that ``search.algorithm: grid`` will enumerate.
GRID_LIMIT = 100_000


class GridSections(Protocol):
    """The sections a grid is made of (a :class:`~search_spaces.schema.Spec` has them all)."""

    @property
    def window(self) -> WindowSection: ...

    @property
    def training(self) -> TrainingSection: ...

    @property
    def model(self) -> ModelSection: ...

    @property
    def features(self) -> FeaturesSection: ...


def subset_points(features: FeaturesSection) -> float:
    """Indicator dimension of the grid: subsets × the searched parameter values of their members."""
    f = features
    always = [m for m in f.pool if m.key in f.always]
    free = [m for m in f.pool if m.key not in f.always]
    w_always = math.prod(len(m.variants) if m.searched else 1 for m in always)
    # Elementary symmetric sums of the free members' weights: e[k] = Σ over k-subsets of Π weights.
    e = [1.0] + [0.0] * len(free)
    for m in free:
        w = len(m.variants) if m.searched else 1
        for k in range(len(free), 0, -1):
            e[k] += e[k - 1] * w
    lo = max(f.lower - len(always), 0)
    return w_always * sum(e[k] for k in range(lo, f.upper - len(always) + 1))


def grid_size(spec: GridSections) -> float:
    """Points in the full grid of one group (``inf`` if any dimension is continuous)."""
    common = spec.window.lookback.size() * math.prod(getattr(spec.training, k).size() for k in TRAINING_KEYS)
    per_sub = subset_points(spec.features)
    return sum(math.prod(d.size() for d in space.values()) * common * per_sub
               for space in spec.model.families.values())

"""From a validated spec to the data recipes of its groups (the input of the one pipeline).

A spec describes every (asset, timeframe) group at once; :mod:`trainables.pipeline`
builds one group from a :class:`~trainables.pipeline.DataRecipe`. This module is the
only translation between the two, so the sweep, ``resume`` and ``confirm`` cannot build a
group differently.
"""

from __future__ import annotations

from pathlib import Path

from search_spaces.schema import Spec
from trainables.features.dataset import Prepared, Split
from trainables.pipeline import DataRecipe
from trainables.pipeline import prepare_groups as _prepare


def split_of(spec: Spec) -> Split:
    """The spec's split (fractions or dates) as the dataset builder takes it."""
    sp = spec.split
    if sp.val_start is not None and sp.test_start is not None:
        return Split(val_start=sp.val_start, test_start=sp.test_start)
    return Split(float(sp.train or 0.7), float(sp.val or 0.15), float(sp.test or 0.15))


def data_recipes(spec: Spec) -> list[DataRecipe]:
    """One recipe per (asset, timeframe) group of the spec, in the spec's group order."""
    d = spec.data
    split = split_of(spec)
    out = []
    for asset, tf in spec.groups:
        out.append(DataRecipe(
            asset=asset, timeframe=tf, pool=tuple(spec.features.pool), target=spec.target.kind,
            horizon=spec.target.horizon, max_lookback=spec.window.max_lookback, split=split,
            path=None if d.path is None else Path(d.path),
            start=None if d.start is None else str(d.start), end=None if d.end is None else str(d.end),
            gap_policy=d.gap_policy, ffill_limit=d.ffill_limit,
            funding_file=d.funding_file(asset), metric_files=tuple(d.metric_files(asset))))
    return out


def prepare_groups(spec: Spec) -> dict[str, Prepared]:
    """Load candles and compute the full indicator pool once per (asset, timeframe) of ``spec``.

    Raises:
        DataError: a candle or table file breaks a rule (before anything is written).
    """
    return _prepare(data_recipes(spec))

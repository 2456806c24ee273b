"""The one feature pipeline: a :class:`DataRecipe` in, one prepared (asset, timeframe) group out.

Everything that trains or predicts builds its data here: the sweep, ``resume``,
``confirm`` and the forecast of an exported winner. A recipe holds *everything* the
pipeline reads (candle folder and resampling, date range, gap policy, funding and metric
tables, indicator pool, target, horizon, window bound, split), so a group can be rebuilt
exactly from a recipe recorded next to a model, without the spec that produced it.

Order of the steps, and why:
1. candles (native file, or resampled from the finest native timeframe that divides it);
2. the date range ``[start, end)``, cut on candle open times before anything is fitted;
3. gap filling (``ffill``: short holes become flat candles; see :func:`fill_gaps`);
4. funding/metric tables joined as of each candle's close (only values published by then);
5. indicators, target and the chronological split (:func:`prepare`): scalers and
   indicator warm-ups see the training span only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from trainables.data.candles import Candles, fill_gaps, load_candles
from trainables.features.dataset import Prepared, Split, prepare
from trainables.features.indicators import PoolMember
from trainables.features.table_indicators import attach_metrics
from trainables.features.targets import TARGETS


@dataclasses.dataclass(frozen=True)
class DataRecipe:
    """Everything needed to build one group's samples, and nothing that a trial chooses.

    Attributes:
        asset: e.g. ``BTC-USDT``.
        timeframe: e.g. ``1d``.
        path: the candle folder (None: the embedded data).
        start: first candle open time kept (UTC date, inclusive), or None.
        end: candles opening at or after this are dropped (exclusive), or None.
        gap_policy: ``drop_windows`` (samples whose window spans a hole are dropped) or
            ``ffill`` (holes of at most ``ffill_limit`` candles become flat candles first).
        ffill_limit: longest hole ``ffill`` fills, in candles.
        funding_file: the asset's funding-rate table, or None.
        metric_files: the asset's metric tables (joined as of each candle's close).
        pool: the indicator pool; every column of every member is computed once.
        target: a key of ``TARGETS``.
        horizon: candles ahead the label looks.
        max_lookback: the longest window any trial may use.
        split: where the sample timeline is cut.
    """

    asset: str
    timeframe: str
    pool: tuple[PoolMember, ...]
    target: str = "multiplier"
    horizon: int = 1
    max_lookback: int = 32
    split: Split = dataclasses.field(default_factory=Split)
    path: Path | None = None
    start: str | None = None
    end: str | None = None
    gap_policy: str = "drop_windows"
    ffill_limit: int = 3
    funding_file: Path | None = None
    metric_files: tuple[Path, ...] = ()

    @property
    def group(self) -> str:
        """``ASSET/TF``, the key of the group in a run."""
        return f"{self.asset}/{self.timeframe}"


def _with_frame(c: Candles, frame: pd.DataFrame) -> Candles:
    return dataclasses.replace(c, frame=frame)


def _cut_dates(c: Candles, start: str | None, end: str | None) -> Candles:
    """Keep candles opening in ``[start, end)`` (UTC)."""
    if not start and not end:
        return c
    f = c.frame
    keep = pd.Series(True, index=f.index)
    if start:
        keep &= f["timestamp"] >= pd.Timestamp(start, tz="UTC")
    if end:
        keep &= f["timestamp"] < pd.Timestamp(end, tz="UTC")
    return _with_frame(c, f[keep].reset_index(drop=True))


def prepare_group(recipe: DataRecipe) -> Prepared:
    """Build one group's prepared arrays from its recipe (the only way features are built).

    Raises:
        DataError: a candle or table file breaks a rule (one line naming file and row).
    """
    r = recipe
    candles = _cut_dates(load_candles(r.asset, r.timeframe, path=r.path), r.start, r.end)
    filled = 0
    if r.gap_policy == "ffill":
        frame, filled = fill_gaps(candles.frame, r.timeframe, limit=r.ffill_limit)
        candles = _with_frame(candles, frame)
    if r.funding_file is not None or r.metric_files:
        # Metrics join as of each candle's close, using only values published by then;
        # rows whose metric is missing or stale become NaN and prepare() drops them
        # for every trial of the group alike.
        candles = _with_frame(candles, attach_metrics(candles.frame, r.timeframe, funding_file=r.funding_file,
                                                      metric_files=list(r.metric_files)))
    # Realised-volatility targets read the asset's 1h candles (a 1h group is its own).
    intraday = (load_candles(r.asset, "1h", path=r.path).frame
                if TARGETS[r.target].needs_intraday and r.timeframe != "1h" else None)
    out = prepare(candles, list(r.pool), target=r.target, horizon=r.horizon, max_lookback=r.max_lookback,
                  split=r.split, intraday=intraday)
    out.meta["filled_candles"] = filled
    return out


def prepare_groups(recipes: Sequence[DataRecipe]) -> dict[str, Prepared]:
    """:func:`prepare_group` for each recipe, keyed by group (``ASSET/TF``)."""
    return {r.group: prepare_group(r) for r in recipes}

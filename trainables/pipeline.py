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
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainables.data.candles import TIMEFRAMES, Candles, fill_gaps, load_candles
from trainables.errors import RunError
from trainables.features.dataset import Prepared, Split, prepare
from trainables.features.indicators import PoolMember, compute_features
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (paths as strings, pool members and split spelled out)."""
        return {
            "asset": self.asset, "timeframe": self.timeframe,
            "pool": [{"key": m.key, "indicator": m.indicator, "variants": [dict(v) for v in m.variants],
                      "searched": list(m.searched)} for m in self.pool],
            "target": self.target, "horizon": self.horizon, "max_lookback": self.max_lookback,
            "split": {"train": self.split.train, "val": self.split.val, "test": self.split.test,
                      "val_start": _day(self.split.val_start), "test_start": _day(self.split.test_start)},
            "path": _str(self.path), "start": self.start, "end": self.end,
            "gap_policy": self.gap_policy, "ffill_limit": self.ffill_limit,
            "funding_file": _str(self.funding_file), "metric_files": [str(f) for f in self.metric_files],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataRecipe:
        """The recipe :meth:`to_dict` wrote.

        Raises:
            RunError: a key is missing, unknown or of the wrong kind (one line naming it).
        """
        if not isinstance(d, Mapping):
            raise RunError(f"recipe: expected a mapping; got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise RunError(f"recipe: unknown key {unknown[0]!r}")
        for key in ("asset", "timeframe", "pool"):
            if key not in d:
                raise RunError(f"recipe: missing key {key!r}")
        kw: dict[str, Any] = {}
        for key in ("asset", "timeframe", "target", "gap_policy"):
            if key in d:
                kw[key] = _want(d, key, str)
        for key in ("start", "end"):
            if key in d:
                kw[key] = _want(d, key, str, none=True)
        for key in ("horizon", "max_lookback", "ffill_limit"):
            if key in d:
                kw[key] = _want(d, key, int)
        for key in ("path", "funding_file"):
            if key in d:
                v = _want(d, key, str, none=True)
                kw[key] = None if v is None else Path(v)
        if "metric_files" in d:
            files = _want(d, "metric_files", list)
            kw["metric_files"] = tuple(Path(_want({"metric_files[]": f}, "metric_files[]", str)) for f in files)
        kw["pool"] = tuple(_member(m, i) for i, m in enumerate(_want(d, "pool", list)))
        if "split" in d:
            sp = _want(d, "split", dict)
            bad = sorted(set(sp) - {"train", "val", "test", "val_start", "test_start"})
            if bad:
                raise RunError(f"recipe: split: unknown key {bad[0]!r}")
            kw["split"] = Split(**{k: float(_want(sp, k, (int, float), where="split.")) for k in ("train", "val", "test")
                                   if k in sp},
                                **{k: _want(sp, k, str, none=True, where="split.") for k in ("val_start", "test_start")
                                   if k in sp})
        return cls(**kw)


def _str(p: Path | None) -> str | None:
    return None if p is None else str(p)


def _day(v: object) -> str | None:
    if v is None:
        return None
    return v.isoformat() if isinstance(v, (dt.date, pd.Timestamp)) else str(v)


def _want(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, none: bool = False,
          where: str = "") -> Any:
    """``d[key]`` if it is of ``kind`` (or None when allowed); else a one-line RunError."""
    v = d.get(key)
    if v is None and none:
        return None
    # bool is an int to Python, never to a recipe
    if not isinstance(v, kind) or (isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RunError(f"recipe: {where}{key}: expected {names}{' or null' if none else ''}; got {v!r}")
    return v


def _member(m: Any, i: int) -> PoolMember:
    where = f"pool[{i}]."
    if not isinstance(m, dict):
        raise RunError(f"recipe: pool[{i}]: expected a mapping; got {m!r}")
    bad = sorted(set(m) - {"key", "indicator", "variants", "searched"})
    if bad:
        raise RunError(f"recipe: {where}{bad[0]}: unknown key")
    variants = _want(m, "variants", list, where=where)
    for v in variants:
        if not isinstance(v, dict):
            raise RunError(f"recipe: {where}variants: expected mappings of parameters; got {v!r}")
    return PoolMember(key=_want(m, "key", str, where=where), indicator=_want(m, "indicator", str, where=where),
                      variants=tuple(tuple(v.items()) for v in variants),
                      searched=tuple(_want(m, "searched", list, where=where)) if "searched" in m else ())


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


def _group_candles(r: DataRecipe, candles: Candles | None) -> tuple[Candles, int]:
    """Steps 1-4: candles, date range, gap filling, tables; ``(candles, filled candles)``."""
    if candles is None:
        candles = load_candles(r.asset, r.timeframe, path=r.path)
    candles = _cut_dates(candles, r.start, r.end)
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
    return candles, filled


@dataclasses.dataclass(frozen=True)
class FeatureFrame:
    """Every row's features of one group, labels or not (what a forecast reads).

    Attributes:
        candles: the candles after the date range, gap filling and table joins.
        features: float32 ``[rows, columns]``, one row per candle of ``candles`` (warm-up
            rows included; they are NaN or not yet meaningful).
        columns: names of ``features``' columns.
        warmup: rows the indicators need before their values are used.
        filled: candles added by ``ffill``.
    """

    candles: Candles
    features: np.ndarray
    columns: list[str]
    warmup: int
    filled: int


def feature_frame(recipe: DataRecipe, *, candles: Candles | None = None) -> FeatureFrame:
    """The features of every candle of a recipe, including the last ones, whose labels lie
    in the future (:func:`prepare_group` keeps only labelled samples).

    Args:
        recipe: the group's recipe.
        candles: candles to use instead of reading the recipe's candle source (e.g. a
            forecast's own file, or candles cut at the forecast time); the recipe's date
            range, gap policy and tables still apply.

    Raises:
        DataError: a candle or table file breaks a rule.
    """
    c, filled = _group_candles(recipe, candles)
    feats, names, warm = compute_features(c.frame, list(recipe.pool))
    return FeatureFrame(c, feats, names, warm, filled)


def prepare_group(recipe: DataRecipe) -> Prepared:
    """Build one group's prepared arrays from its recipe (the only way features are built).

    Raises:
        DataError: a candle or table file breaks a rule (one line naming file and row).
    """
    r = recipe
    candles, filled = _group_candles(r, None)
    # Realised-volatility targets read the asset's 1h candles (a 1h group is its own).
    intraday = (load_candles(r.asset, "1h", path=r.path).frame
                if TARGETS[r.target].needs_intraday and r.timeframe != "1h" else None)
    out = prepare(candles, list(r.pool), target=r.target, horizon=r.horizon, max_lookback=r.max_lookback,
                  split=r.split, intraday=intraday)
    out.meta["filled_candles"] = filled
    return out


def prepare_refit(recipe: DataRecipe, *, path: Path | None = None, through: dt.datetime | None = None) -> Prepared:
    """The group with *every* labelled sample as training (a production refit).

    The recipe's date range and split give way: the data run from ``start`` through the
    last candle complete at ``through`` (default: now), and no sample is held out
    (:meth:`Split.everything`), so the last training sample is the last candle whose
    target is known. Features, gap policy and tables are the recipe's, as in training.

    Args:
        recipe: the group's recipe (as recorded at export).
        path: a candle folder to read instead of the recipe's (newer candles).
        through: candles not complete at this UTC time are left out.

    Raises:
        DataError: a candle or table file breaks a rule.
        TunefactoryError: fewer than 10 usable samples.
    """
    step = TIMEFRAMES[recipe.timeframe]
    now = pd.Timestamp(through if through is not None else dt.datetime.now(dt.timezone.utc))
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    # ``end`` is exclusive on open times: a candle opening at now - step closes at now.
    end = (now - step + pd.Timedelta(microseconds=1)).tz_localize(None).isoformat()
    return prepare_group(dataclasses.replace(recipe, split=Split.everything(), end=end,
                                             path=path if path is not None else recipe.path))


def prepare_groups(recipes: Sequence[DataRecipe]) -> dict[str, Prepared]:
    """:func:`prepare_group` for each recipe, keyed by group (``ASSET/TF``)."""
    return {r.group: prepare_group(r) for r in recipes}

"""Cross-section rules: checks that relate two or more sections of a spec.

Each rule is a function of the sections it relates (passed by keyword, so what a rule
depends on is visible at the call) and records its problems in an
:class:`~search_spaces.schema._base.Errors` at the keys the user must change. The root
:class:`~search_spaces.schema.Spec` calls them from its own validator; :func:`check_length`
only runs when validation reads the candle files (``context={"files": True}``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from search_spaces.distributions import Dist, did_you_mean
from search_spaces.schema._base import Errors
from search_spaces.schema.features import FeaturesSection
from search_spaces.schema.inventory import data_extent, where
from search_spaces.schema.sections import DataSection, SplitSection, TargetSection, WindowSection
from trainables.data.candles import TIMEFRAMES, candle_file
from trainables.features.indicators import INDICATORS
from trainables.features.targets import TARGETS

#: Fewest samples a group needs once horizon, lookback and warm-up are taken off.
MIN_SAMPLES = 30


def check_target(err: Errors, *, target: TargetSection, timeframes: Sequence[str]) -> None:
    """Rules of particular targets (realised volatility needs at least two hourly returns)."""
    tg = TARGETS[target.kind]
    if getattr(tg, "kind", "") != "volatility":
        return
    hour = TIMEFRAMES["1h"]
    for tf in timeframes:
        if target.horizon * (TIMEFRAMES[tf] // hour) < 2:
            err.add("target.horizon", f"{target.kind} on {tf} candles needs horizon >= 2 (e.g. 24 for "
                    "next-day volatility): the volatility of one hourly return is only its size",
                    target.horizon)
            return


def check_points(err: Errors, *, points: Sequence[Mapping[str, Any]], names: Mapping[str, Dist | None],
                 families: Sequence[str], features: FeaturesSection) -> None:
    """``search.points_to_evaluate``: every key is a parameter and every value one it can take.

    The indicator switches of a point must fit the subset size: no more members switched
    on than ``ind.size`` (or ``max_size``) allows, and enough left that are not switched
    off to reach ``ind.size`` (or ``min_size``).

    Args:
        err: where problems are recorded.
        points: the points, as Optuna parameter dicts.
        names: every parameter name → its distribution (None for ``family`` and the
            indicator switches), as :meth:`~search_spaces.schema.Spec.param_names` gives.
        families: the spec's model families.
        features: the spec's features section (pool, size bounds, ``always``).
    """
    lo, hi = features.size_range()
    n_always, n_free = len(set(features.always)), len(features.free)
    for i, point in enumerate(points):
        loc = f"search.points_to_evaluate.{i}"
        switches = [v for k, v in point.items() if k.startswith("ind.") and k[4:] in features.free
                    and isinstance(v, bool)]
        size = point.get("ind.size")
        top = size if isinstance(size, int) and lo <= size <= hi else hi
        bottom = size if isinstance(size, int) and lo <= size <= hi else lo
        on, off = n_always + sum(switches), n_always + n_free - (len(switches) - sum(switches))
        if on > top:
            what = f"ind.size ({size})" if top == size else f"features.max_size ({hi})"
            err.add(loc, f"switches on {on} indicators (always-on ones included), more than {what} allows",
                    dict(point))
        elif off < bottom:
            what = f"ind.size ({size})" if bottom == size else f"features.min_size ({lo})"
            err.add(loc, f"switches off so many indicators that {off} remain, fewer than {what} needs",
                    dict(point))
        for k, v in point.items():
            if k not in names:
                err.add(f"{loc}.{k}", f"unknown parameter{did_you_mean(k, names)}; parameters: "
                        f"{', '.join(sorted(names))}", v)
                continue
            d = names[k]
            if k == "family":
                if v not in families:
                    err.add(f"{loc}.{k}", f"must be one of the spec's families ({', '.join(families)})", v)
            elif d is None:
                if not isinstance(v, bool):
                    err.add(f"{loc}.{k}", "indicator switches are true or false", v)
            elif not d.contains(v):
                err.add(f"{loc}.{k}", f"is not a value of {d.describe()}", v)


def check_length(err: Errors, *, data: DataSection, target: TargetSection, window: WindowSection,
                 split: SplitSection, features: FeaturesSection, groups: Sequence[tuple[str, str]]) -> None:
    """Horizon, lookback, warm-up and split dates against the candles on disk.

    Args:
        err: where problems are recorded.
        data, target, window, split, features: the spec's sections.
        groups: every (asset, timeframe) of the sweep, in spec order.
    """
    d = data
    warm, warm_item = 0, None
    for m in features.pool:
        for v in m.variants:
            w = int(INDICATORS[m.indicator].warmup(dict(v)))
            if w > warm:
                warm, warm_item = w, {m.indicator: dict(v)} if v else m.indicator
    if getattr(TARGETS[target.kind], "needs_intraday", False):
        for i, a in enumerate(d.assets):
            if any(tf != "1h" for tf in d.timeframes) and candle_file(d.directory, a, "1h") is None:
                err.add(("data", "assets", i), f"target {target.kind} is computed from 1h candles, and "
                        f"there is no {a}_1h.csv[.gz] {where(d.path)}", a)
    lb, h = window.max_lookback, target.horizon
    fr = split.fractions()
    need = max(MIN_SAMPLES, math.ceil(10 / min(fr))) if fr else MIN_SAMPLES
    reported: set[str] = set()
    for a, tf in groups:
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
        if split.by_dates and n:
            for key in ("val_start", "test_start"):
                day = getattr(split, key)
                t = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
                if not lo < t <= hi and key not in reported:
                    err.add(f"split.{key}", f"must fall inside the data, after its first candle: {span}", day)
                    reported.add(key)

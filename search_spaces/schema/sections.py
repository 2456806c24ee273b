"""Where the data comes from and how it is cut: the ``data``, ``target``, ``split`` and ``window`` sections.

``data`` names the candles (assets × timeframes, a folder or the embedded set, a date
range, gap policy, extra funding and metric tables); validated with
``context={"files": True}`` it is also checked against those files (see
:mod:`search_spaces.schema.inventory`). ``target`` is what a trial predicts, ``split`` the
chronological train / validation / test spans, ``window`` the searchable input length.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from search_spaces.distributions import Dist, did_you_mean
from search_spaces.schema._base import Day, Errors, Float, Int, Section, searchable
from search_spaces.schema.inventory import candle_source, data_extent, where
from trainables.data.candles import EMBEDDED_DIR, EMBEDDED_FUNDING_DIR, TIMEFRAMES, available
from trainables.features.targets import TARGETS

#: What an asset name looks like: ``BASE-QUOTE`` in capitals (``BTC-USDT``).
ASSET_PATTERN = r"^[A-Z0-9]{2,15}-[A-Z0-9]{2,10}$"


def _check_placeholders(path: str) -> None:
    """Only ``{asset}`` and ``{base}`` may appear in a table path (``str.format`` fills them later)."""
    import string

    try:
        names = [f for _, f, _, _ in string.Formatter().parse(path) if f is not None]
    except ValueError:
        raise ValueError("unbalanced { or } in the path; only {asset} and {base} are placeholders "
                         "(write {{ and }} for literal braces)") from None
    bad = [n for n in names if n not in ("asset", "base")]
    if bad:
        raise ValueError(f"unknown placeholder {{{bad[0]}}}; only {{asset}} and {{base}} are replaced")


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
    #: ``trainables/data/embedded/funding/<ASSET>_perp_funding_rate_8h.csv``; or a file path with ``{asset}``).
    funding: bool | str = False
    #: Wide metric tables (``timestamp`` + one column per metric, Glassnode style), one path
    #: per entry; ``{asset}`` and ``{base}`` (e.g. ``BTC``) are replaced per asset.
    metrics: list[str] = Field(default_factory=list)

    @field_validator("funding")
    @classmethod
    def _funding_placeholders(cls, v: bool | str) -> bool | str:
        if isinstance(v, str):
            _check_placeholders(v)
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics_placeholders(cls, v: list[str]) -> list[str]:
        for m in v:
            _check_placeholders(m)
        return v

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
        place = where(self.path)
        firsts: list[dt.datetime] = []
        lasts: list[dt.datetime] = []
        for i, a in enumerate(self.assets):
            if a not in have:
                listed = ", ".join(have) or "none"
                err.add(("assets", i), f"no candle file for this asset {place}{did_you_mean(a, have)}; "
                        f"available: {listed}", a)
                continue
            for j, tf in enumerate(self.timeframes):
                ext = data_extent(d, a, tf)
                if candle_source(d, a, tf) is None:
                    err.add(("timeframes", j), f"no {a} candles at {tf} or at a finer timeframe that divides it "
                            f"{place} (files: {a} {', '.join(have[a])})", tf)
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
        return searchable(v, kind=int, low=1, high=4096)

    @property
    def max_lookback(self) -> int:
        return int(self.lookback.bounds()[1])

    @property
    def min_lookback(self) -> int:
        return int(self.lookback.bounds()[0])

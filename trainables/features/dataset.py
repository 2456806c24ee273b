"""One (asset, timeframe) prepared once per sweep: features, labels, chronological split.

The expensive, trial-independent work happens here, in the driver, once: loading candles,
computing every indicator of the pool, labels, the split and the gap mask. The result is a
:class:`Prepared` of plain numpy arrays that reaches trials through Ray's object store.
A trial then only selects columns, fits its scaler on its training rows and cuts windows.

Alignment: sample ``t`` is "the forecast made at the close of candle t". Its input window
is feature rows ``t-L+1 .. t`` and its label looks ``h`` candles ahead. Samples are split
chronologically by ``t``; the last ``h`` samples before each boundary are purged so that no
training label overlaps the validation span (and no validation label the test span).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from trainables.data.candles import TIMEFRAMES, Candles
from trainables.errors import TunefactoryError
from trainables.features.indicators import PoolMember, compute_features
from trainables.features.targets import TARGETS, TargetContext, candles_per_day


@dataclass(frozen=True)
class Split:
    """Where the sample timeline is cut: fractions, or dates (candle open times, UTC).

    With ``val_start``/``test_start`` set, a sample belongs to validation from the first
    candle at or after ``val_start`` and to test from ``test_start``; the fractions are
    then ignored.
    """

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    val_start: object | None = None
    test_start: object | None = None

    @classmethod
    def everything(cls) -> Split:
        """Every labelled sample is training (a production refit: no validation, no test)."""
        return cls(train=1.0, val=0.0, test=0.0)

    @property
    def is_everything(self) -> bool:
        """True for :meth:`everything`: validation and test are deliberately empty."""
        return self.val_start is None and self.test_start is None and self.val == 0 and self.test == 0


@dataclass
class Prepared:
    """Trial-independent arrays of one (asset, timeframe).

    Attributes:
        asset, timeframe, target, horizon: what this is.
        timestamps: candle open times (int64 ns UTC) of the rows after warm-up.
        close: close prices of those rows.
        features: float32 ``[rows, columns]`` — every column of the pool.
        columns: names of ``features``' columns.
        y: float64 label per row (NaN where unavailable).
        persistence: the persistence forecast per row (known at the row's close).
        train_idx, val_idx, test_idx: sample rows of each span (ascending).
        max_lookback: the longest window any trial may use (gap mask is built for it).
        gaps_dropped: samples dropped because their window or label spans a gap.
        ret: realised return ``close[t+h] / close[t] - 1`` per row (NaN where t+h is
            beyond the data); a label-side quantity (looks ahead), used by the price
            baselines; never by a forecast or a predicted label. None only in hand-built instances.
        har_day: volatility targets only: the target's own measure over the last day,
            candles ``t-d+1 .. t`` with ``d`` = candles per day (the persistence forecast
            at horizon ``d``: annualised realised volatility from 1h returns, ``** 1/4``
            for ``volatility_q``); known at the close of candle t. The HAR-RV baseline's
            daily regressor (its weekly and monthly ones are averages of it). None otherwise.
    """

    asset: str
    timeframe: str
    target: str
    horizon: int
    timestamps: np.ndarray
    close: np.ndarray
    features: np.ndarray
    columns: list[str]
    y: np.ndarray
    persistence: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    max_lookback: int
    gaps_dropped: int = 0
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)
    ret: np.ndarray | None = None
    har_day: np.ndarray | None = None

    @property
    def group(self) -> str:
        return f"{self.asset}/{self.timeframe}"

    def column_index(self, names: Sequence[str]) -> np.ndarray:
        """Positions of ``names`` in :attr:`columns` (KeyError naming the missing one)."""
        pos = {c: i for i, c in enumerate(self.columns)}
        return np.array([pos[n] for n in names], dtype=np.int64)

    def span(self, idx: np.ndarray) -> tuple[str, str]:
        """First and last candle timestamp (ISO) of a sample span."""
        ts = self.timestamps[idx[[0, -1]]].astype("datetime64[ns]")
        return (np.datetime_as_string(ts[0], unit="m") + "Z", np.datetime_as_string(ts[1], unit="m") + "Z")


def prepare(candles: Candles, members: Sequence[PoolMember], *, target: str = "multiplier",
            horizon: int = 1, max_lookback: int = 32, split: Split | None = None,
            intraday: Candles | pd.DataFrame | None = None) -> Prepared:
    """Build the :class:`Prepared` arrays for one (asset, timeframe).

    Args:
        candles: validated candles.
        members: the indicator pool (every column is computed once here).
        target: key of :data:`trainables.features.targets.TARGETS`.
        horizon: candles ahead the label looks.
        max_lookback: longest window in the search space; samples whose window of this
            length (or whose label) would span a gap in the candles are dropped, so every
            trial of the group sees exactly the same validation and test samples.
        split: chronological fractions.
        intraday: the asset's 1h candles, for targets that need them (``volatility``,
            ``volatility_q`` on timeframes coarser than 1h); ignored by the others.

    Raises:
        TunefactoryError: when the data is too short for the split, horizon and lookback,
            or a target's inputs are missing.
    """
    split = split or Split()
    frame = candles.frame
    feats, names, warm = compute_features(frame, members)
    close_all = frame["close"].to_numpy(dtype=np.float64)
    ts_all = frame["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    tg = TARGETS[target]
    hourly = intraday.frame if isinstance(intraday, Candles) else intraday
    ctx = TargetContext(close_all, horizon, ts_all, candles.timeframe, hourly if tg.needs_intraday else None)
    y_all = tg.label(ctx)
    persist_all = tg.persistence(ctx)
    ahead = np.full(len(close_all), np.nan)
    ahead[: len(close_all) - horizon] = close_all[horizon:]
    ret_all = ahead / close_all - 1.0
    # HAR-RV's daily regressor: the same measure as the target over the last day (known at t).
    day_all = (tg.persistence(replace(ctx, horizon=candles_per_day(candles.timeframe)))
               if tg.kind == "volatility" else None)

    # Drop indicator warm-up rows: the same rows for every trial (depends on the pool only).
    sl = slice(warm, None)
    feats, close, y, persist, ts = feats[sl], close_all[sl], y_all[sl], persist_all[sl], ts_all[sl]
    ret = ret_all[sl]
    n = len(ts)
    step = TIMEFRAMES[candles.timeframe].value
    # breaks[i] = number of gaps between row 0 and row i. A span a..b is gap-free iff
    # breaks[b] == breaks[a].
    breaks = np.concatenate([[0], np.cumsum(np.diff(ts) != step)])
    t = np.arange(n)
    first = t - (max_lookback - 1)
    last = t + horizon
    ok = (first >= 0) & (last < n)
    ok[ok] &= breaks[last[ok]] == breaks[first[ok]]
    # A sample needs its label and its persistence forecast (e.g. missing 1h candles make
    # a realised volatility undefined), so every baseline is scored on the same samples.
    ok &= np.isfinite(y) & np.isfinite(persist) & np.isfinite(feats).all(axis=1)
    # Rows needed by a window must be finite too (NaN features mid-series: metric gaps).
    bad_row = ~np.isfinite(feats).all(axis=1)
    if bad_row.any():
        bad_cum = np.concatenate([[0], np.cumsum(bad_row)])
        ok[ok] &= bad_cum[t[ok] + 1] == bad_cum[np.maximum(first[ok], 0)]
    gaps_dropped = int(((first >= 0) & (last < n) & (breaks[np.minimum(last, n - 1)] != breaks[np.maximum(first, 0)])).sum())
    samples = np.flatnonzero(ok)
    if len(samples) < 30:
        raise TunefactoryError(
            f"{candles.asset} {candles.timeframe}: only {len(samples)} usable samples after warm-up "
            f"({warm} rows), lookback {max_lookback} and horizon {horizon}; need at least 30 — use more "
            "data, a shorter lookback or a shorter horizon")
    n_s = len(samples)
    if split.val_start is not None and split.test_start is not None:
        cut = [pd.Timestamp(x, tz="UTC").value for x in (split.val_start, split.test_start)]
        a, b = (int(np.searchsorted(ts[samples], c, side="left")) for c in cut)
    else:
        a = round(n_s * split.train)
        b = round(n_s * (split.train + split.val))
    tr, va, te = samples[:a], samples[a:b], samples[b:]
    # Purge: labels of the last h samples before a boundary look into the next span.
    if len(va):
        tr = tr[tr + horizon <= va[0]]
    if len(te):
        va = va[va + horizon <= te[0]]
    spans = (("train", tr),) if split.is_everything else (("train", tr), ("validation", va), ("test", te))
    for nm, arr in spans:
        if len(arr) < 10:
            raise TunefactoryError(
                f"{candles.asset} {candles.timeframe}: the {nm} span has {len(arr)} samples; need at least 10 "
                f"— change split fractions or use more data ({n_s} usable samples)")
    return Prepared(candles.asset, candles.timeframe, target, horizon, ts, close, feats, names, y, persist,
                    tr, va, te, max_lookback, gaps_dropped, str(candles.source),
                    {"warmup_rows": warm, "resampled_from": candles.resampled_from,
                     "gaps": candles.gaps.summary()}, ret, None if day_all is None else day_all[sl])


@dataclass
class Scaler:
    """Per-column standardisation fitted on training rows only (no look-ahead)."""

    mean: np.ndarray
    std: np.ndarray
    y_mean: float
    y_std: float

    def to_json(self) -> dict[str, object]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "y_mean": self.y_mean, "y_std": self.y_std}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Scaler:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32),
                   float(d["y_mean"]), float(d["y_std"]))  # type: ignore[arg-type]


def fit_scaler(p: Prepared, cols: np.ndarray) -> Scaler:
    """Fit feature and label scalers on the training span only.

    Feature statistics use rows up to the last training sample (the rows training windows
    read); label statistics use training labels. Validation and test rows never enter.
    """
    last = int(p.train_idx[-1])
    x = p.features[: last + 1, cols].astype(np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-12] = 1.0  # constant column: leave it centred rather than divide by ~0
    yt = p.y[p.train_idx]
    y_std = float(yt.std()) or 1.0
    return Scaler(mean.astype(np.float32), std.astype(np.float32), float(yt.mean()), y_std)


def windows(p: Prepared, cols: np.ndarray, idx: np.ndarray, lookback: int, scaler: Scaler) -> np.ndarray:
    """Scaled input windows ``[len(idx), lookback, len(cols)]`` ending at each sample row.

    Vectorised: a strided view over the feature rows, then one fancy-index gather.
    """
    if lookback > p.max_lookback:
        raise TunefactoryError(f"lookback {lookback} exceeds the prepared maximum {p.max_lookback}")
    x = (p.features[:, cols] - scaler.mean) / scaler.std
    view = sliding_window_view(x, lookback, axis=0)  # [rows-L+1, cols, L]; window k ends at row k+L-1
    return np.ascontiguousarray(view[idx - lookback + 1].transpose(0, 2, 1), dtype=np.float32)


def labels(p: Prepared, idx: np.ndarray, scaler: Scaler) -> np.ndarray:
    """Standardised labels of the samples ``idx``."""
    return ((p.y[idx] - scaler.y_mean) / scaler.y_std).astype(np.float32)

"""Next-candle forecast from an exported winner, with features built exactly as in training.

The winner's folder holds its model, its scaler (fitted on its training span) and its
data recipe (``recipe.json``, a :class:`trainables.pipeline.DataRecipe`). Features are
rebuilt by the training pipeline itself (:func:`trainables.pipeline.feature_frame`): the
same candle source and resampling, the same ``data.start`` (EWM-based indicators depend on
where the series starts), the same gap policy and funding/metric tables, the whole
indicator pool computed once (every indicator is causal). Only ``data.end`` is lifted, so
newer candles count. The trial's columns are then standardised by the saved scaler and cut
into one window with :func:`trainables.features.dataset.windows`. A forecast of the
selection model (``--model selection``) made from candles up to ``t`` therefore equals its
test-span prediction for ``t`` (``selection/predictions.csv``).

By default the forecast uses the winner's production model (``production/``: the same
config refit on every labelled sample, with its own scaler), says which model it used and
how recent its training data are, and warns when they end more than ``max_age`` candles
before the candles it reads. A winner without one (older export, ``--no-refit``) uses the
selection model and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.registry.winners import WINNER_HINT, Winner, load_winner, read_recipe
from trainables.data.candles import TIMEFRAMES, Candles, gap_report, load_candles, read_candles, resample
from trainables.errors import DataError, RunError
from trainables.features.dataset import Prepared, Scaler, windows
from trainables.features.targets import TARGETS
from trainables.pipeline import DataRecipe, feature_frame
from trainables.records import read_json
from trainables.run_files import ScalerFile

# Keras is imported by ``load_model`` on first call, not by this import: keras_runtime
# itself only needs numpy at import time.
from trainables.trial.keras_runtime import load_model, predict_eager


@dataclass(frozen=True)
class Forecast:
    """One next-candle forecast.

    Attributes:
        asset, timeframe, target, horizon: what was forecast.
        last_open: open time of the last complete candle used (the forecast is made at its close).
        made_at: close time of that candle.
        applies_open, applies_close: the candle whose close is forecast (``horizon`` ahead).
        last_close: close price of the last candle.
        value: the model's output in target units (``unit``).
        multiplier: forecast ``close[t+h] / close[t]`` (None for volatility targets).
        price: forecast close price (None for volatility targets).
        dropped_open: open time of an in-progress candle that was left out, if any.
        winner: the winner's metrics (trial id, run, test skill...).
        model: ``production`` (refit on all labelled data) or ``selection`` (the scored model).
        trained_through: open time of the last candle whose target that model learned from.
        notes: which model and why, and an age warning when its training ended long before
            the data it forecasts from.
    """

    asset: str
    timeframe: str
    target: str
    horizon: int
    last_open: pd.Timestamp
    made_at: pd.Timestamp
    applies_open: pd.Timestamp
    applies_close: pd.Timestamp
    last_close: float
    value: float
    unit: str
    multiplier: float | None
    price: float | None
    dropped_open: pd.Timestamp | None
    winner: dict[str, Any]
    model: str = "selection"
    trained_through: pd.Timestamp | None = None
    notes: tuple[str, ...] = ()

    @property
    def ret(self) -> float | None:
        """Forecast simple return ``multiplier - 1`` (None for volatility targets)."""
        return None if self.multiplier is None else self.multiplier - 1.0

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        f = "%Y-%m-%dT%H:%MZ"
        w = self.winner
        skill = w.get("test_skill")
        out = [
            f"{self.asset} {self.timeframe}: winner {w.get('family', '?')} trial {w.get('trial_id')} "
            f"(run {w.get('run_name', w.get('run'))}, test skill vs persistence "
            f"{skill * 100:+.2f}%)" if isinstance(skill, (int, float)) else
            f"{self.asset} {self.timeframe}: winner trial {w.get('trial_id')}",
            f"made at     {self.made_at:{f}} (close of the candle opened {self.last_open:{f}}, close "
            f"{self.last_close:.8g})",
            f"applies to  close of the candle opening {self.applies_open:{f}} (closes {self.applies_close:{f}})",
            f"model       {self.model}, trained through "
            + (f"{self.trained_through:{f}}" if self.trained_through is not None else "an unknown date"),
        ]
        out += list(self.notes)
        if self.target not in ("multiplier",):
            out.append(f"{self.target:<11} {self.value:.8g}  ({self.unit})")
        if self.multiplier is not None and self.price is not None:
            out += [f"multiplier  {self.multiplier:.6f}", f"return      {(self.multiplier - 1) * 100:+.4f}%",
                    f"price       {self.price:.8g}"]
        if self.dropped_open is not None:
            out.append(f"note: left out the in-progress candle opened {self.dropped_open:{f}}")
        if isinstance(skill, (int, float)) and skill <= 0:
            scored = "this model" if self.model == "selection" else "the selection model this one refits"
            out.append(f"warning: {scored} did not beat persistence (next close = last close) on its test span; "
                       "treat the forecast as noise")
        return out


def _recipe(winner: Winner) -> DataRecipe:
    """The group's data recipe recorded at export (``recipe.json``)."""
    f = winner.path / "recipe.json"
    if not f.exists():
        raise RunError(f"{winner.path}: no recipe.json (exported by an older tunefactory), so its features cannot "
                       "be rebuilt as in training; export the winner again")
    return read_recipe(f)


def _candles(recipe: DataRecipe, data: Path | None) -> Candles:
    """The candle source: ``data`` (a file or folder) or the one the run read."""
    asset, timeframe = recipe.asset, recipe.timeframe
    if data is None or not data.is_file():
        return load_candles(asset, timeframe, path=data if data is not None else recipe.path)
    stem_asset, _, stem_tf = data.name.split(".csv")[0].rpartition("_")
    if stem_tf in TIMEFRAMES and stem_asset and stem_asset != asset:
        raise DataError(f"{data}: holds {stem_asset} candles (by its name), not {asset}")
    file_tf = stem_tf if stem_tf in TIMEFRAMES else timeframe
    frame = read_candles(data, file_tf)
    if file_tf != timeframe:
        if TIMEFRAMES[file_tf] > TIMEFRAMES[timeframe]:
            raise DataError(f"{data}: holds {file_tf} candles; a {timeframe} forecast needs {timeframe} or finer")
        frame = resample(frame, file_tf, timeframe)
    return Candles(asset, timeframe, frame, data, file_tf if file_tf != timeframe else None,
                   gap_report(frame["timestamp"], timeframe))


def _utc(ts: pd.Timestamp | str | None) -> pd.Timestamp:
    if ts is None:
        return pd.Timestamp.now(tz="UTC")
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def forecast(asset: str, timeframe: str, *, registry: Path | str = "winners", data: Path | str | None = None,
             now: pd.Timestamp | str | None = None, model: str = "production", max_age: int = 30) -> Forecast:
    """Forecast the next candle of (asset, timeframe) with the registry's winner.

    Args:
        asset: e.g. ``BTC-USDT``.
        timeframe: e.g. ``1h``.
        registry: the winners folder (see :mod:`reports.registry.winners`).
        data: a candle file or a folder of candle files (default: where the run read them).
        now: the time to forecast at (default: the current UTC time). Candles that are not
            complete at ``now`` are left out, so a past ``now`` reproduces a past forecast.
        model: ``production`` (the refit on all labelled data; the selection model, with a
            note, when the winner has none) or ``selection`` (the scored model, whose
            test-span predictions are ``predictions.csv``).
        max_age: warn when the model's training ended more than this many candles before
            the last candle the forecast reads.

    Raises:
        RunError: no winner for (asset, timeframe) in the registry.
        DataError: the candles are invalid, too short for the winner's window, have a gap in
            it, or are stale (the candle the forecast would apply to has already closed).
    """
    if timeframe not in TIMEFRAMES:
        raise DataError(f"timeframe {timeframe!r} is not supported; allowed: {', '.join(TIMEFRAMES)}")
    if model not in ("production", "selection"):
        raise RunError(f"model {model!r}: use production or selection")
    winner = load_winner(registry, asset, timeframe)
    notes: list[str] = []
    model_dir = winner.selection_dir
    if model == "production":
        if winner.production_dir is None:
            notes.append("note: this winner has no production model (exported before refits, or with --no-refit); "
                         "using the selection model, trained on its training span only")
            model = "selection"
        else:
            model_dir = winner.production_dir
    through = winner.trained_through(model)
    trained_through = _utc(through) if through else None
    # The forecast reads candles up to `now`: the run's `end` must not cut newer ones off.
    recipe = replace(_recipe(winner), end=None)
    trial = winner.config.get("trial") or {}
    target, horizon = recipe.target, recipe.horizon
    lookback = int(trial["lookback"])
    columns = list(trial["columns"])
    step = TIMEFRAMES[timeframe]
    at = _utc(now)
    raw = _candles(recipe, Path(data) if data is not None else None)
    source, frame = raw.source, raw.frame

    # Only candles complete at `at`: an in-progress candle's close is not a close yet.
    complete = (frame["timestamp"] + step) <= at
    started = (frame["timestamp"] < at) & ~complete
    dropped = frame.loc[started, "timestamp"].iloc[-1] if started.any() else None
    try:
        ff = feature_frame(recipe, candles=replace(raw, frame=frame[complete].reset_index(drop=True)))
    except KeyError as e:
        raise DataError(f"{source}: the winner's indicators need column {e} that the candles lack") from None
    frame = ff.candles.frame
    since = f" since {recipe.start}" if recipe.start else ""
    if frame.empty:
        raise DataError(f"{source}: no complete {timeframe} candle{since} at {at:%Y-%m-%dT%H:%MZ}")
    last_open = frame["timestamp"].iloc[-1]
    made_at = last_open + step
    if at >= made_at + step:
        raise DataError(
            f"{source}: stale data: the latest complete {timeframe} candle closed at {made_at:%Y-%m-%dT%H:%MZ}, "
            f"but it is {at:%Y-%m-%dT%H:%MZ}, so the candle a forecast would apply to has already closed; "
            "fetch newer candles (or pass --at to forecast as of an earlier time)")
    feats, names, warm = ff.features, ff.columns, ff.warmup
    missing = [c for c in columns if c not in names]
    if missing:
        raise RunError(f"{winner.path}: the model uses {', '.join(missing)}, which the recorded pool does not "
                       "produce; export the winner again")
    need = warm + lookback
    if len(frame) < need:
        raise DataError(
            f"{source}: too short: {len(frame)} complete {timeframe} candles up to {last_open:%Y-%m-%dT%H:%MZ}"
            f"{since}; the winner needs at least {need} ({warm} indicator warm-up + a {lookback}-candle window)")
    ns = frame["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    window_ns = ns[-lookback:]
    gaps = np.flatnonzero(np.diff(window_ns) != step.value)
    if len(gaps):
        g = pd.Timestamp(int(window_ns[gaps[0]]), unit="ns", tz="UTC")
        fill = (f" (gap_policy ffill fills holes of at most {recipe.ffill_limit})" if recipe.gap_policy == "ffill"
                else "")
        raise DataError(f"{source}: gap after the candle opened {g:%Y-%m-%dT%H:%MZ} inside the last {lookback} "
                        f"candles the model reads{fill}; fill the missing candles (fetch them again)")
    scaler_file = model_dir / "scaler.json"
    sj = read_json(scaler_file, ScalerFile, hint=WINNER_HINT)
    if not len(sj["mean"]) == len(sj["std"]) == len(columns):
        raise RunError(f"{scaler_file}: mean/std hold {len(sj['mean'])}/{len(sj['std'])} values; the model reads "
                       f"{len(columns)} columns; {WINNER_HINT}")
    scaler = Scaler.from_json(sj)
    pos = {c: i for i, c in enumerate(names)}
    cols = np.array([pos[c] for c in columns], dtype=np.int64)
    if not np.isfinite(feats[-lookback:, cols]).all():
        raise DataError(f"{source}: an indicator is undefined (NaN) inside the last {lookback} candles"
                        f"{' (a funding/metric value missing or stale there?)' if recipe.funding_file or recipe.metric_files else ''}")

    n = len(frame)
    close = frame["close"].to_numpy(dtype=np.float64)
    empty = np.zeros(0, dtype=np.int64)
    # A Prepared of the latest rows, so the window is cut by the training code itself.
    prepared = Prepared(asset, timeframe, target, horizon, ns, close, feats, names, np.full(n, np.nan), np.full(n, np.nan), empty, empty,
                        empty, lookback)
    x = windows(prepared, cols, np.array([n - 1]), lookback, scaler)
    net = load_model(model_dir / "model.keras")
    z = float(predict_eager(net, x)[0])  # the forward pass training used for its test predictions
    value = z * scaler.y_std + scaler.y_mean

    tg = TARGETS.get(target)
    if tg is None:
        raise RunError(f"{winner.path}: unknown target {target!r}; export it again with this tunefactory")
    if not math.isfinite(value):
        raise RunError(f"{winner.path}: the model produced a non-finite forecast ({value})")
    price = multiplier = None
    if tg.to_price is not None:  # volatility targets say nothing about the price
        price = float(tg.to_price(np.array([value]), np.array([close[-1]]))[0])
        multiplier = price / float(close[-1])
    info = {**{k: winner.metrics.get(k) for k in ("trial_id", "run", "run_name", "test_skill", "test_rmse",
                                                   "val_rmse_best")}, "family": trial.get("family")}
    if trained_through is not None and last_open - trained_through > max_age * step:
        age = int((last_open - trained_through) / step)
        notes.append(f"warning: the {model} model learned from candles through {trained_through:%Y-%m-%dT%H:%MZ}, "
                     f"{age} candles before the last candle used ({last_open:%Y-%m-%dT%H:%MZ}; more than "
                     f"{max_age}); run `tunefactory refit` on newer candles")
    return Forecast(asset, timeframe, target, horizon, last_open, made_at, last_open + horizon * step,
                    last_open + (horizon + 1) * step, float(close[-1]), float(value), tg.unit, multiplier, price,
                    dropped, info, model, trained_through, tuple(notes))


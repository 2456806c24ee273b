"""Next-candle forecast from an exported winner, with features built exactly as in training.

The winner's folder holds its model, its scaler (fitted on its training span) and the
run's spec. Features are rebuilt from candles the way
``search_spaces.recipes.prepare_groups`` built them for the sweep: the same candle source and resampling, the same ``data.start``
(EWM-based indicators depend on where the series starts), the whole indicator pool
computed once (every indicator is causal), then the trial's columns, standardised by the
saved scaler and cut into one window with :func:`trainables.features.dataset.windows`. A forecast
made from candles up to ``t`` therefore equals the model's test-span prediction for ``t``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from reports.registry.winners import Winner, load_winner
from search_spaces.schema import FeaturesSection
from trainables.data.candles import TIMEFRAMES, load_candles, read_candles, resample
from trainables.errors import DataError, RunError
from trainables.features.dataset import Prepared, Scaler, windows
from trainables.features.indicators import compute_features
from trainables.features.targets import TARGETS

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
        ]
        if self.target not in ("multiplier",):
            out.append(f"{self.target:<11} {self.value:.8g}  ({self.unit})")
        if self.multiplier is not None and self.price is not None:
            out += [f"multiplier  {self.multiplier:.6f}", f"return      {(self.multiplier - 1) * 100:+.4f}%",
                    f"price       {self.price:.8g}"]
        if self.dropped_open is not None:
            out.append(f"note: left out the in-progress candle opened {self.dropped_open:{f}}")
        if isinstance(skill, (int, float)) and skill <= 0:
            out.append("warning: this model did not beat persistence (next close = last close) on its test span; "
                       "treat the forecast as noise")
        return out


def _pool(winner: Winner) -> list[Any]:
    """The run's indicator pool, parsed by the spec schema (only the features section)."""
    raw = yaml.safe_load((winner.path / "spec.yaml").read_text(encoding="utf-8")) or {}
    try:
        return list(FeaturesSection.model_validate(raw.get("features") or {}).pool)
    except (ValueError, TypeError, KeyError) as e:  # pydantic's ValidationError is a ValueError
        raise RunError(f"{winner.path / 'spec.yaml'}: features section unreadable ({str(e).splitlines()[0]}); "
                       "export the winner again") from None


def _candles(winner: Winner, asset: str, timeframe: str, data: Path | None) -> tuple[pd.DataFrame, str]:
    """Candles as the sweep loaded them (same source rules and ``data.start``)."""
    cfg_data = winner.config.get("data") or {}
    if data is not None and Path(data).is_file():
        f = Path(data)
        stem_asset, _, stem_tf = f.name.split(".csv")[0].rpartition("_")
        if stem_tf in TIMEFRAMES and stem_asset and stem_asset != asset:
            raise DataError(f"{f}: holds {stem_asset} candles (by its name), not {asset}")
        file_tf = stem_tf if stem_tf in TIMEFRAMES else timeframe
        frame = read_candles(f, file_tf)
        if file_tf != timeframe:
            if TIMEFRAMES[file_tf] > TIMEFRAMES[timeframe]:
                raise DataError(f"{f}: holds {file_tf} candles; a {timeframe} forecast needs {timeframe} or finer")
            frame = resample(frame, file_tf, timeframe)
        source = str(f)
    else:
        directory = data if data is not None else cfg_data.get("path")
        candles = load_candles(asset, timeframe, path=directory)
        frame, source = candles.frame, str(candles.source)
    start = cfg_data.get("start")
    if start:
        frame = frame[frame["timestamp"] >= pd.Timestamp(str(start), tz="UTC")]
    return frame.reset_index(drop=True), source


def _utc(ts: pd.Timestamp | str | None) -> pd.Timestamp:
    if ts is None:
        return pd.Timestamp.now(tz="UTC")
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def forecast(asset: str, timeframe: str, *, registry: Path | str = "winners", data: Path | str | None = None,
             now: pd.Timestamp | str | None = None) -> Forecast:
    """Forecast the next candle of (asset, timeframe) with the registry's winner.

    Args:
        asset: e.g. ``BTC-USDT``.
        timeframe: e.g. ``1h``.
        registry: the winners folder (see :mod:`reports.registry.winners`).
        data: a candle file or a folder of candle files (default: where the run read them).
        now: the time to forecast at (default: the current UTC time). Candles that are not
            complete at ``now`` are left out, so a past ``now`` reproduces a past forecast.

    Raises:
        RunError: no winner for (asset, timeframe) in the registry.
        DataError: the candles are invalid, too short for the winner's window, have a gap in
            it, or are stale (the candle the forecast would apply to has already closed).
    """
    if timeframe not in TIMEFRAMES:
        raise DataError(f"timeframe {timeframe!r} is not supported; allowed: {', '.join(TIMEFRAMES)}")
    winner = load_winner(registry, asset, timeframe)
    cfg = winner.config
    trial = cfg.get("trial") or {}
    target = str((cfg.get("target") or {}).get("kind", "multiplier"))
    horizon = int((cfg.get("target") or {}).get("horizon", 1))
    lookback = int(trial["lookback"])
    columns = list(trial["columns"])
    step = TIMEFRAMES[timeframe]
    at = _utc(now)
    data_path = Path(data) if data is not None else None
    frame, source = _candles(winner, asset, timeframe, data_path)

    # Only candles complete at `at`: an in-progress candle's close is not a close yet.
    complete = (frame["timestamp"] + step) <= at
    started = (frame["timestamp"] < at) & ~complete
    dropped = frame.loc[started, "timestamp"].iloc[-1] if started.any() else None
    frame = frame[complete].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{source}: no complete {timeframe} candle at {at:%Y-%m-%dT%H:%MZ}")
    last_open = frame["timestamp"].iloc[-1]
    made_at = last_open + step
    if at >= made_at + step:
        raise DataError(
            f"{source}: stale data: the latest complete {timeframe} candle closed at {made_at:%Y-%m-%dT%H:%MZ}, "
            f"but it is {at:%Y-%m-%dT%H:%MZ}, so the candle a forecast would apply to has already closed; "
            "fetch newer candles (or pass --at to forecast as of an earlier time)")

    pool = _pool(winner)
    try:
        feats, names, warm = compute_features(frame, pool)
    except KeyError as e:
        raise DataError(f"{source}: the winner's indicators need column {e} that the candles lack") from None
    missing = [c for c in columns if c not in names]
    if missing:
        raise RunError(f"{winner.path}: the model uses {', '.join(missing)}, which the exported pool does not "
                       "produce; export the winner again")
    need = warm + lookback
    if len(frame) < need:
        raise DataError(
            f"{source}: too short: {len(frame)} complete {timeframe} candles up to {last_open:%Y-%m-%dT%H:%MZ}"
            f"{' since ' + str(cfg.get('data', {}).get('start')) if (cfg.get('data') or {}).get('start') else ''}; "
            f"the winner needs at least {need} ({warm} indicator warm-up + a {lookback}-candle window)")
    ns = frame["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    window_ns = ns[-lookback:]
    gaps = np.flatnonzero(np.diff(window_ns) != step.value)
    if len(gaps):
        g = pd.Timestamp(int(window_ns[gaps[0]]), unit="ns", tz="UTC")
        raise DataError(f"{source}: gap after the candle opened {g:%Y-%m-%dT%H:%MZ} inside the last {lookback} "
                        "candles the model reads; fill the missing candles (fetch them again)")
    scaler = Scaler.from_json(json.loads((winner.path / "scaler.json").read_text(encoding="utf-8")))
    pos = {c: i for i, c in enumerate(names)}
    cols = np.array([pos[c] for c in columns], dtype=np.int64)
    if not np.isfinite(feats[-lookback:, cols]).all():
        raise DataError(f"{source}: an indicator is undefined (NaN) inside the last {lookback} candles")

    n = len(frame)
    close = frame["close"].to_numpy(dtype=np.float64)
    empty = np.zeros(0, dtype=np.int64)
    # A Prepared of the latest rows, so the window is cut by the training code itself.
    prepared = Prepared(asset, timeframe, target, horizon, ns, close, feats, names, np.full(n, np.nan), np.full(n, np.nan), empty, empty,
                        empty, lookback)
    x = windows(prepared, cols, np.array([n - 1]), lookback, scaler)
    model = load_model(winner.path / "model.keras")
    z = float(predict_eager(model, x)[0])  # the forward pass training used for its test predictions
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
    return Forecast(asset, timeframe, target, horizon, last_open, made_at, last_open + horizon * step,
                    last_open + (horizon + 1) * step, float(close[-1]), float(value), tg.unit, multiplier, price,
                    dropped, info)


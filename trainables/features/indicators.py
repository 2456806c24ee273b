"""Indicator registry: one name → one vectorised, causal function.

Every indicator maps a candle frame to one float column. All of them are **causal**: the
value at row t uses rows <= t only (rolling windows look back, EWMs run forward), so
computing them once over the whole series leaks nothing from validation or test into
training features. The first :attr:`Indicator.warmup` rows are unreliable (partial windows,
EWM start-up) and are dropped for every trial, so all trials of an (asset, timeframe)
share the same sample rows whatever subset they use.

Following "change predicts change", indicators are scale-free: returns, ratios to close,
bounded oscillators, changes of volume, never raw prices.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trainables.errors import TunefactoryError

IndicatorFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Indicator:
    """A registered indicator.

    Attributes:
        name: registry key.
        fn: ``fn(frame, **params) -> ndarray`` of length ``len(frame)``.
        defaults: parameter names (in column-name order) and default values.
        warmup: rows to drop at the start, given the parameters.
        doc: one line for ``tunefactory indicators`` and the reports.
    """

    name: str
    fn: IndicatorFn
    defaults: dict[str, int | float]
    warmup: Callable[[Mapping[str, Any]], int]
    doc: str

    def column(self, params: Mapping[str, Any]) -> str:
        """Stable column name, e.g. ``rsi_14`` or ``macd_12_26_9``; parameter-free: the name."""
        full = {**self.defaults, **params}
        return "_".join([self.name, *(f"{full[k]:g}" if isinstance(full[k], float) else str(full[k])
                                      for k in self.defaults)])


INDICATORS: dict[str, Indicator] = {}


def register(name: str, *, warmup: Callable[[Mapping[str, Any]], int], doc: str,
             **defaults: int | float) -> Callable[[IndicatorFn], IndicatorFn]:
    """Decorator adding ``fn`` to :data:`INDICATORS` under ``name``."""

    def deco(fn: IndicatorFn) -> IndicatorFn:
        INDICATORS[name] = Indicator(name, fn, dict(defaults), warmup, doc)
        return fn

    return deco


def _c(f: pd.DataFrame) -> pd.Series:
    return f["close"]


def _ema(s: pd.Series, span: int) -> pd.Series:
    return s.ewm(span=span, adjust=False).mean()


def _wilder(s: pd.Series, period: int) -> pd.Series:
    return s.ewm(alpha=1.0 / period, adjust=False).mean()


@register("log_return", lag=1, warmup=lambda p: int(p["lag"]), doc="ln(close_t / close_{t-lag})")
def log_return(f: pd.DataFrame, *, lag: int = 1) -> np.ndarray:
    c = np.log(_c(f).to_numpy())
    out = np.full(len(c), np.nan)
    out[lag:] = c[lag:] - c[:-lag]
    return out


@register("ema_ratio", period=20, warmup=lambda p: 3 * int(p["period"]),
          doc="close / EMA(close, period) - 1")
def ema_ratio(f: pd.DataFrame, *, period: int = 20) -> np.ndarray:
    return (_c(f) / _ema(_c(f), period) - 1.0).to_numpy()


@register("sma_ratio", period=20, warmup=lambda p: int(p["period"]), doc="close / SMA(close, period) - 1")
def sma_ratio(f: pd.DataFrame, *, period: int = 20) -> np.ndarray:
    return (_c(f) / _c(f).rolling(period).mean() - 1.0).to_numpy()


@register("rsi", period=14, warmup=lambda p: 3 * int(p["period"]),
          doc="Wilder's RSI scaled to [0, 1]")
def rsi(f: pd.DataFrame, *, period: int = 14) -> np.ndarray:
    d = _c(f).diff()
    up = _wilder(d.clip(lower=0.0), period)
    down = _wilder((-d).clip(lower=0.0), period)
    total = up + down
    # Flat stretches (up = down = 0) are neutral, not undefined.
    return np.where(total.to_numpy() > 0, (up / total.where(total > 0, 1.0)).to_numpy(), 0.5)


@register("macd", fast=12, slow=26, signal=9, warmup=lambda p: 3 * (int(p["slow"]) + int(p["signal"])),
          doc="MACD histogram (EMA_fast - EMA_slow - signal) / close")
def macd(f: pd.DataFrame, *, fast: int = 12, slow: int = 26, signal: int = 9) -> np.ndarray:
    line = _ema(_c(f), fast) - _ema(_c(f), slow)
    return ((line - _ema(line, signal)) / _c(f)).to_numpy()


@register("bollinger_b", period=20, k=2.0, warmup=lambda p: int(p["period"]),
          doc="Bollinger %b: (close - lower) / (upper - lower)")
def bollinger_b(f: pd.DataFrame, *, period: int = 20, k: float = 2.0) -> np.ndarray:
    m = _c(f).rolling(period).mean()
    sd = _c(f).rolling(period).std(ddof=0)
    width = (2 * k * sd).where(sd > 0)
    return ((_c(f) - (m - k * sd)) / width).fillna(0.5).where(m.notna()).to_numpy()


def _true_range(f: pd.DataFrame) -> pd.Series:
    prev = _c(f).shift(1)
    return pd.concat([f["high"] - f["low"], (f["high"] - prev).abs(), (f["low"] - prev).abs()],
                     axis=1).max(axis=1, skipna=True)


@register("atr_ratio", period=14, warmup=lambda p: 3 * int(p["period"]), doc="ATR(period) / close")
def atr_ratio(f: pd.DataFrame, *, period: int = 14) -> np.ndarray:
    return (_wilder(_true_range(f), period) / _c(f)).to_numpy()


@register("hl_spread", warmup=lambda p: 0, doc="(high - low) / close")
def hl_spread(f: pd.DataFrame) -> np.ndarray:
    return ((f["high"] - f["low"]) / _c(f)).to_numpy()


@register("co_spread", warmup=lambda p: 0, doc="(close - open) / open")
def co_spread(f: pd.DataFrame) -> np.ndarray:
    return ((_c(f) - f["open"]) / f["open"]).to_numpy()


@register("realized_vol", period=20, warmup=lambda p: int(p["period"]) + 1,
          doc="rolling std of 1-candle log returns over period")
def realized_vol(f: pd.DataFrame, *, period: int = 20) -> np.ndarray:
    r = np.log(_c(f)).diff()
    return r.rolling(period).std(ddof=1).to_numpy()


@register("volume_change", lag=1, warmup=lambda p: int(p["lag"]),
          doc="ln(1 + volume_t) - ln(1 + volume_{t-lag}) (zero-volume candles exist)")
def volume_change(f: pd.DataFrame, *, lag: int = 1) -> np.ndarray:
    v = np.log1p(f["volume"].to_numpy())
    out = np.full(len(v), np.nan)
    out[lag:] = v[lag:] - v[:-lag]
    return out


@register("volume_ratio", period=20, warmup=lambda p: int(p["period"]),
          doc="volume / SMA(volume, period)")
def volume_ratio(f: pd.DataFrame, *, period: int = 20) -> np.ndarray:
    m = f["volume"].rolling(period).mean()
    return (f["volume"] / m.where(m > 0)).fillna(1.0).where(m.notna()).to_numpy()


@register("obv_change", period=10, warmup=lambda p: int(p["period"]) + 1,
          doc="OBV change over period / volume over period, in [-1, 1]")
def obv_change(f: pd.DataFrame, *, period: int = 10) -> np.ndarray:
    signed = np.sign(_c(f).diff().fillna(0.0)) * f["volume"]
    num = signed.rolling(period).sum()
    den = f["volume"].rolling(period).sum()
    return (num / den.where(den > 0)).fillna(0.0).where(den.notna()).to_numpy()


@register("stoch_k", period=14, warmup=lambda p: int(p["period"]),
          doc="stochastic %K: (close - min low) / (max high - min low) over period")
def stoch_k(f: pd.DataFrame, *, period: int = 14) -> np.ndarray:
    lo = f["low"].rolling(period).min()
    hi = f["high"].rolling(period).max()
    rng = (hi - lo).where(hi > lo)
    return ((_c(f) - lo) / rng).fillna(0.5).where(lo.notna()).to_numpy()


@dataclass(frozen=True)
class PoolMember:
    """One member of an indicator pool: a registered indicator with parameter variants.

    A member with one variant is one column. A member whose parameters take several values
    (``searched``) is still **one** member of the subset search: the trial picks the
    variant (e.g. RSI period) as a hyperparameter, and every variant is precomputed.

    Attributes:
        key: the member's name in subsets (``rsi`` or, for a fixed variant, ``rsi_14``).
        indicator: registry name.
        variants: parameter dicts, one per column.
        searched: names of parameters that vary across variants.
    """

    key: str
    indicator: str
    variants: tuple[tuple[tuple[str, Any], ...], ...]
    searched: tuple[str, ...] = field(default_factory=tuple)

    def columns(self) -> list[str]:
        ind = INDICATORS[self.indicator]
        return [ind.column(dict(v)) for v in self.variants]

    def column_for(self, chosen: Mapping[str, Any]) -> str:
        """Column of the variant whose searched parameters equal ``chosen``."""
        ind = INDICATORS[self.indicator]
        for v in self.variants:
            d = dict(v)
            if all(d[k] == chosen[k] for k in self.searched):
                return ind.column(d)
        raise KeyError(f"{self.key}: no variant {dict(chosen)}")


def make_member(indicator: str, params: Mapping[str, Any] | None = None, *,
                searched: Mapping[str, Sequence[Any]] | None = None, key: str | None = None) -> PoolMember:
    """Build a pool member; ``searched`` maps parameter → values searched per trial."""
    if indicator not in INDICATORS:
        raise TunefactoryError(f"unknown indicator {indicator!r}; allowed: {', '.join(sorted(INDICATORS))}")
    ind = INDICATORS[indicator]
    base = {**ind.defaults, **(params or {})}
    searched = dict(searched or {})
    grids = [[(k, v) for v in searched[k]] for k in searched]
    variants = []
    for combo in itertools.product(*grids) if grids else [()]:
        p = {**base, **dict(combo)}
        variants.append(tuple((k, p[k]) for k in ind.defaults))
    if key is None:
        key = indicator if searched else ind.column(base)
    return PoolMember(key, indicator, tuple(variants), tuple(searched))


def compute_features(frame: pd.DataFrame, members: Sequence[PoolMember]) -> tuple[np.ndarray, list[str], int]:
    """Compute every column of every pool member once.

    Args:
        frame: validated candles (plus any aligned metric columns).
        members: the pool.

    Returns:
        ``(matrix float32 [n_rows, n_cols], column names, warm-up rows)``.
    """
    cols: dict[str, np.ndarray] = {}
    warm = 0
    for m in members:
        ind = INDICATORS[m.indicator]
        for v in m.variants:
            params = dict(v)
            name = ind.column(params)
            if name in cols:
                continue
            cols[name] = np.asarray(ind.fn(frame, **params), dtype=np.float64)
            warm = max(warm, int(ind.warmup(params)))
    names = list(cols)
    mat = np.column_stack([cols[n] for n in names]).astype(np.float32) if names else np.zeros((len(frame), 0),
                                                                                              np.float32)
    return mat, names, warm

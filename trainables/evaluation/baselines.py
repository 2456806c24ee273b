"""Reference forecasts, scored on exactly the validation and test samples of a group.

Every baseline is fitted on the training span only and produces, for each sample t, a
forecast from data known at the close of candle t. Scores use the same functions as the
trials (:func:`trainables.evaluation.scores.span_scores`), so ``test_rmse`` of a baseline and of a
trial are directly comparable.

``persistence``
    The random walk: the target's persistence forecast (multiplier 1, log return 0,
    price ``close[t]``, volatility of the last ``h`` candles).
``drift``
    The random walk with drift: the training-mean label (multiplier, log return; for
    volatility the training-mean volatility), for ``price`` ``close[t]`` times the
    training-mean multiplier ``close[t+h]/close[t]``.
``ar``
    A direct AR(p) on the label series, fitted by least squares (with intercept) on the
    training samples: ``y[t] = c + a_1 y[t-h] + ... + a_p y[t-h-p+1]``. Only lags known
    at t are used (the label at ``t-h`` looks up to candle t); for h > 1 labels overlap,
    which leaves least squares consistent for this direct h-step projection (its errors
    are merely autocorrelated). ``p`` is chosen by BIC among 1..5 on the training rows.
    For ``price`` the AR runs on the multiplier and is turned back into a price with
    ``close[t]``. A sample whose lags are unknown (missing data) gets the training mean.
``garch``
    Volatility targets only: GARCH(1,1) with a constant mean and normal errors (the
    ``arch`` package) fitted on the training span's close-to-close log returns × 100.
    The parameters are never refitted; the conditional variance is updated with each
    realised return as it becomes known, so the forecast made at t uses returns up to t:
    ``s2[t+1] = omega + alpha (r[t] - mu)^2 + beta s2[t]``, ``s2[t+j] = omega +
    (alpha + beta) s2[t+j-1]``, and the annualised forecast is
    ``sqrt(mean(s2[t+1..t+h]) * candles_per_year) / 100`` (``** 0.25`` for
    ``volatility_q``). Returns across a gap in the candles are used as they are.
``har``
    Volatility targets only: HAR-RV (Corsi, 2009), the field's standard for realised
    volatility. A direct regression, fitted by OLS with intercept on the training samples::

        y[t] = b0 + b_day RV_d[t] + b_week RV_w[t] + b_month RV_m[t]

    The regressors are in the target's own measure and known at the close of candle t:
    ``RV_d[t]`` is the target's quantity over the last day, candles ``t-d+1 .. t`` with
    ``d`` candles per day (annualised realised volatility from 1h returns; its fourth root
    for ``volatility_q``, so that target is fitted in its own units), i.e.
    :attr:`~trainables.features.dataset.Prepared.har_day`. ``RV_w[t]`` is the mean of
    ``RV_d`` at the ends of the last 5 days (rows whose candle opens 0, 1, ..., 4 days
    before candle t) and ``RV_m[t]`` the mean over the last 22 days, as in Corsi's
    trading-calendar week and month. In candles: on 1d candles day/week/month are 1/5/22
    candles (lags t, t-1, ..., t-21); on 1h candles the daily value is the rolling last 24
    hours and the week averages it at t, t-24, ..., t-96 (month: to t-504); other
    intraday timeframes likewise with ``d = 24h / timeframe``. Lags are found by
    timestamp, so a missing candle leaves its lag unknown rather than shifted. A sample
    with an unknown lag (warm-up, gaps, missing hours) gets the training-mean label, as
    the AR does, and is left out of the fit. Coefficients, in the target's units, are in
    ``groups.json``: ``b0``, ``b_day``, ``b_week``, ``b_month``, ``n_fit``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from trainables.data.candles import TIMEFRAMES
from trainables.evaluation.scores import span_scores
from trainables.features.dataset import Prepared
from trainables.features.targets import HOURS_PER_YEAR, TARGETS

#: Largest AR order tried by the BIC selection.
AR_MAX_ORDER = 5
#: Returns are multiplied by this before GARCH fitting (the arch package's advice).
GARCH_SCALE = 100.0
#: HAR-RV regressors: the daily value averaged over the last 1, 5 and 22 days (Corsi, 2009).
HAR_DAYS: tuple[int, ...] = (1, 5, 22)
_DAY_NS = 86_400_000_000_000


def persistence_forecast(p: Prepared) -> np.ndarray:
    """The random walk's forecast per row (the target's persistence)."""
    return np.asarray(p.persistence, dtype=np.float64)


def _ret(p: Prepared) -> np.ndarray:
    if p.ret is not None:
        return np.asarray(p.ret, dtype=np.float64)
    ahead = np.full(len(p.close), np.nan)
    ahead[: len(p.close) - p.horizon] = p.close[p.horizon:]
    return ahead / p.close - 1.0


def drift_forecast(p: Prepared) -> np.ndarray:
    """Training-mean label per row (for ``price``: ``close[t]`` × training-mean multiplier)."""
    tr = p.train_idx
    if p.target == "price":
        return p.close * float(np.mean(1.0 + _ret(p)[tr]))
    return np.full(len(p.y), float(np.mean(p.y[tr])))


def _ar_series(p: Prepared) -> np.ndarray:
    """The series the AR runs on: the label, or for ``price`` the multiplier close[t+h]/close[t]."""
    return 1.0 + _ret(p) if p.target == "price" else np.asarray(p.y, dtype=np.float64)


def ar_lags(z: np.ndarray, h: int, order: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix ``[1, z[t-h], ..., z[t-h-order+1]]`` for each row t, and whether it is complete."""
    rows = np.asarray(rows, dtype=np.int64)
    x = np.ones((len(rows), order + 1))
    ok = np.ones(len(rows), dtype=bool)
    for j in range(order):
        lag = rows - h - j
        inside = lag >= 0
        x[:, j + 1] = np.where(inside, z[np.maximum(lag, 0)], np.nan)
        ok &= inside
    ok &= np.isfinite(x).all(axis=1)
    return x, ok


def _fit(z: np.ndarray, h: int, order: int, rows: np.ndarray) -> tuple[np.ndarray, float, int]:
    x, ok = ar_lags(z, h, order, rows)
    ok &= np.isfinite(z[rows])
    xs, ys = x[ok], z[rows][ok]
    coef, *_ = np.linalg.lstsq(xs, ys, rcond=None)
    rss = float(np.sum((ys - xs @ coef) ** 2))
    return coef, rss, int(ok.sum())


def select_ar_order(p: Prepared, max_order: int = AR_MAX_ORDER) -> int:
    """AR order in ``1..max_order`` with the lowest BIC, on the training rows all orders can use."""
    z, h, tr = _ar_series(p), p.horizon, p.train_idx
    _, ok = ar_lags(z, h, max_order, tr)
    rows = tr[ok & np.isfinite(z[tr])]
    n = len(rows)
    if n <= max_order + 2:
        return 1
    best, best_bic = 1, np.inf
    for order in range(1, max_order + 1):
        _, rss, _ = _fit(z, h, order, rows)
        bic = n * np.log(max(rss, 1e-300) / n) + (order + 1) * np.log(n)
        if bic < best_bic:
            best, best_bic = order, bic
    return best


def ar_forecast(p: Prepared, order: int | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """Direct AR(order) forecast per row, fitted on the training samples only.

    Args:
        p: the prepared group.
        order: number of lags (default: chosen by :func:`select_ar_order`).

    Returns:
        ``(forecast per row, order, coefficients [c, a_1, ..., a_p])``; rows whose lags are
        unknown get the training mean of the series.
    """
    z, h = _ar_series(p), p.horizon
    order = order or select_ar_order(p)
    coef, _, _ = _fit(z, h, order, p.train_idx)
    rows = np.arange(len(z))
    x, ok = ar_lags(z, h, order, rows)
    zhat = np.where(ok, np.nan_to_num(x) @ coef, float(np.nanmean(z[p.train_idx])))
    return (p.close * zhat if p.target == "price" else zhat), order, coef


def garch_forecast(p: Prepared, *, scale: float = GARCH_SCALE) -> tuple[np.ndarray, dict[str, float]]:
    """GARCH(1,1) volatility forecast per row in the target's units (volatility kinds only).

    Returns:
        ``(forecast per row (NaN for row 0), {"mu", "omega", "alpha", "beta"})`` with the
        parameters in the units of returns × ``scale``.
    """
    from arch import arch_model  # lazy: ~2 s to import; only volatility targets fit GARCH

    if TARGETS[p.target].kind != "volatility":
        raise ValueError(f"GARCH forecasts a volatility target, not {p.target!r}")
    r = np.diff(np.log(np.asarray(p.close, dtype=np.float64))) * scale  # r[i]: return of row i+1
    last = int(p.train_idx[-1])  # training uses the returns of rows 1..last
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = arch_model(r[:last], mean="Constant", vol="GARCH", p=1, q=1, dist="normal",
                         rescale=False).fit(disp="off", show_warning=False)
    mu, omega = float(res.params["mu"]), float(res.params["omega"])
    alpha, beta = float(res.params["alpha[1]"]), float(res.params["beta[1]"])
    eps2 = (r - mu) ** 2
    s2 = np.empty(len(r))
    s2[:last] = np.asarray(res.conditional_volatility, dtype=np.float64) ** 2
    for i in range(last, len(r)):
        s2[i] = omega + alpha * eps2[i - 1] + beta * s2[i - 1]
    n = len(p.close)
    # One step ahead from row t (last known return: r[t-1]) = variance of the return of row t+1.
    v = np.full(n, np.nan)
    v[1:] = omega + alpha * eps2 + beta * s2
    total = v.copy()
    for _ in range(1, p.horizon):
        v = omega + (alpha + beta) * v
        total += v
    candles_per_year = HOURS_PER_YEAR * 3_600_000_000_000 / TIMEFRAMES[p.timeframe].value
    vol = np.sqrt(total / p.horizon * candles_per_year) / scale
    if p.target == "volatility_q":
        vol = vol ** 0.25
    return vol, {"mu": mu, "omega": omega, "alpha": alpha, "beta": beta}


def har_regressors(p: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """HAR-RV design ``[1, RV_d, RV_w, RV_m]`` per row (known at t) and whether it is complete.

    Raises:
        ValueError: the group is not a volatility target (no daily measure).
    """
    if p.har_day is None or TARGETS[p.target].kind != "volatility":
        raise ValueError(f"HAR-RV forecasts a volatility target, not {p.target!r}")
    day = np.asarray(p.har_day, dtype=np.float64)
    ts = np.asarray(p.timestamps, dtype=np.int64)
    n = len(ts)
    lagged = np.full((n, max(HAR_DAYS)), np.nan)
    for i in range(max(HAR_DAYS)):
        # The row whose candle opens exactly i days before candle t (by timestamp, not position).
        want = ts - i * _DAY_NS
        pos = np.minimum(np.searchsorted(ts, want), n - 1)
        hit = ts[pos] == want
        lagged[:, i] = np.where(hit, day[pos], np.nan)
    x = np.ones((n, len(HAR_DAYS) + 1))
    for j, days in enumerate(HAR_DAYS):
        x[:, j + 1] = lagged[:, :days].mean(axis=1)  # NaN when any of those days is unknown
    return x, np.asarray(np.isfinite(x).all(axis=1), dtype=bool)


def har_forecast(p: Prepared) -> tuple[np.ndarray, dict[str, float]]:
    """HAR-RV forecast per row in the target's units, fitted by OLS on the training samples only.

    Returns:
        ``(forecast per row, {"b0", "b_day", "b_week", "b_month", "n_fit"})``; rows with an
        unknown regressor get the training-mean label.
    """
    x, ok = har_regressors(p)
    y = np.asarray(p.y, dtype=np.float64)
    tr = np.asarray(p.train_idx, dtype=np.int64)
    fit = tr[ok[tr] & np.isfinite(y[tr])]
    if len(fit) <= x.shape[1]:
        raise ValueError(f"{len(fit)} training samples with every HAR lag known; need more than {x.shape[1]}")
    coef, *_ = np.linalg.lstsq(x[fit], y[fit], rcond=None)
    yhat = np.where(ok, np.nan_to_num(x) @ coef, float(np.nanmean(y[tr])))
    names = ("b0", "b_day", "b_week", "b_month")
    return yhat, {**{k: float(c) for k, c in zip(names, coef, strict=True)}, "n_fit": float(len(fit))}


def forecasts(p: Prepared) -> dict[str, tuple[np.ndarray, dict[str, float]]]:
    """Every baseline that applies to the target: name → (forecast per row, extra info)."""
    out: dict[str, tuple[np.ndarray, dict[str, float]]] = {
        "persistence": (persistence_forecast(p), {}),
        "drift": (drift_forecast(p), {}),
    }
    ar, order, _ = ar_forecast(p)
    out["ar"] = (ar, {"order": float(order)})
    if TARGETS[p.target].kind == "volatility":
        try:
            out["garch"] = garch_forecast(p)
        except Exception as e:  # a failed optimiser must not stop the sweep; the report says why
            warnings.warn(f"{p.group}: GARCH(1,1) baseline failed: {e}", stacklevel=2)
        if p.har_day is not None:
            try:
                out["har"] = har_forecast(p)
            except ValueError as e:  # too short a training span: no HAR row, and say why
                warnings.warn(f"{p.group}: HAR-RV baseline skipped: {e}", stacklevel=2)
    return out


def baselines(p: Prepared) -> dict[str, dict[str, float | None]]:
    """Scores of every baseline on the validation and test samples of ``p``.

    Returns:
        ``{name: {"val_rmse": ..., "val_mae": ..., "val_skill": ..., "test_rmse": ..., ...}}``
        with the keys of :func:`trainables.evaluation.scores.span_scores` (price conversion where
        the target allows it; spike metrics on the test span for volatility targets) and
        each baseline's extra info (``ar``: ``order``; ``garch``: its parameters; ``har``:
        its coefficients).
        Undefined values (e.g. precision without predicted spikes) are None, so the
        result is strict JSON for ``groups.json``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, (yhat, info) in forecasts(p).items():
        row: dict[str, Any] = {}
        for span, idx in (("val", p.val_idx), ("test", p.test_idx)):
            row.update(span_scores(p, idx, yhat[idx], span, spikes=span == "test"))
        row.update(info)
        out[name] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    return out

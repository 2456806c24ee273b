"""Forecast-comparison tests for a search's winners: Diebold–Mariano, Hansen's SPA, the MCS, deflated Sharpe.

Pure functions on arrays (numpy, scipy, arch); no files are read here
(:mod:`reports.forecast_tests` assembles the losses of a run).

Losses are squared forecast errors on the test span, one row per test sample, aligned
across forecasts (the same samples in the same order). "Model beats the benchmark" means
a smaller expected loss.

- :func:`diebold_mariano`: one model against the benchmark (Diebold & Mariano, 1995), with
  the long-run variance of the loss differential estimated as R ``forecast::dm.test`` does
  (autocovariances up to lag ``h - 1``, uniform weights; Bartlett weights when that is not
  positive), the Harvey–Leybourne–Newbold (1997) small-sample correction and Student-t
  with ``n - 1`` degrees of freedom.
- :func:`spa_test`: Hansen's (2005) test of superior predictive ability over every config
  tried ("no config beats the benchmark"), stationary bootstrap, studentized.
- :func:`model_confidence_set`: Hansen, Lunde & Nason's (2011) MCS.
- :func:`deflated_sharpe`: Bailey & López de Prado's (2014) deflated Sharpe ratio.

Too few samples or configs for a bootstrap is not an error: the result's ``status`` says
"not enough ..." and its p-values are ``None`` (no p-value is invented). Malformed input
(shapes, NaN, a horizon < 1) raises :class:`~trainables.errors.RunError`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from arch.bootstrap import MCS, SPA, optimal_block_length
from scipy import stats

from trainables.errors import RunError

#: Fewest test samples for which a bootstrap p-value is reported.
MIN_BOOTSTRAP_OBS = 30
#: Fewest finished configs for the SPA test (with one config, the DM test is the test).
MIN_SPA_CONFIGS = 2
#: Bootstrap replications of the SPA test and the MCS.
DEFAULT_REPS = 1000
#: The MCS compares every pair of forecasts in every replication (k² × reps numbers):
#: above this many forecasts it is skipped and the result says so.
MCS_MAX_MODELS = 60
#: Euler–Mascheroni constant (expected maximum of many Gaussians, Bailey & López de Prado 2014).
EULER_GAMMA = 0.5772156649015329
#: How the SPA block size is chosen; stated in every result.
BLOCK_RULE = ("Politis–White (2004, corrected 2009) optimal stationary-bootstrap block length of the mean loss "
              "differential, rounded up, at least the forecast horizon, at most n/4")

Alternative = Literal["less", "greater", "two-sided"]


def _vector(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise RunError(f"{name}: expected one loss per sample (a 1-D array); got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise RunError(f"{name}: {int(np.sum(~np.isfinite(a)))} loss(es) are NaN or infinite; losses must be finite")
    return a


def _autocov(d: np.ndarray, lags: int) -> np.ndarray:
    """Autocovariances ``γ0..γ_lags`` of ``d`` (divisor n, as R's ``acf(type="covariance")``)."""
    n = len(d)
    x = d - d.mean()
    return np.array([float(np.dot(x[k:], x[:n - k])) / n for k in range(lags + 1)])


@dataclass(frozen=True)
class DMResult:
    """A Diebold–Mariano test.

    Attributes:
        statistic: the HLN-corrected DM statistic (negative: the model has the smaller loss).
        pvalue: p-value under ``alternative`` (``None`` when ``status`` is not ``ok``).
        n: samples.
        horizon: forecast horizon h (autocovariances to lag h - 1 enter the variance).
        mean_diff: mean loss differential (model − benchmark).
        variance: ``acf`` (uniform weights, as ``forecast::dm.test``) or ``bartlett`` (the
            fallback when the uniform estimate is not positive).
        alternative: ``less`` (H1: the model's loss is smaller), ``greater`` or ``two-sided``.
        status: ``ok`` or why there is no p-value.
    """

    statistic: float | None
    pvalue: float | None
    n: int
    horizon: int
    mean_diff: float
    variance: str
    alternative: str
    status: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diebold_mariano(loss_model: Any, loss_bench: Any, *, horizon: int,
                    alternative: Alternative = "less") -> DMResult:
    """Diebold–Mariano test of equal expected loss, one model against a benchmark.

    ``d = loss_model - loss_bench`` (pass squared errors for the MSE comparison); its
    long-run variance is ``(γ0 + 2 Σ_{k=1}^{h-1} γk) / n``; when that is not positive, the
    Bartlett (Newey–West) weights ``1 - k/h`` are used instead and ``variance`` says so.
    The statistic is multiplied by ``sqrt((n + 1 - 2h + h(h-1)/n) / n)`` (Harvey, Leybourne &
    Newbold 1997) and compared with Student-t, ``n - 1`` degrees of freedom.

    Args:
        loss_model: the model's loss per sample.
        loss_bench: the benchmark's loss on the same samples.
        horizon: forecast horizon in samples (h >= 1).
        alternative: ``less`` = H1 "the model has the smaller loss" (one-sided).

    Raises:
        RunError: lengths differ, a loss is not finite, ``horizon`` < 1, an unknown alternative,
            or fewer than ``2 * horizon + 1`` samples (the HLN factor needs them).
    """
    m = _vector(loss_model, "model losses")
    b = _vector(loss_bench, "benchmark losses")
    if len(m) != len(b):
        raise RunError(f"Diebold-Mariano: model and benchmark losses differ in length ({len(m)} vs {len(b)}); "
                       "they must cover the same samples")
    if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or horizon < 1:
        raise RunError(f"Diebold-Mariano: horizon must be a whole number >= 1; got {horizon!r}")
    if alternative not in ("less", "greater", "two-sided"):
        raise RunError(f"Diebold-Mariano: alternative must be less, greater or two-sided; got {alternative!r}")
    h, n = int(horizon), len(m)
    if n < 2 * h + 1:
        raise RunError(f"Diebold-Mariano: {n} samples are not enough for horizon {h}; need at least {2 * h + 1}")
    d = m - b
    dbar = float(d.mean())
    g = _autocov(d, h - 1)
    var, kind = (g[0] + 2.0 * g[1:].sum()) / n, "acf"
    if not var > 0 and h > 1:
        w = 1.0 - np.arange(1, h) / h
        var, kind = (g[0] + 2.0 * float(np.dot(w, g[1:]))) / n, "bartlett"
    if not var > 0:
        return DMResult(None, None, n, h, dbar, kind, alternative,
                        status="the loss differential is constant: the forecasts cannot be told apart by this test")
    hln = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    dm = dbar / math.sqrt(var) * hln
    if alternative == "less":
        p = float(stats.t.cdf(dm, df=n - 1))
    elif alternative == "greater":
        p = float(stats.t.sf(dm, df=n - 1))
    else:
        p = float(2 * stats.t.cdf(-abs(dm), df=n - 1))
    return DMResult(float(dm), p, n, h, dbar, kind, alternative)


def _loss_matrix(bench: Any, models: Any) -> tuple[np.ndarray, np.ndarray]:
    b = _vector(bench, "benchmark losses")
    x = np.asarray(models, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] != len(b):
        raise RunError(f"model losses: expected one row per benchmark sample ({len(b)} x configs); got shape "
                       f"{x.shape}")
    if not np.all(np.isfinite(x)):
        raise RunError(f"model losses: {int(np.sum(~np.isfinite(x)))} loss(es) are NaN or infinite; losses must "
                       "be finite")
    return b, x


def choose_block_size(diff: np.ndarray, *, horizon: int) -> int:
    """The stationary-bootstrap mean block length for a loss differential (rule: :data:`BLOCK_RULE`).

    Args:
        diff: the loss differential, one value per sample (its serial dependence sets the block).
        horizon: forecast horizon: h-step errors overlap, so blocks are never shorter than h.
    """
    n = len(diff)
    b = math.nan
    if np.ptp(diff) > 0:
        b = float(optimal_block_length(diff)["stationary"].iloc[0])
    if not math.isfinite(b):
        b = 1.0  # a constant differential has no dependence to keep
    return int(max(horizon, 1, min(math.ceil(b), n // 4)))


def hac_variance(diff: np.ndarray, *, block: int) -> np.ndarray:
    """Long-run variance of each column of ``diff`` with the stationary-bootstrap kernel.

    The estimator ``arch.bootstrap.SPA`` computes internally (Hansen 2005, eq. for
    ω̂²): ``γ0 + 2 Σ_{i=1}^{n-1} κ_i γ_i``, ``κ_i = (1 - i/n)(1 - p)^i + (i/n)(1 - p)^{n-i}``,
    ``p = 1 / block``; autocovariances by FFT so 1,000 configs stay fast.
    """
    n = diff.shape[0]
    x = diff - diff.mean(axis=0)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, n=size, axis=0)
    gam = np.fft.irfft(f * np.conj(f), n=size, axis=0)[:n] / n
    i = np.arange(1, n)
    p = 1.0 / block
    kappa = (1.0 - i / n) * (1.0 - p) ** i + (i / n) * (1.0 - p) ** (n - i)
    return np.asarray(gam[0] + 2.0 * (kappa[:, None] * gam[1:]).sum(axis=0))


@dataclass(frozen=True)
class SPAResult:
    """Hansen's SPA test of "no config beats the benchmark".

    Attributes:
        status: ``ok`` or "not enough ..." (then every p-value is ``None``).
        consistent, lower, upper: Hansen's three p-values (consistent is the one to read).
        n_models: configs entered.
        n_obs: samples per config.
        block_size: mean block length of the stationary bootstrap.
        block_rule: how it was chosen.
        reps: bootstrap replications.
        seed: the bootstrap's seed.
    """

    status: str
    consistent: float | None
    lower: float | None
    upper: float | None
    n_models: int
    n_obs: int
    block_size: int | None
    block_rule: str
    reps: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _CountingSPA(SPA):  # type: ignore[misc]
    """``arch.bootstrap.SPA`` with its bootstrap means computed from index counts.

    arch copies the n × k loss differentials once per replication to average them
    (``x[idx].mean(0)``): with 7,400 configs and 1,000 reps that is 2·10⁹ copied numbers
    and ~35 s on 2 cores. The mean of a resample is ``bincount(idx) @ x / n``, so all the
    replications are one (reps × n) @ (n × k) product. The indices come from the same
    bootstrap object in the same order (``update_indices`` is all ``bootstrap()`` draws
    per rep), so the p-values equal arch's (checked by a test against ``SPA`` itself).
    """

    def _simulate_values(self) -> None:
        # Mirrors arch's SPA._simulate_values (arch 8.0) but for how the means are taken.
        self._compute_variance()
        self._valid_columns = self._check_column_validity()
        upper_mean = self._loss_diff.mean(0)
        consistent_mean = upper_mean.copy()
        consistent_mean[np.logical_not(self._valid_columns)] = 0.0
        lower_mean = upper_mean.copy()
        lower_mean[lower_mean < 0] = 0.0
        n = self._loss_diff.shape[0]
        counts = np.empty((self.reps, n))
        for i in range(self.reps):
            counts[i] = np.bincount(np.asarray(self.bootstrap.update_indices()), minlength=n)
        star = counts @ self._loss_diff / n  # reps x k: each replication's mean loss differential
        simulated = np.empty((3, self.k, self.reps))  # written contiguously, read as arch's (k, reps, 3)
        for j, mean in enumerate((lower_mean, consistent_mean, upper_mean)):
            simulated[j] = (star - mean).T
        self._simulated_vals = simulated.transpose(1, 2, 0)


def spa_test(bench_losses: Any, model_losses: Any, *, horizon: int = 1, block_size: int | None = None,
             reps: int = DEFAULT_REPS, seed: int = 0) -> SPAResult:
    """Hansen's test of superior predictive ability: does any config beat the benchmark?

    H0: no config has a smaller expected loss than the benchmark. Each config's loss
    differential ``d_k = bench - model_k`` is studentized by its long-run standard
    deviation ω̂_k (:func:`hac_variance`) before it goes to ``arch.bootstrap.SPA``, whose
    stationary bootstrap then yields Hansen's studentized statistic
    ``max_k sqrt(n) mean(d_k) / ω̂_k``: arch 8.0.0 computes ω̂_k but does not divide by it in
    ``compute()`` (read in its source), so an unstudentized call would let the noisiest
    config dominate the maximum.

    Args:
        bench_losses: benchmark loss per sample (n).
        model_losses: n × k losses of the configs entered.
        horizon: forecast horizon (the block is never shorter).
        block_size: mean block length; ``None`` chooses it by :data:`BLOCK_RULE`.
        reps: bootstrap replications.
        seed: bootstrap seed (the result is reproducible).

    Raises:
        RunError: shapes differ, a loss is not finite, or ``reps`` < 100.
    """
    b, x = _loss_matrix(bench_losses, model_losses)
    n, k = x.shape
    if reps < 100:
        raise RunError(f"SPA: reps must be >= 100 for a p-value to two digits; got {reps}")
    if n < MIN_BOOTSTRAP_OBS:
        return SPAResult(f"not enough test samples for the bootstrap ({n} < {MIN_BOOTSTRAP_OBS})", None, None, None,
                         k, n, None, BLOCK_RULE, reps, seed)
    if k < MIN_SPA_CONFIGS:
        return SPAResult(f"not enough finished configs for the SPA test ({k} < {MIN_SPA_CONFIGS}); the winner's DM "
                         "test is the test", None, None, None, k, n, None, BLOCK_RULE, reps, seed)
    diff = b[:, None] - x  # positive where the config has the smaller loss
    blk = block_size or choose_block_size(diff.mean(axis=1), horizon=horizon)
    omega = np.sqrt(np.maximum(hac_variance(diff, block=blk), 0.0))
    # A config whose loss differential is constant (ω = 0: e.g. it forecasts exactly what
    # the benchmark does) has no sampling variation to test; it enters Hansen's statistic
    # max(0, max_k t_k) as 0 only if it does not beat the benchmark, so it is left out.
    live = omega > 0
    if not live.any():
        # Every config equals the benchmark up to a constant: none has a smaller loss unless
        # the constant says so, and then it does so on every sample.
        p = 0.0 if float(diff.mean(axis=0).max()) > 0 else 1.0
        return SPAResult("ok", p, p, p, k, n, blk, BLOCK_RULE, reps, seed)
    scaled = diff[:, live] / omega[live]
    spa = _CountingSPA(np.zeros(n), -scaled, block_size=blk, reps=reps, bootstrap="stationary", studentize=True,
                       seed=seed)
    spa.compute()
    pv = spa.pvalues
    return SPAResult("ok", float(pv["consistent"]), float(pv["lower"]), float(pv["upper"]), k, n, blk, BLOCK_RULE,
                     reps, seed)


@dataclass(frozen=True)
class MCSResult:
    """The model confidence set at ``size``: forecasts not beaten by the others.

    Attributes:
        status: ``ok`` or why it was not computed.
        included: names of the forecasts in the set.
        pvalues: MCS p-value per forecast name.
        size: test size (0.10 → a 90 % set).
    """

    status: str
    included: list[str] = field(default_factory=list)
    pvalues: dict[str, float] = field(default_factory=dict)
    size: float = 0.10
    block_size: int | None = None
    reps: int = DEFAULT_REPS
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_confidence_set(losses: Any, names: list[str], *, size: float = 0.10, block_size: int,
                         reps: int = DEFAULT_REPS, seed: int = 0) -> MCSResult:
    """Hansen–Lunde–Nason MCS (``arch.bootstrap.MCS``, R method, stationary bootstrap).

    Args:
        losses: n × k losses (benchmark included as one of the columns if it should compete).
        names: a name per column.
        size: test size.
        block_size: mean block length (the SPA's).
        reps: bootstrap replications.
        seed: bootstrap seed.

    Raises:
        RunError: names do not match the columns, or a loss is not finite.
    """
    x = np.asarray(losses, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise RunError(f"MCS: expected n x {len(names)} losses (one column per name); got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise RunError("MCS: losses must be finite")
    n, k = x.shape
    if n < MIN_BOOTSTRAP_OBS or k < 2:
        return MCSResult(f"not enough test samples or forecasts ({n} samples, {k} forecasts)", size=size,
                         block_size=block_size, reps=reps, seed=seed)
    if k > MCS_MAX_MODELS:
        return MCSResult(f"not computed: {k} forecasts > {MCS_MAX_MODELS} (the MCS bootstraps every pair)",
                         size=size, block_size=block_size, reps=reps, seed=seed)
    # Identical loss columns (the same config and seed trained twice, copies of one
    # forecast) have a zero-variance differential, on which arch's MCS fails with an
    # IndexError: test each distinct column once and give its copies the same p-value.
    _, first, inverse = np.unique(x, axis=1, return_index=True, return_inverse=True)
    cols = np.sort(first)  # distinct columns in their original order (same bootstrap as before)
    which = np.argsort(np.argsort(first))[np.asarray(inverse).reshape(-1)]  # column -> position in cols
    if len(cols) < 2:
        return MCSResult("ok", list(names), dict.fromkeys(names, 1.0), size, block_size, reps, seed)
    mcs = MCS(x[:, cols], size=size, reps=reps, block_size=block_size, method="R", bootstrap="stationary",
              seed=seed)
    mcs.compute()
    kept = {int(str(i)) for i in mcs.included}
    pv = {int(str(i)): float(p) for i, p in mcs.pvalues["Pvalue"].items()}
    inc = [nm for nm, u in zip(names, which, strict=True) if int(u) in kept]
    pvals = {nm: pv[int(u)] for nm, u in zip(names, which, strict=True) if int(u) in pv}
    return MCSResult("ok", sorted(inc, key=lambda s: -pvals.get(s, 0.0)), pvals, size, block_size, reps, seed)


def expected_max_sharpe(*, n_trials: int, sr_variance: float) -> float:
    """E[max Sharpe] of ``n_trials`` independent zero-skill strategies (Bailey & López de Prado 2014).

    ``sqrt(V) ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))`` with γ the Euler–Mascheroni
    constant; 0 for a single trial.
    """
    if n_trials < 1:
        raise RunError(f"deflated Sharpe: n_trials must be >= 1; got {n_trials}")
    if not (math.isfinite(sr_variance) and sr_variance >= 0):
        raise RunError(f"deflated Sharpe: the variance of the trials' Sharpe ratios must be >= 0; got {sr_variance}")
    if n_trials == 1:
        return 0.0
    nd = stats.norm
    return math.sqrt(sr_variance) * ((1 - EULER_GAMMA) * nd.ppf(1 - 1 / n_trials)
                                     + EULER_GAMMA * nd.ppf(1 - 1 / (n_trials * math.e)))


def deflated_sharpe(sr: float, *, n_trials: int, sr_variance: float, n_obs: int, skew: float,
                    kurtosis: float) -> float:
    """Probability that the true Sharpe ratio is above the best of ``n_trials`` lucky ones.

    Bailey & López de Prado (2014): ``PSR(SR0)`` with ``SR0`` =
    :func:`expected_max_sharpe`, i.e. ``Φ((SR - SR0) sqrt(T - 1) / sqrt(1 - γ3 SR + (γ4 - 1)/4 SR²))``.
    All Sharpe ratios are per observation (not annualised) and on the same frequency.

    Args:
        sr: the selected strategy's Sharpe ratio (per observation).
        n_trials: independent configurations tried.
        sr_variance: variance of the trials' Sharpe ratios (per observation).
        n_obs: returns behind ``sr`` (T).
        skew: skewness of those returns (γ3).
        kurtosis: kurtosis of those returns (γ4; 3 for a normal, not excess).

    Raises:
        RunError: a non-finite input, n_obs < 2, n_trials < 1, or a negative variance term.
    """
    for name, v in (("sr", sr), ("skew", skew), ("kurtosis", kurtosis)):
        if not math.isfinite(v):
            raise RunError(f"deflated Sharpe: {name} must be finite; got {v}")
    if n_obs < 2:
        raise RunError(f"deflated Sharpe: n_obs must be >= 2; got {n_obs}")
    sr0 = expected_max_sharpe(n_trials=n_trials, sr_variance=sr_variance)
    denom = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr ** 2
    if not denom > 0:
        raise RunError(f"deflated Sharpe: 1 - skew*SR + (kurtosis-1)/4*SR^2 = {denom:.4g} is not positive "
                       f"(skew {skew}, kurtosis {kurtosis}, SR {sr}); check the moments")
    return float(stats.norm.cdf((sr - sr0) * math.sqrt(n_obs - 1) / math.sqrt(denom)))

"""The forecast-comparison statistics against hand computations, synthetic truths and a published example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from arch.bootstrap import SPA
from scipy import stats

from reports.statistics import (
    MIN_BOOTSTRAP_OBS,
    deflated_sharpe,
    diebold_mariano,
    expected_max_sharpe,
    hac_variance,
    model_confidence_set,
    spa_test,
)
from trainables.errors import RunError

# Loss differential d = model - benchmark of a small fixed series (n = 8):
D = np.array([-1.0, 0.0, -2.0, 1.0, -1.0, -1.0, 0.0, -2.0])
BENCH = np.full(8, 5.0)


def test_dm_h1_equals_the_hand_computation() -> None:
    # mean d = -6/8 = -0.75; deviations x = d + 0.75 = [-.25, .75, -1.25, 1.75, -.25, -.25, .75, -1.25]
    # γ0 = Σx²/n = 7.5/8 = 0.9375; h = 1: V = γ0/n = 0.1171875; DM = -0.75/sqrt(V) = -2.19089
    # HLN factor sqrt((n + 1 - 2h + h(h-1)/n)/n) = sqrt(7/8) -> DM* = -2.04939; p = P(t_7 <= DM*)
    r = diebold_mariano(BENCH + D, BENCH, horizon=1)
    dm = -0.75 / math.sqrt(0.9375 / 8) * math.sqrt(7 / 8)
    assert r.statistic == pytest.approx(dm, rel=1e-12) == pytest.approx(-2.0493901531919194, rel=1e-12)
    assert r.pvalue == pytest.approx(stats.t.cdf(dm, df=7), rel=1e-12) == pytest.approx(0.039801006, rel=1e-6)
    assert (r.n, r.horizon, r.mean_diff, r.variance, r.status) == (8, 1, -0.75, "acf", "ok")


def test_dm_h3_equals_the_hand_computation() -> None:
    # γ1 = Σ x_t x_{t-1} / n = (-.1875 - .9375 - 2.1875 - .4375 + .0625 - .1875 - .9375)/8 = -4.8125/8
    # γ2 = Σ x_t x_{t-2} / n = (.3125 + 1.3125 + .3125 - .4375 - .1875 + .3125)/8 = 1.625/8
    # V = (γ0 + 2(γ1 + γ2))/n = (0.9375 - 0.796875)/8 = 0.140625/8
    # HLN: (n + 1 - 2h + h(h-1)/n)/n = (9 - 6 + 6/8)/8 = 0.46875
    r = diebold_mariano(BENCH + D, BENCH, horizon=3)
    g0, g1, g2 = 7.5 / 8, -4.8125 / 8, 1.625 / 8
    dm = -0.75 / math.sqrt((g0 + 2 * (g1 + g2)) / 8) * math.sqrt(0.46875)
    assert r.statistic == pytest.approx(dm, rel=1e-12) == pytest.approx(-3.872983346, rel=1e-9)
    assert r.pvalue == pytest.approx(stats.t.cdf(dm, df=7), rel=1e-12)
    assert r.variance == "acf"
    # One-sided the other way and two-sided from the same statistic.
    assert diebold_mariano(BENCH + D, BENCH, horizon=3, alternative="greater").pvalue == pytest.approx(1 - r.pvalue)
    assert diebold_mariano(BENCH + D, BENCH, horizon=3, alternative="two-sided").pvalue == pytest.approx(2 * r.pvalue)


def test_dm_falls_back_to_bartlett_weights_when_the_variance_is_not_positive() -> None:
    # d alternates -0.5, -2.5: x = ±1, γ0 = 1, γ1 = -7/8; h = 2: γ0 + 2γ1 = -0.75 < 0 (not a variance);
    # Bartlett weight 1 - 1/2: γ0 + 2 * 0.5 * γ1 = 0.125; HLN (9 - 4 + 2/8)/8.
    d = -1.5 + (-1.0) ** np.arange(8)
    r = diebold_mariano(BENCH + d, BENCH, horizon=2)
    assert r.variance == "bartlett"
    assert r.statistic == pytest.approx(-1.5 / math.sqrt(0.125 / 8) * math.sqrt((9 - 4 + 2 / 8) / 8), rel=1e-12)


def test_dm_bad_input_is_one_line() -> None:
    with pytest.raises(RunError, match=r"differ in length \(8 vs 7\)"):
        diebold_mariano(BENCH, BENCH[:7], horizon=1)
    with pytest.raises(RunError, match=r"horizon must be a whole number >= 1; got 0"):
        diebold_mariano(BENCH, BENCH, horizon=0)
    with pytest.raises(RunError, match=r"8 samples are not enough for horizon 4; need at least 9"):
        diebold_mariano(BENCH, BENCH, horizon=4)
    with pytest.raises(RunError, match=r"model losses: 1 loss\(es\) are NaN"):
        diebold_mariano(np.r_[BENCH[:7], np.nan], BENCH, horizon=1)
    same = diebold_mariano(BENCH, BENCH, horizon=1)
    assert same.pvalue is None and "constant" in same.status


def _losses(rng: np.random.Generator, n: int) -> np.ndarray:
    # Squared errors of an AR(1)-noisy forecast: serially dependent, like real forecast errors.
    e = np.zeros(n)
    z = rng.standard_normal(n)
    for t in range(n):
        e[t] = 0.4 * e[t - 1] + z[t] if t else z[t]
    return e ** 2


def test_spa_rejects_when_one_config_is_truly_better() -> None:
    rng = np.random.default_rng(11)
    n = 500
    bench = _losses(rng, n)
    noise = np.column_stack([bench * rng.uniform(0.8, 1.25, n) for _ in range(9)])  # same expected loss, roughly
    good = 0.7 * bench  # 30 % smaller loss on every sample's scale
    r = spa_test(bench, np.column_stack([noise, good]), reps=400, seed=3)
    assert r.status == "ok" and r.n_models == 10 and r.n_obs == n and r.reps == 400 and r.seed == 3
    assert r.consistent is not None and r.consistent < 0.01
    assert r.lower is not None and r.upper is not None and r.lower <= r.consistent <= r.upper
    assert r.block_size is not None and r.block_size >= 1


def test_spa_does_not_reject_when_every_config_equals_the_benchmark() -> None:
    rng = np.random.default_rng(12)
    n = 500
    bench = _losses(rng, n)
    # Independent forecasts with exactly the benchmark's error distribution.
    models = np.column_stack([_losses(rng, n) for _ in range(10)])
    r = spa_test(bench, models, reps=400, seed=3)
    assert r.consistent is not None and r.consistent > 0.2
    # Forecasts identical to the benchmark cannot beat it.
    same = spa_test(bench, np.column_stack([bench, bench]), reps=400, seed=3)
    assert same.consistent == 1.0
    # Reproducible: the same seed gives the same p-value.
    assert spa_test(bench, models, reps=400, seed=3) == r


def test_spa_says_not_enough_instead_of_inventing_a_p_value() -> None:
    rng = np.random.default_rng(0)
    short = spa_test(np.ones(MIN_BOOTSTRAP_OBS - 1), rng.random((MIN_BOOTSTRAP_OBS - 1, 3)))
    assert short.consistent is None and short.status == "not enough test samples for the bootstrap (29 < 30)"
    one = spa_test(np.ones(100), rng.random((100, 1)))
    assert one.consistent is None and one.status.startswith("not enough finished configs for the SPA test (1 < 2)")
    with pytest.raises(RunError, match=r"expected one row per benchmark sample \(100 x configs\); got shape \(99, 2\)"):
        spa_test(np.ones(100), rng.random((99, 2)))


def test_studentizing_variance_is_arch_spa_s_own() -> None:
    rng = np.random.default_rng(5)
    bench = _losses(rng, 200)
    models = np.column_stack([_losses(rng, 200) for _ in range(4)])
    spa = SPA(bench, models, block_size=4)
    spa._compute_variance()  # the estimator arch uses (and, in 8.0.0, does not divide by)
    assert np.allclose(hac_variance(bench[:, None] - models, block=4), spa._loss_diff_var, rtol=1e-10)


def test_model_confidence_set_drops_a_clearly_worse_forecast() -> None:
    rng = np.random.default_rng(9)
    base = _losses(rng, 400)
    losses = np.column_stack([base, base * rng.uniform(0.9, 1.1, 400), 3.0 * base])
    r = model_confidence_set(losses, ["persistence", "a", "bad"], size=0.10, block_size=2, reps=300, seed=1)
    assert r.status == "ok" and "bad" not in r.included and "persistence" in r.included
    big = model_confidence_set(np.ones((40, 61)), [str(i) for i in range(61)], block_size=1)
    assert big.status.startswith("not computed: 61 forecasts > 60")


def test_model_confidence_set_tests_identical_forecasts_once() -> None:
    """Copies of one forecast (the same config and seed trained twice) made arch's MCS raise IndexError."""
    rng = np.random.default_rng(9)
    base = _losses(rng, 400)
    a = base * rng.uniform(0.9, 1.1, 400)
    losses = np.column_stack([base, a, 3.0 * base, a])
    r = model_confidence_set(losses, ["persistence", "a", "bad", "a_copy"], size=0.10, block_size=2, reps=300, seed=1)
    once = model_confidence_set(losses[:, :3], ["persistence", "a", "bad"], size=0.10, block_size=2, reps=300, seed=1)
    assert r.status == "ok" and r.pvalues["a_copy"] == r.pvalues["a"] == once.pvalues["a"]
    assert set(r.included) == set(once.included) | {"a_copy"} and "bad" not in r.included
    same = model_confidence_set(np.column_stack([base, base]), ["persistence", "copy"], block_size=2)
    assert same.status == "ok" and same.included == ["persistence", "copy"]


def test_deflated_sharpe_matches_the_papers_worked_example() -> None:
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", J. Portfolio Management 40(5), numerical
    # example: N = 100 trials, variance of their annualised Sharpe ratios V = 1/2, T = 1250 daily returns
    # (5 years, 250 a year), selected annualised SR = 2.5, skewness -3, kurtosis 10.
    # The paper: E[max SR] = 0.1132 (daily, i.e. about 1.79 annualised) and DSR = 0.9004.
    daily_var, daily_sr = 0.5 / 250, 2.5 / math.sqrt(250)
    assert expected_max_sharpe(n_trials=100, sr_variance=daily_var) == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe(daily_sr, n_trials=100, sr_variance=daily_var, n_obs=1250, skew=-3, kurtosis=10)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    # One trial: no deflation, the probabilistic Sharpe ratio against 0.
    assert expected_max_sharpe(n_trials=1, sr_variance=daily_var) == 0.0
    # More trials, less confidence.
    assert deflated_sharpe(daily_sr, n_trials=1000, sr_variance=daily_var, n_obs=1250, skew=-3, kurtosis=10) < dsr


def test_deflated_sharpe_bad_input_is_one_line() -> None:
    with pytest.raises(RunError, match=r"n_trials must be >= 1; got 0"):
        deflated_sharpe(0.1, n_trials=0, sr_variance=0.01, n_obs=100, skew=0, kurtosis=3)
    with pytest.raises(RunError, match=r"n_obs must be >= 2; got 1"):
        deflated_sharpe(0.1, n_trials=5, sr_variance=0.01, n_obs=1, skew=0, kurtosis=3)
    with pytest.raises(RunError, match=r"is not positive \(skew 30"):
        deflated_sharpe(0.5, n_trials=5, sr_variance=0.01, n_obs=100, skew=30, kurtosis=3)


@pytest.mark.parametrize(("k", "block", "seed"), [(3, 2, 1), (40, 5, 7), (200, 1, 3)])
def test_spa_from_bootstrap_counts_equals_arch_spa(k: int, block: int, seed: int) -> None:
    """The reports' SPA averages each resample as bincount @ losses; arch copies the rows. Same p-values."""
    from reports.statistics import _CountingSPA

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((150, k)) * rng.uniform(0.5, 2.0, k) + rng.normal(0.0, 0.15, k)
    ours = _CountingSPA(np.zeros(150), -x, block_size=block, reps=300, bootstrap="stationary", studentize=True,
                        seed=seed)
    ref = SPA(np.zeros(150), -x, block_size=block, reps=300, bootstrap="stationary", studentize=True, seed=seed)
    ours.compute()
    ref.compute()
    assert ours.pvalues.to_dict() == ref.pvalues.to_dict()
    assert 0.0 < ref.pvalues["upper"] < 1.0  # a non-trivial case, not all-0 or all-1

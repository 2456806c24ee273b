"""The report's forecast-comparison tests per asset/timeframe, from a run's test predictions.

For each group: every finished trial's test predictions (its best epoch's forecasts on
the test span, read by :func:`trainables.predictions.read_prediction_columns`) are read and aligned on the group's test span; the squared errors of the
trials and of persistence (``y_persistence``, same rows) then feed

- a Diebold–Mariano test of each finished trial against persistence (``dm_stat``,
  ``dm_pvalue`` in the leaderboard),
- Hansen's SPA test of "no finished config beats persistence" over all of them,
- the model confidence set at 10 % (configs and persistence competing),
- the deflated Sharpe ratio of the winner's long/flat backtest, deflated by the number of
  finished configs and the variance of their backtests' Sharpe ratios.

Trials stopped by ASHA, failed or still running have no test predictions and are "not
entered"; a finished trial whose predictions do not cover the test span exactly (rows
missing or extra, other timestamps, other labels, NaN forecasts) is excluded and listed
with the reason, never silently mixed in. The statistics live in
:mod:`reports.statistics`; this module only reads and aligns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from scipy import stats as sps

from reports import statistics as st
from reports.backtest import DEFAULT_FEE, net_returns, next_candle_returns, predicted_multiplier
from reports.collect import Run, Trial
from search_spaces.loader import format_errors
from search_spaces.schema import DEFAULT_ALPHA, ReportOnly
from trainables.data.candles import TIMEFRAMES
from trainables.errors import RunError
from trainables.predictions import COLUMNS, SpanCache, has_predictions, read_prediction_columns
from trainables.records import excerpt

#: Size of the model confidence set's test (a 90 % set).
MCS_SIZE = 0.10
_COLUMNS = list(COLUMNS)


def report_alpha(run: Run) -> float:
    """``report.alpha`` of the run's ``spec.yaml`` (default 0.05 when the spec has none).

    Raises:
        RunError: the value breaks the schema's rule (a hand-edited ``spec.yaml``).
    """
    return spec_alpha(run.spec, run.path / "spec.yaml")


def spec_alpha(spec: dict[str, Any], path: Path) -> float:
    """``report.alpha`` of a merged spec read from ``path`` (default 0.05).

    Raises:
        RunError: one line naming ``path``, ``report.alpha`` (or the bad key) and the rule.
    """
    if spec.get("report") is None:
        return DEFAULT_ALPHA
    try:
        return float(ReportOnly.model_validate({"report": spec["report"]}).report.alpha)
    except ValidationError as e:
        raise RunError("; ".join(format_errors(path, e))) from None


@dataclass
class GroupLosses:
    """Test-span squared errors of a group's finished trials and of persistence, aligned by row.

    Attributes:
        group: ``ASSET/TF``.
        horizon: forecast horizon (candles).
        timestamps: the test samples (forecast origins, ISO text as the span file holds them).
        persistence: persistence's squared error per sample.
        trial_ids: the trials entered, one per column of ``losses``.
        losses: n × k squared errors.
        preds: n × k forecasts ``y_pred`` (for the backtests).
        reference: the test rows every entered trial shares (timestamp, close, y_true,
            y_persistence), from the first one.
        not_entered: trial ids by reason: ``stopped``, ``failed``, ``running``.
        excluded: finished trials left out, with why.
    """

    group: str
    horizon: int
    timestamps: np.ndarray
    persistence: np.ndarray
    trial_ids: list[str]
    losses: np.ndarray
    preds: np.ndarray
    reference: pd.DataFrame
    not_entered: dict[str, list[str]]
    excluded: dict[str, str]


def _span_ts(v: Any) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(v, tz="UTC") if v else None
    except (TypeError, ValueError):
        return None


def group_losses(run: Run, group: str) -> GroupLosses:
    """Read and align the test predictions of every finished trial of ``group``.

    A trial covers the test span when its rows are exactly the group's test samples
    (``samples.test`` rows from ``spans.test[0]`` to ``spans.test[1]`` in ``groups.json``)
    with the same timestamps and labels as the other trials; anything else is excluded.
    """
    info = run.groups.get(group) or {}
    span = (info.get("spans") or {}).get("test") or [None, None]
    first, last = _span_ts(span[0]), _span_ts(span[1])
    n_test = (info.get("samples") or {}).get("test")
    horizon = int(info.get("horizon") or 1)
    trials = [t for t in run.trials if t.group == group]
    not_entered: dict[str, list[str]] = {"stopped": [], "failed": [], "running": []}
    excluded: dict[str, str] = {}
    ref: dict[str, np.ndarray] | None = None
    spans: SpanCache = {}  # the group's span file is read once, not once per trial
    ids: list[str] = []
    cols: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    for t in trials:
        if t.status != "finished":
            not_entered.setdefault(t.status, []).append(t.trial_id)
            continue
        why, df = _check(t, first, last, n_test, spans)
        if df is not None and ref is not None:
            # Trials of one span file share its arrays: identity settles it without comparing rows.
            if df["timestamp"] is not ref["timestamp"] and (
                    len(df["timestamp"]) != len(ref["timestamp"]) or not np.array_equal(df["timestamp"], ref["timestamp"])):
                why = "its test timestamps differ from the other trials' (another span or sample set)"
            elif df["y_true"] is not ref["y_true"] and not np.allclose(df["y_true"], ref["y_true"], rtol=1e-6, atol=0.0):
                why = "its test labels differ from the other trials' (another target or data)"
        if why:
            excluded[t.trial_id] = why
            continue
        assert df is not None
        if ref is None:
            ref = df
        ids.append(t.trial_id)
        cols.append((df["y_pred"] - df["y_true"]) ** 2)
        preds.append(df["y_pred"])
    if ref is None:
        empty = np.empty(0)
        return GroupLosses(group, horizon, empty, empty, [], np.empty((0, 0)), np.empty((0, 0)),
                           pd.DataFrame(columns=_COLUMNS), not_entered, excluded)
    pers = (ref["y_persistence"] - ref["y_true"]) ** 2
    return GroupLosses(group, horizon, ref["timestamp"], pers, ids, np.column_stack(cols), np.column_stack(preds),
                       pd.DataFrame({c: ref[c] for c in _COLUMNS}), not_entered, excluded)


def _check(t: Trial, first: pd.Timestamp | None, last: pd.Timestamp | None,
           n_test: Any, spans: SpanCache) -> tuple[str, dict[str, np.ndarray] | None]:
    """(why the trial cannot enter or "", its predictions)."""
    if t.checkpoint is None or not has_predictions(t.checkpoint):
        return "no test predictions in its checkpoint", None
    try:
        df = read_prediction_columns(t.checkpoint, cache=spans)
    except RunError as e:
        return f"unreadable predictions ({excerpt(str(e).replace(str(t.checkpoint), 'the checkpoint'), 120, plain=True)})", None
    missing = set(_COLUMNS) - set(df)
    if missing:
        return f"its predictions lack column(s) {', '.join(sorted(missing))}", None
    ts = df["timestamp"]
    if isinstance(n_test, int) and len(ts) != n_test:
        return f"{len(ts)} prediction rows, the test span has {n_test} samples", None
    lo, hi = _span_ts(ts[0]), _span_ts(ts[-1])
    if first is not None and last is not None and (lo != first or hi != last):
        return (f"predictions cover {ts[0]} → {ts[-1]}, the test span is {first.isoformat()} → "
                f"{last.isoformat()}"), None
    return "", df  # the reader refused NaN, infinities and a repeated timestamp


@dataclass
class GroupTests:
    """Every test of one group, as the report shows and writes them."""

    group: str
    alpha: float
    n_obs: int
    entered: list[str]
    not_entered: dict[str, list[str]]
    excluded: dict[str, str]
    dm: dict[str, st.DMResult]
    spa: st.SPAResult
    mcs: st.MCSResult
    deflated: dict[str, Any] = field(default_factory=dict)
    #: the aligned losses and forecasts (for the backtests; not written anywhere).
    losses: GroupLosses | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "n_obs": self.n_obs, "entered": len(self.entered),
                "not_entered": {k: len(v) for k, v in self.not_entered.items()},
                "not_entered_ids": self.not_entered, "excluded": self.excluded,
                "spa": self.spa.to_dict(), "mcs": self.mcs.to_dict(), "deflated_sharpe": self.deflated}


def _seed(run: Run) -> int:
    s = (run.spec.get("search") or {}).get("seed") if isinstance(run.spec.get("search"), dict) else None
    return int(s) if isinstance(s, int) and not isinstance(s, bool) and s >= 0 else 0


def group_tests(run: Run, group: str, *, alpha: float, reps: int = st.DEFAULT_REPS) -> GroupTests:
    """DM of every entered trial, SPA and MCS over all of them, for one group."""
    gl = group_losses(run, group)
    seed = _seed(run)
    dm: dict[str, st.DMResult] = {}
    n = len(gl.persistence)
    for j, tid in enumerate(gl.trial_ids):
        try:
            dm[tid] = st.diebold_mariano(gl.losses[:, j], gl.persistence, horizon=gl.horizon)
        except RunError as e:  # too few samples for the horizon: say so, no p-value
            dm[tid] = st.DMResult(None, None, n, gl.horizon, math.nan, "acf", "less", status=str(e))
    spa = st.spa_test(gl.persistence, gl.losses if gl.trial_ids else np.empty((n, 0)), horizon=gl.horizon,
                      reps=reps, seed=seed)
    if spa.block_size is not None:
        mcs = st.model_confidence_set(np.column_stack([gl.persistence, gl.losses]), ["persistence", *gl.trial_ids],
                                      size=MCS_SIZE, block_size=spa.block_size, reps=reps, seed=seed)
    else:
        mcs = st.MCSResult(f"not computed: {spa.status}", size=MCS_SIZE, reps=reps, seed=seed)
    return GroupTests(group, alpha, n, gl.trial_ids, gl.not_entered, gl.excluded, dm, spa, mcs, losses=gl)


def deflate_winner(tests: GroupTests, winner_id: str | None, *, target: str, timeframe: str,
                   fee: float = DEFAULT_FEE) -> dict[str, Any]:
    """Deflated Sharpe ratio of the winner's long/flat backtest (Bailey & López de Prado 2014).

    Number of trials = finished configs of the group (every one was a candidate); the
    variance is that of their backtests' per-candle Sharpe ratios (trials that never trade
    have none and are left out of it); skewness and kurtosis are the winner's net returns'.
    """
    gl = tests.losses
    out: dict[str, Any] = {"status": "", "sharpe": None, "deflated_sharpe": None,
                           "n_trials": len(tests.entered) + len(tests.excluded), "sr_variance": None}
    if gl is None or winner_id is None or winner_id not in gl.trial_ids:
        out["status"] = "the winner has no test predictions that cover the test span"
        return out
    ppy = pd.Timedelta(days=365.25) / TIMEFRAMES[timeframe]
    ref = gl.reference
    try:
        # Every entered trial backtested at once, exactly as reports.backtest does one.
        ret = next_candle_returns(ref, target=target, horizon=gl.horizon, timeframe=timeframe)
        mult = predicted_multiplier(target, gl.preds, ref["close"].to_numpy(np.float64)[:, None])
    except RunError as e:
        out["status"] = str(e)
        return out
    keep = np.isfinite(ret)
    if not keep.any():
        out["status"] = "no candle of the test span has a known next return"
        return out
    net_all, _ = net_returns(ret[keep], (mult[keep] > 1.0).astype(np.float64), fee)
    sd = net_all.std(axis=0, ddof=1) if len(net_all) > 1 else np.full(net_all.shape[1], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        srs = np.where(sd > 0, net_all.mean(axis=0) / sd, np.nan)  # per candle
    finite = srs[np.isfinite(srs)]
    w = gl.trial_ids.index(winner_id)
    net = net_all[:, w]
    sr = float(srs[w])
    out.update({"sharpe": sr * math.sqrt(ppy) if math.isfinite(sr) else None, "sharpe_per_candle": sr,
                "n_obs": len(net), "sr_variance": float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0})
    if not math.isfinite(sr):
        out["status"] = "the winner's strategy never trades (no Sharpe ratio)"
        return out
    skew = float(sps.skew(net)) if np.ptp(net) > 0 else 0.0
    kurt = float(sps.kurtosis(net, fisher=False)) if np.ptp(net) > 0 else 3.0
    out.update({"skew": skew, "kurtosis": kurt})
    try:
        out["deflated_sharpe"] = st.deflated_sharpe(sr, n_trials=max(1, out["n_trials"]),
                                                    sr_variance=out["sr_variance"], n_obs=len(net), skew=skew,
                                                    kurtosis=kurt)
        out["expected_max_sharpe"] = float(st.expected_max_sharpe(n_trials=max(1, out["n_trials"]),
                                                                  sr_variance=out["sr_variance"])) * math.sqrt(ppy)
        out["status"] = "ok"
    except RunError as e:
        out["status"] = str(e)
    return out


def add_dm_columns(board: pd.DataFrame, tests: dict[str, GroupTests]) -> pd.DataFrame:
    """``board`` with ``dm_stat`` and ``dm_pvalue`` per finished trial (DM vs persistence; blank otherwise)."""
    stat: dict[str, float] = {}
    pval: dict[str, float] = {}
    for gt in tests.values():
        for tid, r in gt.dm.items():
            stat[tid] = r.statistic if r.statistic is not None else math.nan
            pval[tid] = r.pvalue if r.pvalue is not None else math.nan
    out = board.copy()
    out["dm_stat"] = [stat.get(t, math.nan) for t in out["trial_id"]] if len(out) else pd.Series(dtype=float)
    out["dm_pvalue"] = [pval.get(t, math.nan) for t in out["trial_id"]] if len(out) else pd.Series(dtype=float)
    return out


def beats_persistence(tests: GroupTests | None, winner_id: str | None) -> tuple[bool, str]:
    """Whether the tests say the winner beats persistence at ``alpha``, and the numbers as one phrase."""
    if tests is None or winner_id is None:
        return False, "no test predictions to test"
    dm = tests.dm.get(winner_id)
    spa = tests.spa
    a = tests.alpha
    dm_txt = (f"DM p = {dm.pvalue:.3g}" if dm is not None and dm.pvalue is not None else
              f"DM: {dm.status if dm is not None else 'the winner was not entered'}")
    spa_txt = (f"SPA p = {spa.consistent:.3g} over {spa.n_models} configs" if spa.consistent is not None else
               f"SPA: {spa.status}")
    ok = (dm is not None and dm.pvalue is not None and dm.pvalue < a and spa.consistent is not None
          and spa.consistent < a)
    return ok, f"{dm_txt}; {spa_txt}; alpha {a:g}"

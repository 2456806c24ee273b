"""Charts of a run, as Plotly figures serialised for inline embedding.

Everything here reads :class:`reports.collect.Trial` objects already on disk; nothing
trains. Optimisation history and parameter importance go through an **in-memory Optuna
study** rebuilt from the results (the sweep's own studies live in Ray's searcher state,
which we do not want to unpickle), so the report works for any run directory.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from reports.collect import SCORED, Trial

_HEIGHT = 330
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white", "height": _HEIGHT, "margin": {"l": 60, "r": 20, "t": 40, "b": 45},
    "legend": {"orientation": "h", "y": -0.2}, "font": {"size": 11},
}
# Optuna is imported where it is used, not here: ``import optuna`` costs ~0.13 s and
# ``optuna.importance`` ~1.3 s more (scikit-learn, SciPy; measured on 2 cores), which a
# report built without charts, or a group with fewer than 3 scored trials, never needs.
# Plotly is imported above: it loads its figure classes lazily, so it costs ~20 ms.

# fANOVA's cost grows with trees x depth x trials; 32 shallow-ish trees keep a 1,000-trial
# group to a few seconds and their importances agree with 64 deep trees to about 0.01.
FANOVA_TREES = 32
FANOVA_DEPTH = 16
# ... and its cost grows faster than linearly in trials (10.5 s CPU for 2,000 scored trials,
# 3.4 s for 1,000): above this many, fANOVA fits a seeded random sample of them, and says so.
FANOVA_MAX_TRIALS = 1000


def to_json(fig: Any) -> str:
    """Figure → JSON safe to place inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` only occur inside JSON strings, where ``\\u003c`` etc. mean the
    same; escaping them means no data value (a trial error, an asset name) can close the
    script element or open a comment, whatever it contains.
    """
    text = pio.to_json(fig, validate=False, pretty=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _fig(**layout: Any) -> Any:
    fig = go.Figure()
    fig.update_layout(**{**_LAYOUT, **layout})
    return fig


def _plain(v: Any) -> Any:
    """A JSON-able, hashable parameter value (lists become strings)."""
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return json.dumps(v, sort_keys=True, default=str)


def search_params(t: Trial, members: Sequence[str]) -> dict[str, Any]:
    """The searched parameters of a trial, named as the sweep's Optuna study names them.

    Indicators are read from the subset the trial trained (``config["indicators"]``): the
    sweep samples ``ind.size`` and one priority ``ind.<member>`` per member, and the
    subset is the ``ind.size`` highest (:mod:`search_spaces.space`). Here ``ind.size`` is
    that size and ``ind.<member>`` whether the member was in, so an importance bar reads
    "using this indicator" rather than "its rank among priorities", which only matters
    through whether it made the cut. Grid runs get the same parameters.
    """
    c = t.config
    out: dict[str, Any] = {}
    for k in ("family", "lookback", "batch_size", "learning_rate", "weight_decay", "loss", "optimizer"):
        if k in c:
            out[k] = _plain(c[k])
    fam = c.get("family")
    for k, v in (c.get("model") or {}).items():
        out[f"{fam}.{k}"] = _plain(v)
    chosen = set(c.get("indicators") or [])
    out["ind.size"] = len(chosen)
    for m in members:
        out[f"ind.{m}"] = m in chosen
    for k, v in (c.get("indicator_params") or {}).items():
        out[f"ind.{k}"] = _plain(v)
    return out


def build_study(trials: Sequence[Trial]) -> Any:
    """An in-memory Optuna study of one group: one trial per run trial, in issue order.

    Objective: best validation RMSE (what the sweep ranked by). Failed and running trials
    enter as FAIL so the history shows where they were. Every parameter gets a distribution
    spanning the values seen in this group (log scale for the learning rate, integers for the
    indicator-subset size ``ind.size``); parameters that exist for one model family only are
    left out by Optuna's intersection search space, and constant ones by fANOVA.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    members = sorted({str(m) for t in trials for m in (t.config.get("indicators") or [])})
    params = [search_params(t, members) for t in trials]
    values: dict[str, set[Any]] = {}
    for p in params:
        for k, v in p.items():
            values.setdefault(k, set()).add(v)
    dists: dict[str, Any] = {}
    for k, vs in values.items():
        nums = [v for v in vs if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if k in ("learning_rate", "weight_decay") and len(nums) == len(vs) and len(vs) > 1:
            lo, hi = float(min(nums)), float(max(nums))
            dists[k] = FloatDistribution(lo, hi, log=lo > 0)
        elif k == "ind.size" and len(vs) > 1:  # ordered: fANOVA may split it at any size
            dists[k] = IntDistribution(int(min(nums)), int(max(nums)))
        else:
            dists[k] = CategoricalDistribution(sorted(vs, key=lambda v: (str(type(v)), str(v))))
    order = sorted(range(len(trials)), key=lambda i: (trials[i].number if trials[i].number is not None else 1 << 30,
                                                      trials[i].started if math.isfinite(trials[i].started) else 0))
    study = optuna.create_study(direction="minimize", study_name="report")
    frozen = []
    for i in order:
        t, p = trials[i], params[i]
        ok = t.status in SCORED and math.isfinite(t.best)
        frozen.append(create_trial(
            params=p, distributions={k: dists[k] for k in p},
            value=t.best if ok else None, state=TrialState.COMPLETE if ok else TrialState.FAIL,
            user_attrs={"trial_id": t.trial_id}))
    study.add_trials(frozen)
    return study


def importances(study: Any, *, seed: int = 0) -> tuple[dict[str, float], str]:
    """fANOVA importances (normalised, largest first) and a note for the reader.

    Returns an empty dict and the reason when fANOVA cannot say anything meaningful.
    """
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 3:
        return {}, f"needs at least 3 scored trials; this group has {len(done)}"
    try:
        import optuna
        from optuna.importance import FanovaImportanceEvaluator

        fit = study
        if len(done) > FANOVA_MAX_TRIALS:
            fit = optuna.create_study(direction="minimize", study_name="report-sample")
            fit.add_trials(random.Random(seed).sample(done, FANOVA_MAX_TRIALS))
        imp = optuna.importance.get_param_importances(
            fit, evaluator=FanovaImportanceEvaluator(n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=seed))
    except ImportError as e:
        return {}, f"fANOVA needs scikit-learn ({e})"
    except (ValueError, RuntimeError) as e:
        return {}, f"fANOVA could not be computed: {str(e).splitlines()[0]}"
    # Constant parameters (an always-on indicator, a fixed loss) get 0 by definition: leave them out.
    first = study.get_trials(deepcopy=False)[:1]
    varied = {k for k, d in first[0].distributions.items() if not d.single()} if first else set()
    imp = {k: float(v) for k, v in imp.items() if math.isfinite(float(v)) and k in varied}
    if not imp or max(imp.values()) <= 0:
        return {}, "every searched parameter was constant among scored trials"
    note = (f"fANOVA over {len(done)} scored trials ({FANOVA_TREES} trees); with few trials the forest is "
            "a rough fit, so read this as a hint" if len(done) < 30 else f"fANOVA over {len(done)} scored trials")
    if len(done) > FANOVA_MAX_TRIALS:
        note = f"fANOVA over a random {FANOVA_MAX_TRIALS:,} of the {len(done):,} scored trials (seed {seed})"
    return imp, note


def fig_history(study: Any, persistence_val: float | None) -> Any:
    """Best-so-far validation RMSE over trials (Optuna's plot) with the persistence level."""
    import optuna.visualization as ov

    fig = ov.plot_optimization_history(study, target_name="val RMSE (best epoch)")
    fig.update_layout(**_LAYOUT, title={"text": "Optimisation history (best so far)", "font": {"size": 13}})
    n = len(study.get_trials(deepcopy=False))
    fig.update_xaxes(title_text="trial (in the order the searcher issued them)", tick0=0,
                     dtick=max(1, math.ceil(n / 10)))
    if persistence_val is not None and math.isfinite(persistence_val):
        fig.add_hline(y=persistence_val, line_dash="dot", line_color="#a00",
                      annotation_text="persistence", annotation_position="top left")
    return fig


def fig_importance(imp: dict[str, float]) -> Any:
    """Horizontal bars of fANOVA importances."""
    items = list(imp.items())[:15][::-1]
    fig = _fig(title={"text": "Parameter importance (fANOVA)", "font": {"size": 13}},
               height=max(_HEIGHT, 22 * len(items) + 90), margin={"l": 150, "r": 20, "t": 40, "b": 45})
    fig.add_trace(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                         marker_color="#4062a8", hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_xaxes(title_text="share of explained variance of val RMSE")
    return fig


def indicator_frequency(ranked: Sequence[Trial], top_k: int) -> pd.DataFrame:
    """Share of the top-k and of all scored trials that use each pool member."""
    n_all = len(ranked)
    top = ranked[:top_k]
    all_c = Counter(m for t in ranked for m in (t.config.get("indicators") or []))
    top_c = Counter(m for t in top for m in (t.config.get("indicators") or []))
    rows = [{"indicator": m, "top_k": top_c[m] / len(top) if top else math.nan,
             "all": all_c[m] / n_all if n_all else math.nan} for m in all_c]
    df = pd.DataFrame(rows, columns=["indicator", "top_k", "all"])
    return df.assign(lift=df["top_k"] - df["all"]).sort_values(["lift", "indicator"], ascending=[False, True])


def fig_indicators(freq: pd.DataFrame, top_k: int, n_all: int) -> Any:
    """Grouped bars: how often each indicator is used by the top-k versus by all trials."""
    fig = _fig(title={"text": f"Indicators in the top {top_k} vs all {n_all} scored trials", "font": {"size": 13}})
    fig.add_trace(go.Bar(name=f"top {top_k}", x=freq["indicator"], y=freq["top_k"], marker_color="#2a7d2a"))
    fig.add_trace(go.Bar(name="all", x=freq["indicator"], y=freq["all"], marker_color="#b0b0b0"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="share of trials using it", tickformat=".0%", range=[0, 1.05])
    return fig


def fig_learning_curves(top: Sequence[Trial], persistence_val: float | None) -> Any:
    """Validation RMSE per epoch of the best trials."""
    fig = _fig(title={"text": f"Learning curves of the top {len(top)}", "font": {"size": 13}})
    for i, t in enumerate(top, 1):
        ep = [r.get("epoch") for r in t.history if "val_rmse" in r]
        val = [r.get("val_rmse") for r in t.history if "val_rmse" in r]
        fig.add_trace(go.Scatter(x=ep, y=val, mode="lines+markers", name=f"#{i} {t.config.get('family')} {t.trial_id}",
                                 marker={"size": 4}))
    if persistence_val is not None and math.isfinite(persistence_val):
        fig.add_hline(y=persistence_val, line_dash="dot", line_color="#a00",
                      annotation_text="persistence", annotation_position="top left")
    last = max((len(t.history) for t in top), default=1)
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, math.ceil(last / 10)))
    fig.update_yaxes(title_text="val RMSE")
    return fig


def fig_predictions(pred: pd.DataFrame, *, target: str) -> Any:
    """Predicted against actual on the test span: one dot per forecast, the diagonal is perfect.

    A time-series line of thousands of candles (2,187 on a 4h test span) is a solid band;
    a scatter shows bias and spread at any length.
    """
    fig = _fig(title={"text": f"Winner on the test span: predicted vs actual ({len(pred)} forecasts)",
                      "font": {"size": 13}})
    y, yhat = pred["y_true"].astype(float), pred["y_pred"].astype(float)
    fig.add_trace(go.Scatter(x=y, y=yhat, name="winner", mode="markers",
                             marker={"size": 4, "color": "#1f5fbf", "opacity": 0.5},
                             hovertemplate="actual %{x:.5g}<br>predicted %{y:.5g}<extra></extra>"))
    finite = pd.concat([y, yhat]).replace([math.inf, -math.inf], math.nan).dropna()
    if not finite.empty:
        lo, hi = float(finite.min()), float(finite.max())
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], name="perfect (predicted = actual)", mode="lines",
                                 line={"color": "#888", "dash": "dot", "width": 1}, hoverinfo="skip"))
    if "y_persistence" in pred and pred["y_persistence"].nunique() == 1:
        fig.add_hline(y=float(pred["y_persistence"].iloc[0]), line_dash="dot", line_color="#a00",
                      annotation_text="persistence", annotation_position="bottom right")
    fig.update_xaxes(title_text=f"actual {target}")
    fig.update_yaxes(title_text=f"predicted {target}")
    return fig


def fig_cumulative_error(pred: pd.DataFrame) -> Any | None:
    """Cumulative squared-error difference, persistence minus winner, over the test span.

    Rising means the winner is beating persistence over that stretch, falling that it is
    losing; the end value over the sample count is the difference in MSE. ``None`` when
    ``predictions.csv`` has no persistence column (older runs).
    """
    if "y_persistence" not in pred:
        return None
    x = pd.to_datetime(pred["timestamp"], utc=True)
    y = pred["y_true"].astype(float)
    diff = ((y - pred["y_persistence"].astype(float)) ** 2 - (y - pred["y_pred"].astype(float)) ** 2).cumsum()
    # Short title: the always-visible toolbar takes the top right of the chart.
    fig = _fig(title={"text": "Cumulative squared-error difference vs persistence", "font": {"size": 13}})
    fig.add_trace(go.Scatter(x=x, y=diff, name="Σ (e²persistence − e²winner)", mode="lines",
                             line={"color": "#1f5fbf", "width": 1.5}))
    fig.add_hline(y=0.0, line_dash="dot", line_color="#a00", annotation_text="no difference",
                  annotation_position="bottom left")
    fig.update_yaxes(title_text="Σ e²persistence − e²winner (up: winner better)")
    fig.update_xaxes(title_text="forecast made at the close of (candle open time)")
    return fig


def optuna_figures(study: Any, imp: dict[str, float], *, top: int = 6) -> list[tuple[str, str, Any]]:
    """Optuna's parallel-coordinate, slice and contour plots of the most important parameters.

    ``(kind, title, figure)`` per plot. Only the ``top`` parameters by fANOVA importance
    enter (a slice panel per indicator member would be unreadable), and the contour only
    the two most important: its cost is one interpolated grid per pair of parameters.
    """
    import optuna.visualization as ov

    names = list(imp)[:top]
    if not names:
        return []
    out = []
    specs = [("parallel", "Parallel coordinates (most important parameters)", ov.plot_parallel_coordinate,
              names), ("slice", "Slice: val RMSE against each important parameter", ov.plot_slice, names)]
    if len(names) >= 2:
        specs.append(("contour", f"Contour of the top two: {names[0]} × {names[1]}", ov.plot_contour,
                      names[:2]))
    for kind, title, plot, params in specs:
        fig = plot(study, params=params, target_name="val RMSE")
        fig.update_layout(template="plotly_white", height=_HEIGHT + 30, font={"size": 11},
                          margin={"l": 60, "r": 20, "t": 50, "b": 45}, title={"text": title, "font": {"size": 13}})
        if kind == "slice":
            fig.update_layout(width=None)  # Optuna fixes 300 px per panel; let the page size it
        out.append((kind, title, fig))
    return out


def fig_equity(bt: Any) -> Any:
    """Equity of the long/flat strategy and of buy-and-hold."""
    x = pd.to_datetime(pd.Series(bt.timestamps), utc=True)
    fig = _fig(title={"text": f"Long/flat on the winner's forecasts, fee {bt.fee * 100:g}% per trade",
                      "font": {"size": 13}})
    fig.add_trace(go.Scatter(x=x, y=bt.equity, name="long/flat", mode="lines", line={"color": "#1f5fbf"}))
    fig.add_trace(go.Scatter(x=x, y=bt.equity_buy_hold, name="buy & hold", mode="lines",
                             line={"color": "#888"}))
    fig.add_hline(y=1.0, line_dash="dot", line_color="#a00", annotation_text="flat (persistence)",
                  annotation_position="bottom left")
    fig.update_yaxes(title_text="equity (start = 1)")
    return fig


def fig_spike_f1(series: dict[str, list[float]], thresholds: Sequence[str]) -> Any:
    """Test-span spike F1 by threshold: the winner against each baseline (grouped bars)."""
    fig = _fig(title={"text": "Volatility spikes: test F1 by threshold", "font": {"size": 13}})
    for name, f1 in series.items():
        # NaN (no spike predicted nor realised) stays a gap, not a zero bar.
        # A zero bar is invisible: label every bar, "—" where F1 is undefined.
        fig.add_trace(go.Bar(name=name, x=[f"T = {t}" for t in thresholds],
                             y=[v if math.isfinite(v) else None for v in f1],
                             text=[f"{v:.2f}" if math.isfinite(v) else "—" for v in f1], textposition="outside",
                             marker_color="#1f5fbf" if name == "winner" else None))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="F1 (test span)", range=[0, 1.05])
    return fig

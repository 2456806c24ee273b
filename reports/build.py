"""Write ``RUN_DIR/report/``: leaderboard.csv, leaderboard.json, summary.json and index.html.

``index.html`` is self-contained: plotly.js is inlined once, every chart's data sits in
a JSON script block, and a strict Content-Security-Policy forbids any fetch, so the
folder opens offline from a USB stick or an e-mail attachment. Every string from a spec,
a run directory or a data file is escaped (Jinja autoescape for HTML, ``\\u003c`` for
JSON inside scripts).

The first thing a reader sees is the verdict: whether each winner beats the persistence
forecast ("next close = last close") on the test span, whether a confirmation over seeds
and folds can tell it from persistence, and what trading it would have earned after fees.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import numpy as np
import pandas as pd
import plotly.offline

from reports import charts, volatility
from reports.backtest import DEFAULT_FEE, Backtest, backtest
from reports.collect import SCORED, Run, Trial, leaderboard, load_run
from reports.confirmation import NOT_DISTINGUISHABLE, load_confirmation
from reports.forecast_tests import (
    GroupTests,
    add_dm_columns,
    beats_persistence,
    deflate_winner,
    group_tests,
    report_alpha,
)
from reports.registry.winners import winners
from search_spaces.schema import DEFAULT_ALPHA
from trainables.errors import RunError
from trainables.files import atomic_write
from trainables.predictions import has_predictions, read_predictions

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    # Everything from a spec or a data file is user text: escape it all, always.
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

TOP_K = 10  # "top-k" of the indicator chart and the search-ranking table
CURVES = 5  # learning curves drawn


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any, digits: int = 5) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _pct(v: Any, digits: int = 2) -> str:
    if not _finite(v):
        return "—"
    # A tiny skill must not print as "+0.00%": show two significant digits instead.
    if v != 0 and abs(v) < 10 ** -(digits + 1):
        return f"{v * 100:+.2g}%"
    return f"{v * 100:+.{digits}f}%"


def _share(v: Any) -> str:
    return f"{v * 100:.1f}%" if _finite(v) else "—"


def _dur(v: Any) -> str:
    if not _finite(v):
        return "—"
    s = float(v)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


_ENV.filters.update(fmt=_fmt, pct=_pct, share=_share, dur=_dur)


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


# The trial table: (header, board column, kind, css class). kind: num | pct | text | dur.
# The searched parameters (lookback, learning rate, units, ...) get one column each per
# group (:func:`_param_columns`), and the indicator subset one count column whose cell
# lists the subset on hover: raw model JSON and wrapped indicator lists cost a screen
# per few rows.
TABLE = [
    ("rank", "rank", "int", ""), ("status", "status", "text", "l"), ("family", "family", "text", "l"),
    ("val RMSE", "val_rmse_best", "num", ""), ("val skill", "val_skill", "pct", ""),
    ("test RMSE", "test_rmse", "num", ""), ("test skill", "test_skill", "pct", ""),
    ("test MAE", "test_mae", "num", ""), ("dir. acc.", "test_diracc", "share", ""),
    ("epochs", "epochs", "int", ""), ("best ep.", "best_epoch", "int", ""),
    ("train s", "train_seconds", "num", ""), ("DM p", "dm_pvalue", "num", ""), ("trial", "trial_id", "text", "l"),
]
#: Where the per-group parameter columns and the indicator count go: after this column.
_PARAMS_AFTER = "train_seconds"
#: Config keys shown as parameter columns (besides the family's ``model`` params and
#: ``indicator_params``), with their short headers.
_CONFIG_PARAMS = {"lookback": "lookback", "batch_size": "batch", "learning_rate": "lr",
                  "weight_decay": "wd", "loss": "loss", "optimizer": "optimizer"}
#: Rows per page of the trial table; the other rows sit in the page, hidden until paged to.
PAGE_SIZE = 100
#: Below this many finished trials, fANOVA importance is a rough hint: shown collapsed.
FEW_TRIALS = 20
#: Above this many trials in a group, the parallel-coordinate/slice/contour plots are left
#: out (said on the page): their JSON grows with every trial and the page slows down.
OPTUNA_PLOTS_MAX = 2000


def _trial_params(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's searched parameters, as table columns (model params by name, shared across families)."""
    out = {h: config[k] for k, h in _CONFIG_PARAMS.items() if k in config}
    for k, v in (config.get("model") or {}).items():
        out.setdefault(str(k), v)
    for k, v in (config.get("indicator_params") or {}).items():
        out.setdefault(f"ind.{k}", v)
    return out


def _param_columns(trials: list[Trial]) -> tuple[list[str], dict[str, str]]:
    """The group's parameter columns (values that vary, or missing for some family) and its fixed ones."""
    seen: dict[str, set[str]] = {}
    has: dict[str, int] = {}
    for t in trials:
        for k, v in _trial_params(t.config).items():
            seen.setdefault(k, set()).add(json.dumps(v, sort_keys=True, default=str))
            has[k] = has.get(k, 0) + 1
    varied = [k for k, vs in seen.items() if len(vs) > 1 or has[k] < len(trials)]
    fixed = {k: _param_text(json.loads(next(iter(vs)))) for k, vs in seen.items() if k not in varied}
    return varied, fixed


def _param_text(v: Any) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return "" if v is None else str(v)
    if isinstance(v, (int, float)):
        return _fmt(v, 4)
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


def _cell(v: Any, kind: str) -> tuple[str, str | None]:
    """(display text, sort key or None for text columns)."""
    if kind == "param":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return _param_text(v), repr(float(v)) if math.isfinite(float(v)) else ""
        return _param_text(v), None
    if kind == "text":
        return ("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)), None
    f = _num(v)
    key = repr(f) if math.isfinite(f) else ""
    if kind == "pct":
        return _pct(f), key
    if kind == "share":
        return _share(f), key
    if kind == "int":
        return (str(int(f)) if math.isfinite(f) else "—"), key
    return _fmt(f, 4 if kind == "num" else 5), key


def _group_table(table: list[tuple[str, str, str, str]], params: list[str]) -> list[tuple[str, str, str, str]]:
    """The group's trial-table columns: ``table`` with its parameter and indicator columns inserted."""
    i = next((n + 1 for n, c in enumerate(table) if c[1] == _PARAMS_AFTER), len(table))
    return [*table[:i], *[(k, f"param:{k}", "param", "") for k in params], ("ind.", "n_indicators", "int", "ind"),
            *table[i:]]


def _rows_html(rows: list[dict[str, Any]], page_size: int) -> markupsafe.Markup:
    """The trial table's body, rows past the first page hidden (the page script pages them).

    Built here rather than in the template: 10,000 rows × 20 cells take 1.6 s CPU as Jinja
    loops and 0.3 s as f-strings (same HTML). Every value goes through ``escape``.
    """
    esc = markupsafe.escape
    out = []
    for n, r in enumerate(rows):
        ind = esc(r["indicators"])
        tds = []
        for x in r["cells"]:
            attrs = f' class="{esc(x["cls"])}"' if x["cls"] else ""
            if x["key"] is not None:
                attrs += f' data-v="{esc(x["key"])}"'
            if x["cls"] == "ind":
                attrs += f' title="{ind}"'
            tds.append(f"<td{attrs}>{esc(x['text'])}</td>")
        out.append(f'<tr class="{esc(r["status"])}{" bad" if r["bad"] else ""}" data-ind="{ind}"'
                   f'{" hidden" if n >= page_size else ""}>{"".join(tds)}</tr>\n')
    return markupsafe.Markup("".join(out))


def _col_types(headers: list[tuple[str, str, str, str]], rows: list[dict[str, Any]]) -> dict[str, str]:
    """``num`` or ``text`` per column, how the page sorts it: a parameter column is numeric when every value is."""
    out = {}
    for i, (_, col, kind, _) in enumerate(headers):
        if kind == "param":
            numeric = all(r["cells"][i]["key"] is not None or not r["cells"][i]["text"] for r in rows)
            out[col] = "num" if numeric else "text"
        else:
            out[col] = "text" if kind == "text" else "num"
    return out


def _table_rows(rows: pd.DataFrame, table: list[tuple[str, str, str, str]] | None = None,
                configs: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows of the trial table: cells in ``table`` order, ``by`` (column → text) and the indicator list."""
    out = []
    for r in rows.to_dict("records"):
        params = _trial_params((configs or {}).get(str(r.get("trial_id")), {}))
        cells = []
        for _, col, kind, cls in table or TABLE:
            v = params.get(col[6:]) if col.startswith("param:") else r.get(col)
            text, key = _cell(v, kind)
            if col == "status" and r.get("error"):
                text = f"{text}: {r['error']}"
            cells.append({"text": text, "key": key, "cls": cls, "col": col})
        out.append({"cells": cells, "by": {c["col"]: c["text"] for c in cells}, "status": r.get("status"),
                    "indicators": str(r.get("indicators") or ""),
                    "bad": _finite(r.get("test_skill")) and r["test_skill"] <= 0})
    return out


def _group_info(run: Run, group: str) -> dict[str, Any]:
    """``groups.json`` entry with every field the template reads (missing ones blank)."""
    info = dict(run.groups.get(group) or {})
    info.setdefault("persistence_rmse", {})
    info["persistence_rmse"] = {"val": info["persistence_rmse"].get("val"),
                                "test": info["persistence_rmse"].get("test")}
    spans = info.get("spans") or {}
    info["spans"] = {k: list(spans.get(k) or ["?", "?"]) for k in ("train", "val", "test")}
    samples = info.get("samples") or {}
    info["samples"] = {k: samples.get(k, "?") for k in ("train", "val", "test")}
    for k in ("source", "resampled_from", "gaps", "target", "timeframe", "asset", "gaps_dropped_samples",
              "filled_candles"):
        info.setdefault(k, None)
    info.setdefault("horizon", 1)
    return info


def _timing(trials: list[Trial]) -> dict[str, float]:
    secs = [t.wall_seconds if _finite(t.wall_seconds) else _num((t.final or {}).get("train_seconds"))
            for t in trials]
    compute = float(np.nansum(secs)) if secs else 0.0
    starts = [t.started for t in trials if _finite(t.started)]
    ends = [t.ended for t in trials if _finite(t.ended)]
    wall = (max(ends) - min(starts)) if starts and ends and max(ends) > min(starts) else math.nan
    done = sum(t.status in ("finished", "stopped", "failed") for t in trials)
    return {"compute_seconds": compute, "avg_seconds": compute / len(trials) if trials else math.nan,
            "wall_seconds": wall, "trials_per_hour": done / (wall / 3600) if _finite(wall) and wall > 0 else math.nan}


def _baselines(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The group's reference forecasts from ``groups.json`` (persistence, drift, AR, ...)."""
    rows = []
    for name, b in (info.get("baselines") or {}).items():
        if isinstance(b, dict):
            # Persistence forecasts "no change": it has no direction to be right about, so
            # its directional accuracy is undefined (shown n/a), not 0 %.
            rows.append({"name": str(name), "val_rmse": b.get("val_rmse"), "test_rmse": b.get("test_rmse"),
                         "test_skill": b.get("test_skill"),
                         "test_diracc": None if name == "persistence" else b.get("test_diracc")})
    return rows


def _verdict(win: dict[str, Any] | None, conf: dict[str, Any] | None, bt: Backtest | None,
             conf_meta: dict[str, Any] | None, baselines: list[dict[str, Any]] | None = None,
             tests: GroupTests | None = None) -> dict[str, str]:
    """The group's one-line judgement: level (bad | warn | good), text and the tests' numbers (``details``).

    With ``tests`` (the run's forecast-comparison tests), a winner with a positive test
    skill "beats persistence" only when Hansen's SPA p-value over every finished config and
    its own Diebold–Mariano p-value are both below ``alpha``; otherwise it is not
    distinguishable from persistence.
    """
    out = _verdict_text(win, conf, bt, conf_meta, baselines, tests)
    details = []
    if tests is not None:
        details.append(beats_persistence(tests, win.get("trial_id") if win else None)[1])
    if conf is not None and _finite(conf.get("dm_pvalue")):
        details.append(f"re-trained, averaged over seeds: DM p = {_num(conf['dm_pvalue']):.3g} over "
                       f"{conf.get('dm_n')} samples ({conf.get('dm_runs')} runs)")
    if details:
        out["details"] = "; ".join(details)
    return out


def _verdict_text(win: dict[str, Any] | None, conf: dict[str, Any] | None, bt: Backtest | None,
                  conf_meta: dict[str, Any] | None, baselines: list[dict[str, Any]] | None,
                  tests: GroupTests | None) -> dict[str, str]:
    if win is None:
        return {"level": "bad", "text": "no trial finished with test scores: nothing to judge"}
    skill = win.get("test_skill")
    trade = ""
    better = [b for b in baselines or [] if b["name"] != "persistence" and _finite(b.get("test_rmse"))
              and _finite(win.get("test_rmse")) and b["test_rmse"] < win["test_rmse"]]
    if better:
        b = min(better, key=lambda r: r["test_rmse"])
        trade += (f" The simple “{b['name']}” baseline does better on the test span (RMSE {_fmt(b['test_rmse'])} vs "
                  f"{_fmt(win['test_rmse'])}).")
    if bt is not None:
        trade += (f" Trading its forecasts long/flat after {bt.fee * 100:g}% fees: {_pct(bt.strategy.total_return)} "
                 f"vs buy-and-hold {_pct(bt.buy_hold.total_return)}.")
    if not _finite(skill):
        return {"level": "bad", "text": "the winner has no test score" + trade}
    skill = _num(skill)
    if skill <= 0:
        return {"level": "bad", "text": f"the winner does NOT beat persistence on the test span (skill "
                f"{_pct(skill)}): its forecasts are no better than “next close = last close”." + trade}
    val = win.get("val_skill")
    if _finite(val) and _num(val) <= 0:
        return {"level": "bad", "text": f"the winner cannot be told from persistence: it did not beat it on the "
                f"validation span it was chosen on (val skill {_pct(val)}), so its {_pct(skill)} on the test span "
                "is most likely luck." + trade}
    if tests is not None and not beats_persistence(tests, win.get("trial_id"))[0]:
        return {"level": "bad", "text": f"the winner's test skill is {_pct(skill)}, but with "
                f"{tests.spa.n_models} configs tried that is {NOT_DISTINGUISHABLE}: the tests do not rule out "
                "luck." + trade}
    if conf is None:
        return {"level": "warn", "text": f"the winner beats persistence on the test span by {_pct(skill)}, from one "
                "seed on one split: not yet confirmed (run `tunefactory confirm`)." + trade}
    spread = (f"{_pct(conf['test_skill_mean'])} ± {_pct(conf['test_skill_std']).lstrip('+')} over {conf['runs']} "
              f"runs ({conf_meta.get('seeds') if conf_meta else '?'} seeds × {(conf_meta or {}).get('folds') or 1} "
              "folds)")
    if _finite(conf.get("dm_pvalue")):
        # The confirmation's DM test of the seed-averaged loss differential decides; the spread is shown.
        alpha = tests.alpha if tests is not None else DEFAULT_ALPHA
        if _num(conf["dm_pvalue"]) < alpha:
            return {"level": "good", "text": f"the winner beats persistence on the test span by {_pct(skill)}, and "
                    f"re-trained ({spread}) it still beats it, averaged over seeds." + trade}
        return {"level": "bad", "text": f"the winner beats persistence on the test span by {_pct(skill)}, but "
                f"re-trained ({spread}), averaged over seeds, it is {NOT_DISTINGUISHABLE}." + trade}
    if conf["verdict"] == NOT_DISTINGUISHABLE:
        return {"level": "bad", "text": f"the winner beats persistence on the test span by {_pct(skill)}, but "
                f"re-trained its skill is {spread}: {NOT_DISTINGUISHABLE}." + trade}
    if conf["verdict"] == "beats persistence":
        return {"level": "good", "text": f"the winner beats persistence on the test span by {_pct(skill)}, and "
                f"re-trained its skill is {spread}." + trade}
    return {"level": "bad" if conf["verdict"] == "worse than persistence" else "warn",
            "text": f"the winner beats persistence on the test span by {_pct(skill)}; re-trained its skill is "
                    f"{spread}: {conf['verdict']}." + trade}


def _headline(cards: list[dict[str, Any]]) -> dict[str, str]:
    """The sentence at the top of the page: does anything here beat persistence?"""
    n = len(cards)
    judged = [c for c in cards if c["winner"] is not None]
    if not judged:
        return {"level": "bad", "text": "No trial finished with test scores: there is nothing to trust yet."}
    fails = [c for c in cards if c["winner"] is None or not (_finite(c["winner"].get("test_skill"))
                                                             and c["winner"]["test_skill"] > 0)]
    weak = [c for c in cards if c["verdict"]["level"] == "bad" and c not in fails]
    rw = "“next close = last close”"
    if n == 1:
        if fails:
            return {"level": "bad", "text": f"The winner does not beat persistence on the test span: it forecasts no "
                    f"better than {rw}."}
        if weak:
            return {"level": "bad", "text": f"The winner cannot be told from persistence ({rw})."}
    elif fails or weak:
        parts = []
        if fails:
            parts.append(f"{len(fails)} of {n} winners do not beat persistence ({rw}) on the test span")
        if weak:
            parts.append(f"{len(weak)} {'more ' if fails else 'of ' + str(n) + ' winners '}cannot be told from it")
        return {"level": "bad", "text": ("None of the winners beats persistence on the test span: they forecast no "
                                         f"better than {rw}." if len(fails) == n else "; ".join(parts) + ".")}
    if any(c["verdict"]["level"] == "warn" for c in cards):
        return {"level": "warn", "text": ("The winner beats persistence on the test span, on one seed and one split: "
                "it is not confirmed over seeds and folds yet." if n == 1 else f"All {n} winners beat persistence "
                "on the test span, but not every one is confirmed over seeds and folds yet.")}
    return {"level": "good", "text": f"{'The winner beats' if n == 1 else f'All {n} winners beat'} persistence on "
            "the test span, confirmed over seeds and folds."}


def _trial_json(t: Trial, row: dict[str, Any]) -> dict[str, Any]:
    keep = ("epoch", "loss", "val_rmse", "val_rmse_best", "best_epoch", "train_seconds")
    return {**{k: _clean(v) for k, v in row.items()}, "params": _clean(t.config),
            "history": [{k: _clean(h[k]) for k in keep if k in h} for h in t.history]}


def _clean(v: Any) -> Any:
    """A value that ``json.dumps`` writes as strict JSON (NaN/inf become null), recursively."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return _clean(float(v))
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _fig(fig: Any) -> markupsafe.Markup:
    # Safe by construction: to_json escapes <, > and & (see charts.to_json).
    return markupsafe.Markup(charts.to_json(fig))


def group_card(run: Run, group: str, board: pd.DataFrame, winner: Trial | None,
               confirmation: dict[str, Any] | None, *, top_k: int = TOP_K, fee: float = DEFAULT_FEE,
               with_charts: bool = True, table: list[tuple[str, str, str, str]] | None = None,
               tests: GroupTests | None = None) -> dict[str, Any]:
    """Everything the report shows about one (asset, timeframe).

    ``table``: the trial table's columns (default :data:`TABLE`; volatility runs add spike scores).
    ``tests``: the group's forecast-comparison tests (DM per finished trial, SPA over them).
    """
    info = _group_info(run, group)
    rows = board[board["group"] == group]
    trials = [t for t in run.trials if t.group == group]
    by_id = {t.trial_id: t for t in trials}
    scored_ids = rows[rows["status"].isin(SCORED) & rows["val_rmse_best"].notna()]["trial_id"].tolist()
    ranked = [by_id[i] for i in scored_ids]
    win = rows[rows["trial_id"] == winner.trial_id].iloc[0].to_dict() if winner is not None else None
    counts = {s: int((rows["status"] == s).sum()) for s in ("finished", "stopped", "failed", "running")}
    baselines = _baselines(info)

    bt: Backtest | None = None
    bt_error = ""
    pred = None
    target = str(info.get("target") or (winner.config.get("target") if winner else None) or "multiplier")
    if winner is not None and winner.checkpoint is not None and has_predictions(winner.checkpoint):
        pred = read_predictions(winner.checkpoint)  # compact or an old predictions.csv; damaged: one line
        pred["timestamp"] = pd.to_datetime(pred["timestamp"], utc=True, format="ISO8601")
        tf = str(info.get("timeframe") or winner.config.get("timeframe"))
        try:
            bt = backtest(pred, target=target, horizon=int(info["horizon"]), timeframe=tf, fee=fee)
        except (RunError, KeyError) as e:
            bt_error = str(e)
    if tests is not None and winner is not None:
        tests.deflated = deflate_winner(tests, winner.trial_id, target=target, fee=fee,
                                        timeframe=str(info.get("timeframe") or winner.config.get("timeframe")))

    conf_rows: list[dict[str, Any]] = []
    conf_win = None
    if confirmation:
        conf_rows = [r for r in confirmation.get("ranking", []) if r.get("group") == group]
        if winner is not None:
            conf_win = next((r for r in conf_rows if r.get("trial_id") == winner.trial_id), None)

    figs: list[dict[str, Any]] = []
    notes: list[str] = []

    def add(kind: str, fig: Any, *, wide: bool = False, note: str = "", collapsed: str = "") -> None:
        # collapsed: the summary line of a <details> the chart sits in, closed ("" = shown).
        figs.append({"title": kind, "json": _fig(fig), "wide": wide, "note": note, "collapsed": collapsed})

    if with_charts and trials:
        pv = _num(info["persistence_rmse"]["val"])
        study = charts.build_study(trials)
        if ranked:
            add("history", charts.fig_history(study, pv))
        imp, note = charts.importances(study)
        few = len(ranked) < FEW_TRIALS
        if imp:
            add("importance", charts.fig_importance(imp), note=note,
                collapsed=(f"Parameter importance (fANOVA): only {len(ranked)} scored trials (fewer than "
                           f"{FEW_TRIALS}), so at most a rough hint; click to show" if few else ""))
            if len(trials) <= OPTUNA_PLOTS_MAX:
                for kind, title, fig in charts.optuna_figures(study, imp):
                    add(kind, fig, wide=kind in ("parallel", "slice"),
                        collapsed=f"{title}: interpolated from only {len(ranked)} scored trials; click to show"
                        if few and kind == "contour"
                        else "")
            else:
                notes.append(f"Parallel-coordinate, slice and contour plots are left out: this group has "
                             f"{len(trials):,} trials, and above {OPTUNA_PLOTS_MAX:,} their data would make the page "
                             "slow. leaderboard.csv holds every trial's parameters.")
        else:
            notes.append(f"Parameter importance: {note}.")
        # The top k is compared with all scored trials only when it is at most half of them:
        # "top 8 vs all 8" compares a set with itself.
        k = min(top_k, len(ranked) // 2)
        if k >= 3:
            freq = charts.indicator_frequency(ranked, k)
            if not freq.empty:
                add("indicators", charts.fig_indicators(freq, k, len(ranked)))
        elif ranked:
            notes.append(f"Indicator frequency in the top trials vs all: needs at least 6 scored trials (the top "
                         f"≤ half of them); this group has {len(ranked)}.")
        if ranked:
            add("curves", charts.fig_learning_curves(ranked[:CURVES], pv))
        if pred is not None:
            add("predictions", charts.fig_predictions(pred, target=target))
            cum = charts.fig_cumulative_error(pred)
            if cum is not None:
                add("cumulative", cum)
        if bt is not None:
            add("equity", charts.fig_equity(bt), wide=True)
        spikes = volatility.spike_figure(info, win)
        if spikes is not None:
            add("spikes", spikes)
    notes.extend(volatility.notes(info))

    params, fixed = _param_columns(trials)
    headers = _group_table(table or TABLE, params)
    configs = {t.trial_id: t.config for t in trials}
    table_rows = _table_rows(rows, headers, configs)
    better = [b for b in baselines if b["name"] != "persistence" and _finite(b.get("test_rmse"))]
    return {
        "group": group, "info": info, "winner": win, "winner_trial": winner, "counts": counts, "total": len(rows),
        **_timing(trials), "backtest": bt, "backtest_error": bt_error,
        "headers": headers, "fixed_params": fixed, "col_types": _col_types(headers, table_rows),
        "rows": table_rows, "rows_html": _rows_html(table_rows, PAGE_SIZE),
        "top": _table_rows(rows[rows["trial_id"].isin(scored_ids[:top_k])], headers, configs),
        "confirm_rows": conf_rows, "confirm_winner": conf_win,
        "verdict": _verdict(win, conf_win, bt, confirmation, baselines, tests), "figs": figs, "notes": notes,
        "baselines": baselines, "tests": _tests_view(tests, win),
        "best_baseline": min(better, key=lambda b: b["test_rmse"]) if better else None,
    }


def _tests_view(tests: GroupTests | None, win: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the page and summary.json show of a group's tests (strict-JSON values)."""
    if tests is None:
        return None
    dm = tests.dm.get(str(win.get("trial_id"))) if win else None
    return _clean({**tests.to_dict(), "winner_dm": dm.to_dict() if dm is not None else None,
                   "beats_persistence": beats_persistence(tests, win.get("trial_id") if win else None)[0]})


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts)) if _finite(ts) else "—"


def _run_info(run: Run) -> dict[str, Any]:
    """The run's metadata for the page: when, how long, with which versions and commit.

    ``created``, ``versions`` and ``commit`` come from ``groups.json`` (written by the sweep
    since they were recorded; older runs say "not recorded"); times from the trials' reports.
    """
    timing = _timing(run.trials)
    starts = [t.started for t in run.trials if _finite(t.started)]
    created = run.meta.get("created")
    versions = run.meta.get("versions")
    from importlib.metadata import PackageNotFoundError, version

    try:
        built_by = version("tunefactory")
    except PackageNotFoundError:
        built_by = "unknown"
    return {
        "created": str(created).replace("T", " ").replace("Z", " UTC") if created else _utc(min(starts, default=math.nan)),
        "finished": str((run.finished or {}).get("finished", "")).replace("T", " ").replace("Z", " UTC") or None,
        "wall_seconds": timing["wall_seconds"], "compute_seconds": timing["compute_seconds"],
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else None,
        "commit": run.meta.get("commit"), "built": _utc(time.time()), "built_by": built_by,
    }


def _commands(run: Run, groups: list[str]) -> list[dict[str, str]]:
    """Ready-to-paste next steps: confirm the winners, export them, forecast with each."""
    path = shlex.quote(str(run.path))
    out = [{"what": "re-train the top 3 configs per group over 5 seeds and 3 walk-forward folds",
            "cmd": f"tunefactory confirm {path} --top-k 3 --seeds 5 --folds 3"},
           {"what": "export each group's winner (refit on every labelled candle) to the registry",
            "cmd": f"tunefactory export {path} --registry winners"}]
    for g in groups:
        info = run.groups.get(g) or {}
        asset, _, tf = g.partition("/")
        asset, tf = str(info.get("asset") or asset), str(info.get("timeframe") or tf)
        if asset and tf:
            out.append({"what": f"next-candle forecast of the exported {g} winner",
                        "cmd": f"tunefactory forecast --asset {shlex.quote(asset)} --timeframe {shlex.quote(tf)} "
                               "--registry winners"})
    return out


def build_report(run_dir: Path | str, *, top_k: int = TOP_K, fee: float = DEFAULT_FEE,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Write the report folder of a run and return its path.

    Args:
        run_dir: a run directory.
        top_k: how many best trials the indicator chart and the ranking table consider.
        fee: fee per trade of the backtest (fraction; 0.001 = 0.1 %).
        progress: called with one line per stage (read, each group's tests and charts,
            written), so a command that takes seconds on a large run is not silent.

    Raises:
        RunError: not a run directory, bad options, or it holds no trial yet (the report is
            still written then).
    """
    t0 = time.perf_counter()

    def say(line: str) -> None:
        if progress is not None:
            progress(f"report: {line} ({time.perf_counter() - t0:.1f}s)")

    if top_k < 1:
        raise RunError(f"--top-k must be >= 1; got {top_k}")
    if not 0 <= fee < 1:
        raise RunError(f"fee must be in [0, 1) as a fraction; got {fee}")
    run = load_run(run_dir)
    say(f"read {len(run.trials)} trials of {len(run.groups)} asset/timeframe groups")
    alpha = report_alpha(run)
    board = volatility.add_spike_columns(leaderboard(run), run)
    confirmation = load_confirmation(run.path)
    best = winners(run)
    groups = list(run.groups) + sorted(set(board["group"]) - set(run.groups))
    # Forecast-comparison tests per group (DM per finished trial, SPA over all of them).
    tests = {}
    for i, g in enumerate(groups, start=1):
        tests[g] = group_tests(run, g, alpha=alpha)
        say(f"{g}: Diebold-Mariano and SPA tests done ({i}/{len(groups)})")
    board = add_dm_columns(board, tests)
    target = (run.spec.get("target") or {}).get("kind", "multiplier") if isinstance(run.spec.get("target"), dict) \
        else "multiplier"
    table = TABLE + volatility.table_columns(target)
    cards = []
    for i, g in enumerate(groups, start=1):
        cards.append(group_card(run, g, board, best.get(g), confirmation, top_k=top_k, fee=fee, table=table,
                                tests=tests[g]))
        say(f"{g}: backtest and charts done ({i}/{len(groups)})")
    headline = _headline(cards)
    missing = sum(not t.closed for t in run.trials)
    partial = {"missing": missing, "total": len(run.trials)} if run.partial else None

    out = Path(run_dir) / "report"
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: is a file, not the report folder; move it away and run the command again")
    # Everything is rendered in memory first, then written: a failure leaves the old report whole.
    by_id = {t.trial_id: t for t in run.trials}
    records = [_trial_json(by_id[r["trial_id"]], r) for r in board.to_dict("records")]
    files = {"leaderboard.csv": board.to_csv(index=False)}
    files["leaderboard.json"] = json.dumps({
        "run": {"name": run.name, "path": str(run.path), "spec_file": run.meta.get("spec_file")},
        "groups": _clean(run.groups), "trials": records}, indent=1, default=str, allow_nan=False)
    files["summary.json"] = json.dumps({
        "headline": headline, "partial": partial,
        "groups": [{"group": c["group"], "verdict": c["verdict"], "winner": {k: _clean(v) for k, v in
                                                                              (c["winner"] or {}).items()},
                    "counts": c["counts"], "total": c["total"], "compute_seconds": _clean(c["compute_seconds"]),
                    "trials_per_hour": _clean(c["trials_per_hour"]),
                    "backtest": c["backtest"].to_dict() if c["backtest"] else None,
                    "confirmation": c["confirm_winner"], "tests": c["tests"]} for c in cards]}, indent=1,
        default=_clean)
    files["index.html"] = _ENV.get_template("index.html.j2").render(
        name=run.name, spec_file=run.meta.get("spec_file", ""), run_path=str(run.path), cards=cards,
        n_trials=len(board), headline=headline, confirmation=confirmation, top_k=top_k, fee=fee,
        target=target, partial=partial, run_info=_run_info(run), commands=_commands(run, groups),
        page_size=PAGE_SIZE,
        # plotly.js is MIT-licensed static text shipped in the plotly wheel; inlined once.
        plotly_js=markupsafe.Markup(plotly.offline.get_plotlyjs()))
    out.mkdir(exist_ok=True)
    for name, text in files.items():
        atomic_write(out / name, text)
    say(f"written to {out}")
    if board.empty:
        raise RunError(f"{run_dir}: no trials found; the report is empty")
    return out

"""CLI commands on results: ``report``, ``export``, ``refit``, ``forecast`` and ``confirm`` (registered by ``cluster.cli``).

Every user error raises a :class:`~trainables.errors.TunefactoryError`, which the CLI
prints as one line (exit 2). Each command imports what it runs when it runs (as every
command module of ``cluster.cli`` does): the whole CLI would otherwise import Ray, plotly
and pandas for ``tunefactory validate`` too (0.5 s with lazy imports, 4-8 s without).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cluster.cli.json_output import add_json_option, emit, plain
from trainables.errors import TunefactoryError


def _cmd_report(a: argparse.Namespace) -> int:
    from cluster.console import say

    # Stage lines on stdout like `run`'s progress (stderr carries only an error, in one line);
    # hidden by -q and --json. The first one comes before the ~5 s of imports (pandas, plotly,
    # optuna, arch).
    if not a.json:
        say(f"report: building {a.run_dir}/report/", progress=True)
    from reports.build import build_report

    out = build_report(a.run_dir, top_k=a.top_k, fee=a.fee / 100,
                       progress=None if a.json else lambda line: say(line, progress=True))
    if a.json:
        import json

        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        emit({"report": str(out), "index_html": str(out / "index.html"),
              "leaderboard_csv": str(out / "leaderboard.csv"), "leaderboard_json": str(out / "leaderboard.json"),
              "summary_json": str(out / "summary.json"), "headline": summary.get("headline"),
              "groups": summary.get("groups", [])})
    else:
        print(f"{out / 'index.html'}\n{out / 'leaderboard.csv'}\n{out / 'leaderboard.json'}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from reports.registry.winners import export_run

    refit = None
    if not a.no_refit:
        from cluster.refit import production_refit

        refit = production_refit(data=a.data)
    lines = export_run(a.run_dir, a.registry, force=a.force, refit=refit)
    if a.json:
        emit({"registry": str(a.registry), "groups": [
            {"group": g, "message": m.strip()} for g, _, m in (ln.partition(":") for ln in lines)]})
    else:
        for line in lines:
            print(line)
    return 0


def _cmd_refit(a: argparse.Namespace) -> int:
    from cluster.refit import production_refit
    from reports.registry.winners import refit_registry

    for line in refit_registry(a.registry, production_refit(data=a.data), asset=a.asset, timeframe=a.timeframe):
        print(line)
    return 0


def _cmd_forecast(a: argparse.Namespace) -> int:
    from reports.registry.forecast import forecast

    fc = forecast(a.asset, a.timeframe, registry=a.registry, data=a.data, now=a.at, model=a.model,
                  max_age=a.max_age)
    if a.json:
        emit({**plain(fc), "return": fc.ret})
    else:
        for line in fc.lines():
            print(line)
    return 0


def _cmd_confirm(a: argparse.Namespace) -> int:
    from cluster.confirm import run_confirmation
    from reports.build import build_report
    from reports.confirmation import summary_lines

    summary = run_confirmation(a.run_dir, top_k=a.top_k, seeds=a.seeds, folds=a.folds, embargo=a.embargo,
                               address=a.address, num_cpus=a.num_cpus)
    for line in summary_lines(summary):
        print(line)
    out = build_report(a.run_dir)
    print(f"report: {out / 'index.html'}")
    return 0


def _percent(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage like 0.1; got {text!r}") from None
    if not 0 <= v < 100:
        raise argparse.ArgumentTypeError(f"must be in [0, 100); got {text}")
    return v


def _timestamp(text: str) -> Any:
    import pandas as pd

    try:
        t = pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO time like 2025-06-01T12:00Z; got {text!r}") from None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def register(sub: Any) -> None:
    """Add ``report``, ``export``, ``refit``, ``forecast`` and ``confirm`` to the ``tunefactory`` subcommands."""
    rp = sub.add_parser("report", help="(re)write RUN_DIR/report/ from the files on disk")
    rp.add_argument("run_dir", type=Path, help="the run folder that `tunefactory run` printed (e.g. runs/laptop-2026-12-01_10-20)")
    rp.add_argument("--top-k", type=int, default=10, help="best trials the indicator chart compares (default 10)")
    rp.add_argument("--fee", type=_percent, default=0.1, help="backtest fee per trade in percent (default 0.1)")
    add_json_option(rp)
    rp.set_defaults(fn=_cmd_report)

    e = sub.add_parser("export", help="export each asset/timeframe winner to a registry folder")
    e.add_argument("run_dir", type=Path, help="the run folder that `tunefactory run` printed (e.g. runs/laptop-2026-12-01_10-20)")
    e.add_argument("--registry", type=Path, default=Path("winners"), help="winners registry folder (default: winners)")
    e.add_argument("--force", action="store_true", help="replace even a better or differently judged winner")
    e.add_argument("--no-refit", action="store_true",
                   help="export the scored (selection) model only; no production model trained on all the data")
    e.add_argument("--data", type=Path, help="candle folder for the production refit (default: the run's)")
    add_json_option(e)
    e.set_defaults(fn=_cmd_export)

    r = sub.add_parser("refit", help="retrain the registry's production models on newer candles (no search)")
    r.add_argument("registry", type=Path, help="winners registry folder that `tunefactory export` wrote")
    r.add_argument("--asset", help="only this asset (default: every winner)")
    r.add_argument("--timeframe", help="only this timeframe (default: every winner)")
    r.add_argument("--data", type=Path, help="candle folder (default: where the run read its candles)")
    r.set_defaults(fn=_cmd_refit)

    f = sub.add_parser("forecast", help="next-candle forecast of an exported winner from the latest candles")
    f.add_argument("--asset", required=True, help="e.g. BTC-USDT")
    f.add_argument("--timeframe", required=True, help="e.g. 1h")
    f.add_argument("--registry", type=Path, default=Path("winners"), help="winners registry folder (default: winners)")
    f.add_argument("--data", type=Path, help="candle file or folder (default: where the run read its candles)")
    f.add_argument("--at", type=_timestamp, help="forecast as of this UTC time (later candles are ignored)")
    f.add_argument("--model", choices=("production", "selection"), default="production",
                   help="production (refit on all data; default, when exported) or selection (the scored model)")
    f.add_argument("--max-age", type=int, default=30,
                   help="warn when the model's training ended more than this many candles before the data (30)")
    add_json_option(f)
    f.set_defaults(fn=_cmd_forecast)

    c = sub.add_parser("confirm", help="re-train the top-k configs per asset/timeframe with new seeds (and folds)")
    c.add_argument("run_dir", type=Path, help="the run folder that `tunefactory run` printed (e.g. runs/laptop-2026-12-01_10-20)")
    c.add_argument("--top-k", type=int, default=3, help="configs per asset/timeframe (default 3)")
    c.add_argument("--seeds", type=int, default=3, help="seeds per config (default 3)")
    c.add_argument("--folds", type=int, help="walk-forward folds: the sweep's test span in F chunks, each "
                   "scored after training on everything before it (default: the sweep's split only)")
    c.add_argument("--embargo", type=int, default=0,
                   help="candles dropped before each fold's chunk on top of the horizon purge (default 0)")
    c.add_argument("--address", help="Ray cluster address ('auto' inside a cluster); default: local Ray")
    c.add_argument("--num-cpus", type=int, help="CPUs for the local Ray instance (default: all)")
    c.set_defaults(fn=_cmd_confirm)


__all__ = ["TunefactoryError", "register"]

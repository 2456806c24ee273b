"""``tunefactory data fetch|list|check`` (registered by ``cluster.cli``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from cluster.cli.json_output import add_json_option, emit
from cluster.console import say
from trainables.data.candles import EMBEDDED_DIR, TIMEFRAMES, available, candle_file, gap_report, read_candles
from trainables.data.exchange import FetchProgress, fetch_candles, make_exchange
from trainables.errors import DataError

#: Seconds between two progress lines of `data fetch` (a full 1h history is ~80 pages of
#: 1,000 candles at Binance's rate limit; one line per page would flood a log).
PROGRESS_EVERY_S = 5.0


class _FetchLines:
    """Throttled progress lines: the first page, then at most one line per ``every`` seconds."""

    def __init__(self, *, every: float = PROGRESS_EVERY_S, clock: Any = time.monotonic) -> None:
        self.every, self.clock = every, clock
        self.t0 = clock()
        self.last_print: float | None = None

    def __call__(self, p: FetchProgress) -> None:
        now = self.clock()
        if self.last_print is not None and now - self.last_print < self.every:
            return
        self.last_print = now
        elapsed = now - self.t0
        eta = f"{elapsed * (1 - p.done) / p.done:.0f}s" if p.done > 0 else "?"
        say(f"fetching {p.label}: {p.fetched:,} candles through {p.last:%Y-%m-%dT%H:%MZ} "
            f"({p.done:.0%}, {p.requests} requests, {elapsed:.0f}s, ETA {eta})", progress=True)


def _cmd_fetch(a: argparse.Namespace) -> int:
    out = Path(a.out)
    r = fetch_candles(make_exchange(a.exchange), a.asset, a.timeframe, since=a.since, out_dir=out,
                      compress=a.gzip, progress=_FetchLines())
    state = "complete" if r.complete else "incomplete (run the same command again to resume)"
    print(f"{r.path}: +{r.added} candles, {r.total} in total, last {r.last}; {state}")
    return 0


def _catalogue(directory: Path, label: str) -> list[dict[str, Any]]:
    """One entry per candle file of ``directory``: rows, span and gaps, or why it is invalid."""
    rows: list[dict[str, Any]] = []
    for asset, tfs in available(directory).items():
        for tf in tfs:
            f = candle_file(directory, asset, tf)
            assert f is not None
            row: dict[str, Any] = {"source": label, "asset": asset, "timeframe": tf, "file": str(f)}
            try:
                c = read_candles(f, tf)
            except Exception as e:  # a bad file is listed, not fatal: `data check` explains it
                rows.append({**row, "valid": False, "error": str(e).splitlines()[0]})
                continue
            g = gap_report(c["timestamp"], tf)
            rows.append({**row, "valid": True, "rows": len(c), "first": c["timestamp"].iloc[0],
                         "last": c["timestamp"].iloc[-1], "gaps": g.summary()})
    return rows


def _line(r: dict[str, Any]) -> str:
    head = f"{r['source']:<9} {r['asset']:<10} {r['timeframe']:<4}"
    if not r["valid"]:
        return f"{head} INVALID: {r['error']}"
    return (f"{head} {r['rows']:>8,} {r['first']:%Y-%m-%d %H:%M} → {r['last']:%Y-%m-%d %H:%M}  "
            f"{r['gaps']}  ({Path(r['file']).name})")


def _cmd_list(a: argparse.Namespace) -> int:
    for d in map(Path, a.paths):  # all checked before a line is printed
        if not d.is_dir():
            what = "is a file, not a folder (check one file with `tunefactory data check FILE`)" if d.exists() \
                else "no such folder"
            raise DataError(f"{d}: {what}; pass folders of <ASSET>_<TF>.csv[.gz] candle files")
    rows = _catalogue(EMBEDDED_DIR, "embedded")
    for d in a.paths:
        rows += _catalogue(Path(d), "user")
    resampled = ["2h", "3h", "4h", "6h", "8h", "12h"]
    if a.json:
        emit({"files": rows, "resampled_from_1h": resampled})
        return 0
    print(f"{'source':<9} {'asset':<10} {'tf':<4} {'rows':>8} span / gaps")
    for r in rows:
        print(_line(r))
    print(f"Other timeframes ({', '.join(resampled)}) are resampled from 1h on demand.")
    return 0


def _cmd_check(a: argparse.Namespace) -> int:
    c = read_candles(a.file)
    tf = Path(a.file).name.split(".csv")[0].rpartition("_")[2]
    msg = f"{a.file}: OK, {len(c):,} candles {c['timestamp'].iloc[0]:%Y-%m-%dT%H:%MZ} → " \
          f"{c['timestamp'].iloc[-1]:%Y-%m-%dT%H:%MZ}"
    if tf in TIMEFRAMES:
        msg += f"; {gap_report(c['timestamp'], tf).summary()}"
    zero = int((c["volume"] == 0).sum())
    if a.json:
        emit({"ok": True, "file": str(a.file), "rows": len(c), "first": c["timestamp"].iloc[0],
              "last": c["timestamp"].iloc[-1],
              "gaps": gap_report(c["timestamp"], tf).summary() if tf in TIMEFRAMES else None,
              "zero_volume": zero})
        return 0
    print(msg + (f"; {zero} zero-volume candles" if zero else ""))
    return 0


def register(sub: Any) -> None:
    """Add ``data`` with its ``fetch``, ``list`` and ``check`` subcommands."""
    d = sub.add_parser("data", help="candle data: download, catalogue, check")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="download candles from an exchange (resumable, atomic)")
    f.add_argument("--exchange", default="binance", help="ccxt exchange id (default binance)")
    f.add_argument("--asset", required=True, help="e.g. BTC-USDT")
    f.add_argument("--timeframe", required=True, help="e.g. 1h")
    f.add_argument("--since", help="first candle wanted (ISO date); default: all history")
    f.add_argument("--out", default="data/user", help="folder of candle files (default data/user)")
    f.add_argument("--gzip", action="store_true", help="write .csv.gz for a new file")
    f.set_defaults(fn=_cmd_fetch)
    ls = dsub.add_parser("list", help="assets, timeframes, rows, spans and gaps of every candle file")
    ls.add_argument("paths", nargs="*", help="user folders to list besides the embedded set")
    add_json_option(ls)
    ls.set_defaults(fn=_cmd_list)
    ck = dsub.add_parser("check", help="validate one candle file and report its gaps")
    ck.add_argument("file", type=Path, help="candle file to check (CSV or CSV.gz)")
    add_json_option(ck)
    ck.set_defaults(fn=_cmd_check)

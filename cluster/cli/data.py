"""``tunefactory data fetch|list|check`` (registered by ``cluster.cli``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainables.data.candles import EMBEDDED_DIR, TIMEFRAMES, available, candle_file, gap_report, read_candles
from trainables.data.exchange import fetch_candles, make_exchange


def _cmd_fetch(a: argparse.Namespace) -> int:
    out = Path(a.out)
    r = fetch_candles(make_exchange(a.exchange), a.asset, a.timeframe, since=a.since, out_dir=out,
                      compress=a.gzip)
    state = "complete" if r.complete else "incomplete (run the same command again to resume)"
    print(f"{r.path}: +{r.added} candles, {r.total} in total, last {r.last}; {state}")
    return 0


def _catalogue_rows(directory: Path, label: str) -> list[str]:
    rows = []
    for asset, tfs in available(directory).items():
        for tf in tfs:
            f = candle_file(directory, asset, tf)
            assert f is not None
            try:
                c = read_candles(f, tf)
            except Exception as e:  # a bad file is listed, not fatal: `data check` explains it
                rows.append(f"{label:<9} {asset:<10} {tf:<4} INVALID: {str(e).splitlines()[0]}")
                continue
            g = gap_report(c["timestamp"], tf)
            first, last = c["timestamp"].iloc[0], c["timestamp"].iloc[-1]
            rows.append(f"{label:<9} {asset:<10} {tf:<4} {len(c):>8,} {first:%Y-%m-%d %H:%M} → "
                        f"{last:%Y-%m-%d %H:%M}  {g.summary()}  ({f.name})")
    return rows


def _cmd_list(a: argparse.Namespace) -> int:
    print(f"{'source':<9} {'asset':<10} {'tf':<4} {'rows':>8} span / gaps")
    for line in _catalogue_rows(EMBEDDED_DIR, "embedded"):
        print(line)
    for d in a.paths:
        for line in _catalogue_rows(Path(d), "user"):
            print(line)
    print("Other timeframes (2h, 3h, 4h, 6h, 8h, 12h) are resampled from 1h on demand.")
    return 0


def _cmd_check(a: argparse.Namespace) -> int:
    c = read_candles(a.file)
    tf = Path(a.file).name.split(".csv")[0].rpartition("_")[2]
    msg = f"{a.file}: OK, {len(c):,} candles {c['timestamp'].iloc[0]:%Y-%m-%dT%H:%MZ} → " \
          f"{c['timestamp'].iloc[-1]:%Y-%m-%dT%H:%MZ}"
    if tf in TIMEFRAMES:
        msg += f"; {gap_report(c['timestamp'], tf).summary()}"
    zero = int((c["volume"] == 0).sum())
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
    ls.set_defaults(fn=_cmd_list)
    ck = dsub.add_parser("check", help="validate one candle file and report its gaps")
    ck.add_argument("file", type=Path, help="candle file to check (CSV or CSV.gz)")
    ck.set_defaults(fn=_cmd_check)

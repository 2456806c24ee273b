"""The command line's conventions: --version and help text on every argument."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomllib

from cluster.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_version_prints_the_project_version_and_exits_0() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "--version"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(f"tunefactory {declared} (Python "), out.stdout


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                out[name] = sp
                out.update({f"{name} {k}": v for k, v in _subparsers(sp).items()})
    return out


@pytest.mark.parametrize("command", sorted(_subparsers(build_parser())))
def test_every_argument_of_every_command_has_help_text(command: str) -> None:
    sp = _subparsers(build_parser())[command]
    if any(isinstance(a, argparse._SubParsersAction) for a in sp._actions):
        return  # a command group: its subcommands are checked one by one
    missing = [a.dest for a in sp._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, f"`tunefactory {command}`: arguments without help text: {missing}"


def test_every_command_shows_an_example_that_parses() -> None:
    import shlex

    from cluster.cli import EXAMPLES, _leaf_parsers

    leaves = _leaf_parsers(build_parser())
    assert {sp.prog.removeprefix("tunefactory ") for sp in leaves} == set(EXAMPLES)
    for sp in leaves:
        text = sp.format_help()
        assert "example:\n  tunefactory " in text, sp.prog
        for line in EXAMPLES[sp.prog.removeprefix("tunefactory ")]:
            assert line in text and line.startswith(sp.prog + " "), line
            build_parser().parse_args(shlex.split(line)[1:])  # argparse exits 2 on a stale example


# ----------------------------------------------------------------------------- --json
def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    from cluster.cli import main

    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)  # one strict JSON document, nothing else


def test_validate_and_space_json(capsys: pytest.CaptureFixture[str]) -> None:
    v = _json(capsys, "validate", "search_spaces/laptop.yaml", "--json")
    assert v["ok"] is True and v["name"] == "laptop"
    assert v["groups"] == ["BTC-USDT/1d", "BTC-USDT/4h", "ETH-USDT/1d", "ETH-USDT/4h"]
    assert (v["trials_per_group"], v["trials"], v["algorithm"]) == (15, 60, "optuna-tpe")
    assert {"target", "horizon", "families", "pool", "subset_size", "subsets", "max_epochs", "storage"} <= set(v)
    s = _json(capsys, "space", "search_spaces/laptop.yaml", "--json", "--set", "search.num_samples=5")
    assert (s["trials"], s["groups"], s["trials_per_group"]) == (20, 4, 5)
    assert s["dimensions"]["lookback"] == 3 and s["dimensions"]["learning_rate"] is None  # continuous
    assert s["trial_epochs_expected"] <= s["trial_epochs_max"] == 20 * v["max_epochs"]


def test_data_list_and_check_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainables.data.candles import EMBEDDED_DIR

    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(EMBEDDED_DIR / "BTC-USDT_1d.csv", user / "BTC-USDT_1d.csv")
    (user / "ETH-USDT_1d.csv").write_text("timestamp,open,high,low,close,volume\nnot a time,1,1,1,1,1\n")
    d = _json(capsys, "data", "list", str(user), "--json")
    embedded = [f for f in d["files"] if f["source"] == "embedded"]
    assert {(f["asset"], f["timeframe"]) for f in embedded} >= {("BTC-USDT", "1d"), ("ETH-USDT", "1h")}
    mine = {f["asset"]: f for f in d["files"] if f["source"] == "user"}
    assert mine["BTC-USDT"]["valid"] is True and mine["BTC-USDT"]["rows"] == 3064
    assert mine["BTC-USDT"]["first"] == "2017-08-17T00:00:00Z" and mine["BTC-USDT"]["gaps"] == "no gaps"
    assert mine["ETH-USDT"]["valid"] is False and "ETH-USDT_1d.csv" in mine["ETH-USDT"]["error"]
    assert d["resampled_from_1h"] == ["2h", "3h", "4h", "6h", "8h", "12h"]
    c = _json(capsys, "data", "check", str(user / "BTC-USDT_1d.csv"), "--json")
    assert (c["ok"], c["rows"], c["last"], c["zero_volume"]) == (True, 3064, "2026-01-05T00:00:00Z", 0)


def test_data_fetch_progress_lines_are_throttled(capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli.data import _FetchLines
    from trainables.data.exchange import FetchProgress

    clock = iter([0.0, 0.5, 2.0, 5.4, 6.0, 12.0]).__next__
    lines = _FetchLines(every=5.0, clock=clock)  # t0 = 0.0
    t = pd.Timestamp("2021-01-01", tz="UTC")
    for i, done in enumerate([0.1, 0.2, 0.3, 0.5, 0.9], 1):
        lines(FetchProgress(label="binance BTC/USDT 1h", fetched=1000 * i, requests=i, last=t, done=done))
    out = capsys.readouterr().out.splitlines()
    # printed at 0.5 s (first page), 6.0 s (5.5 s later) and 12 s; 2.0 s and 5.4 s come too soon
    assert out == ["fetching binance BTC/USDT 1h: 1,000 candles through 2021-01-01T00:00Z (10%, 1 requests, 0s, ETA 4s)",
                   "fetching binance BTC/USDT 1h: 4,000 candles through 2021-01-01T00:00Z (50%, 4 requests, 6s, ETA 6s)",
                   "fetching binance BTC/USDT 1h: 5,000 candles through 2021-01-01T00:00Z (90%, 5 requests, 12s, ETA 1s)"]


def test_report_prints_a_line_per_stage_and_q_hides_them(small_run: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    out, err = capsys.readouterr()
    paths = [str(run / "report" / f) for f in ("index.html", "leaderboard.csv", "leaderboard.json")]
    stages = [re.sub(r" \(\d+\.\ds\)$", "", ln) for ln in out.splitlines()]
    assert stages == [f"report: building {run}/report/", "report: read 4 trials of 1 asset/timeframe groups",
                      "report: BTC-USDT/1d: Diebold-Mariano and SPA tests done (1/1)",
                      "report: BTC-USDT/1d: backtest and charts done (1/1)", f"report: written to {run / 'report'}",
                      *paths]
    assert err == ""
    assert main(["report", str(run), "-q"]) == 0
    out_q, err_q = capsys.readouterr()
    assert out_q.splitlines() == paths and err_q == ""


def test_report_export_forecast_json(small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    r = _json(capsys, "report", str(run), "--json")
    assert r["index_html"] == str(run / "report" / "index.html") and Path(r["leaderboard_json"]).is_file()
    assert r["headline"]["level"] in ("good", "warn", "bad") and r["headline"]["text"]
    assert [g["group"] for g in r["groups"]] == ["BTC-USDT/1d"]
    assert r["groups"][0]["winner"]["trial_id"]

    reg = tmp_path / "winners"
    e = _json(capsys, "export", str(run), "--registry", str(reg), "--no-refit", "--json")
    assert e["registry"] == str(reg) and [g["group"] for g in e["groups"]] == ["BTC-USDT/1d"]
    assert e["groups"][0]["message"]

    pred = pd.read_csv(reg / "BTC-USDT_1d" / "selection" / "predictions.csv")
    at = (pd.Timestamp(pred["timestamp"].iloc[-1]) + pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%MZ")
    f = _json(capsys, "forecast", "--asset", "BTC-USDT", "--timeframe", "1d", "--registry", str(reg),
              "--model", "selection", "--at", at, "--json")
    assert (f["asset"], f["timeframe"], f["target"], f["horizon"], f["model"]) == (
        "BTC-USDT", "1d", "multiplier", 1, "selection")
    assert f["made_at"] == at.replace("Z", ":00Z") and f["price"] == pytest.approx(f["last_close"] * f["multiplier"])
    assert f["return"] == pytest.approx(f["multiplier"] - 1) and f["winner"]["trial_id"]

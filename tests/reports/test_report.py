"""Leaderboard data, the HTML report, its verdict, charts and escaping."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import markupsafe
import numpy as np
import pandas as pd
import pytest

from reports.build import build_report
from reports.collect import Trial, leaderboard, load_run
from tests.reports.conftest import copy_run, rewrite_results, winner_dir
from trainables.errors import RunError

XSS = "<script>alert(1)</script>"


def _body_start(html: str) -> str:
    return html.split("<body>", 1)[1].lstrip()


def test_leaderboard_files_hold_every_trial_with_params_and_history(built_run: Path) -> None:
    out = built_run / "report"
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 4 and board["rank"].tolist() == [1, 2, 3, 4]
    assert board["val_rmse_best"].is_monotonic_increasing
    for col in ("test_rmse", "test_mae", "test_diracc", "test_skill", "epochs", "train_seconds", "indicators",
                "status", "error"):
        assert col in board.columns
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["run"]["name"] == "tiny" and "BTC-USDT/1d" in data["groups"]
    for rec in data["trials"]:
        rows = [json.loads(x) for x in (built_run / f"trial_{rec['trial_id']}" / "result.json").read_text().splitlines()]
        epochs = [r for r in rows if "test_rmse" not in r]
        assert [h["val_rmse"] for h in rec["history"]] == [r["val_rmse"] for r in epochs]
        assert rec["params"]["columns"] == rec["indicators"].split()
        assert rec["epochs"] == len(epochs)
        assert rec["test_rmse"] == pytest.approx(rows[-1]["test_rmse"])


def test_report_is_self_contained_and_leads_with_the_verdict(built_run: Path) -> None:
    html = (built_run / "report" / "index.html").read_text()
    assert _body_start(html).startswith('<div class="headline')
    assert html.count("* plotly.js v") == 1  # inlined exactly once
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html, re.I), "nothing may be fetched"
    assert "default-src 'none'" in html
    kinds = re.findall(r'data-kind="(\w+)"', html)
    # 4 scored trials: no indicator chart ("top k vs all" needs the top to be at most half).
    assert kinds == ["history", "importance", "parallel", "slice", "contour", "curves", "predictions", "cumulative",
                     "equity"]
    for block in re.findall(r'<script type="application/json" class="fig"[^>]*>(.*?)</script>', html, re.S):
        assert "data" in json.loads(block)
    summary = json.loads((built_run / "report" / "summary.json").read_text())
    (g,) = summary["groups"]
    assert g["counts"]["finished"] == 4 and g["total"] == 4
    assert g["backtest"]["strategy"]["trades"] >= 0
    assert summary["headline"]["text"] in html
    # the card says what the scored model was trained on (its training span, groups.json)
    spans = json.loads((built_run / "groups.json").read_text())["groups"]["BTC-USDT/1d"]["spans"]["train"]
    (trained,) = re.findall(r'<span class="trained-on" title="[^"]*">(.*?)</span>', html)
    assert trained.startswith(f"{spans[0]} → {spans[1]} (")


def test_headline_says_first_when_the_winner_fails_to_beat_persistence(small_run: Path, tmp_path: Path) -> None:
    run = copy_run(small_run, tmp_path / "run")
    for d in run.glob("trial_*"):
        rewrite_results(d, lambda r: {**r, "test_skill": -0.05} if "test_skill" in r else r)
    build_report(run)
    html = (run / "report" / "index.html").read_text()
    head = _body_start(html)[:600]
    assert 'class="headline bad"' in head
    assert "does not beat persistence on the test span" in head
    assert "does NOT beat persistence" in html  # the group's own verdict line


def test_failed_trial_shows_its_reason_and_counts(small_run: Path, tmp_path: Path) -> None:
    run = copy_run(small_run, tmp_path / "run")
    d = run / "trial_deadbeef"
    d.mkdir()
    cfg = json.loads(next(run.glob("trial_*/params.json")).read_text())
    (d / "params.json").write_text(json.dumps({**cfg, "family": "lstm", "trial_number": 9}))
    (d / "error.txt").write_text("Traceback (most recent call last):\n  ...\n"
                                 "TrialDiverged: training loss became nan at epoch 3; lower the learning rate\n")
    board = leaderboard(load_run(run))
    row = board[board["trial_id"] == "deadbeef"].iloc[0]
    assert row["status"] == "failed" and row["rank"] == 5
    assert row["error"] == "TrialDiverged: training loss became nan at epoch 3; lower the learning rate"
    build_report(run)
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["groups"][0]["counts"]["failed"] == 1 and summary["groups"][0]["total"] == 5
    assert "training loss became nan at epoch 3" in (run / "report" / "index.html").read_text()


def test_spec_and_data_text_is_escaped(small_run: Path, tmp_path: Path) -> None:
    run = copy_run(small_run, tmp_path / "run")
    meta = json.loads((run / "groups.json").read_text())
    meta["name"] = XSS
    meta["spec_file"] = '"><img src=x onerror=alert(2)>'
    meta["groups"]["BTC-USDT/1d"]["gaps"] = "</script><script>alert(3)</script>"
    (run / "groups.json").write_text(json.dumps(meta))
    d = winner_dir(run)
    cfg = json.loads((d / "params.json").read_text())
    (d / "params.json").write_text(json.dumps({**cfg, "family": "</script><script>alert(4)</script>"}))
    bad = run / "trial_0bad"
    bad.mkdir()
    (bad / "params.json").write_text(json.dumps({**cfg, "trial_number": 7}))
    (bad / "error.txt").write_text("ValueError: <img src=x onerror=alert(5)>\n")
    build_report(run)
    html = (run / "report" / "index.html").read_text()
    payloads = [XSS, '"><img src=x onerror=alert(2)>', "</script><script>alert(3)</script>",
                "</script><script>alert(4)</script>", "<img src=x onerror=alert(5)>"]
    for p in payloads:
        assert p not in html
    # No element the payloads could create, anywhere (plotly.js itself has neither).
    assert not re.search(r"<script>alert|<img[^>]*onerror", html, re.I)
    assert "&lt;/script&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in html  # shown as text in the tables
    assert "&lt;img src=x onerror=alert(5)&gt;" in html  # the failure reason, as text
    assert "<title>tunefactory — &lt;script&gt;alert(1)&lt;/script&gt;</title>" in html
    # Only our own scripts: plotly, the page script and one JSON block per chart.
    assert html.count("<script") == 2 + html.count('class="fig"')


def test_load_run_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run directory"):
        load_run(tmp_path / "nope")
    with pytest.raises(RunError, match="not a tunefactory run directory"):
        load_run(tmp_path)
    (tmp_path / "groups.json").write_text("{not json")
    with pytest.raises(RunError, match=r"groups\.json: line 1, column 2: not valid JSON"):
        load_run(tmp_path)


def test_report_of_an_empty_run_is_written_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "groups.json").write_text(json.dumps({"name": "empty", "groups": {}}))
    with pytest.raises(RunError, match="no trials found"):
        build_report(tmp_path)
    assert (tmp_path / "report" / "index.html").is_file()


def test_cli_report_error_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a tunefactory run directory" in err[0]
    with pytest.raises(RunError, match="--top-k must be >= 1; got 0"):
        build_report(tmp_path, top_k=0)


def _fake_trials(n: int, seed: int = 0) -> list[Trial]:
    """Trials whose val RMSE depends on lookback (strongly) and nothing else."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lb = rng.choice([4, 8, 16])
        ind = ["log_return_1"] + [m for m in ("rsi_14", "hl_spread", "macd") if rng.random() < 0.5]
        if lb == 4:
            ind = [*ind, "vol"] if "vol" not in ind else ind
        cfg = {"group": "X-Y/1d", "family": rng.choice(["gru", "mlp"]), "lookback": lb, "batch_size": 64,
               "learning_rate": 10 ** rng.uniform(-3.5, -2), "loss": "mse", "optimizer": "adam",
               "indicators": ind, "columns": ind, "trial_number": i, "model": {"units": 8}}
        best = 1.0 + lb / 10 + rng.gauss(0, 0.01)
        out.append(Trial(f"t{i:03d}", Path("."), cfg, [{"epoch": 1, "val_rmse": best, "val_rmse_best": best}],
                         {"val_rmse_best": best, "test_rmse": best, "done": True}, "finished"))
    return out


def test_importance_history_and_indicator_frequency_from_an_in_memory_study() -> None:
    from reports import charts

    trials = _fake_trials(60)
    study = charts.build_study(trials)
    assert len(study.trials) == 60
    assert [t.user_attrs["trial_id"] for t in study.trials] == [t.trial_id for t in trials]
    assert study.best_value == pytest.approx(min(t.best for t in trials))
    imp, note = charts.importances(study)
    assert next(iter(imp)) == "lookback" and imp["lookback"] > 0.5, imp
    assert "ind.log_return_1" not in imp and "loss" not in imp  # constant: left out
    assert "60 scored trials" in note
    ranked = sorted(trials, key=lambda t: t.best)
    freq = charts.indicator_frequency(ranked, 10).set_index("indicator")
    vol_all = sum("vol" in t.config["indicators"] for t in trials) / 60
    assert freq.loc["vol", "top_k"] == 1.0 and freq.loc["vol", "all"] == pytest.approx(vol_all)
    assert freq.loc["log_return_1", "top_k"] == freq.loc["log_return_1", "all"] == 1.0
    hist = charts.fig_history(study, 1.5)
    best_line = next(tr for tr in hist.data if tr.name == "Best Value")
    assert list(best_line.y) == pytest.approx(list(np.minimum.accumulate([t.best for t in trials])))


def test_report_study_reads_the_trained_subsets_and_their_size() -> None:
    """ind.size and one in/out per member, from config["indicators"]: an indicator that helps leads the importance."""
    from optuna.distributions import IntDistribution

    from reports import charts

    rng = random.Random(1)
    trials = []
    for i in range(60):
        ind = ["log_return_1"] + [m for m in ("rsi_14", "hl_spread", "macd", "vol") if rng.random() < 0.5]
        best = 1.0 - 0.2 * ("macd" in ind) + rng.gauss(0, 0.01)
        cfg = {"group": "X-Y/1d", "family": "mlp", "lookback": 8, "indicators": ind, "columns": ind,
               "trial_number": i, "model": {"units": 8}}
        trials.append(Trial(f"t{i:03d}", Path("."), cfg, [{"epoch": 1, "val_rmse": best, "val_rmse_best": best}],
                            {"val_rmse_best": best, "test_rmse": best, "done": True}, "finished"))
    study = charts.build_study(trials)
    for ft, t in zip(study.trials, trials, strict=True):
        ind = t.config["indicators"]
        assert ft.params["ind.size"] == len(ind)
        assert {m for m in ("rsi_14", "hl_spread", "macd", "vol") if ft.params[f"ind.{m}"]} == set(ind) - {"log_return_1"}
    assert isinstance(study.trials[0].distributions["ind.size"], IntDistribution)
    imp, _ = charts.importances(study)
    assert next(iter(imp)) == "ind.macd" and imp["ind.macd"] > 0.5, imp


def test_importance_explains_why_it_is_missing() -> None:
    from reports import charts

    imp, note = charts.importances(charts.build_study(_fake_trials(2)))
    assert imp == {} and "at least 3 scored trials" in note


def test_chart_json_cannot_close_its_script_element() -> None:
    import plotly.graph_objects as go

    from reports.charts import to_json

    fig = go.Figure(go.Scatter(x=[1], y=[2], name="</script><!-- & \u2028"))
    text = to_json(fig)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text)["data"][0]["name"] == "</script><!-- & \u2028"


def test_trial_timing_feeds_compute_and_throughput(built_run: Path) -> None:
    run = load_run(built_run)
    for t in run.trials:
        assert t.wall_seconds > 0 and t.ended >= t.started
    summary = json.loads((built_run / "report" / "summary.json").read_text())
    g = summary["groups"][0]
    assert g["compute_seconds"] == pytest.approx(sum(t.wall_seconds for t in run.trials))
    wall = max(t.ended for t in run.trials) - min(t.started for t in run.trials)
    assert g["trials_per_hour"] == pytest.approx(4 / (wall / 3600))
    assert math.isfinite(g["trials_per_hour"])


def test_verdicts_and_headline_across_groups() -> None:
    from reports.build import _headline, _verdict

    good_conf = {"test_skill_mean": 0.03, "test_skill_std": 0.01, "runs": 6, "verdict": "beats persistence"}
    noise_conf = {"test_skill_mean": 0.01, "test_skill_std": 0.02, "runs": 6,
                  "verdict": "not distinguishable from persistence"}
    meta = {"seeds": 3, "folds": 2}
    win = {"test_skill": 0.02, "val_skill": 0.01, "test_rmse": 1.0}
    v_fail = _verdict({**win, "test_skill": -0.01}, None, None, None)
    v_noise = _verdict(win, noise_conf, None, meta)
    v_luck = _verdict({**win, "val_skill": -0.001}, None, None, None)
    v_open = _verdict(win, None, None, None)
    v_good = _verdict(win, good_conf, None, meta,
                      [{"name": "persistence", "test_rmse": 1.02}, {"name": "ar", "test_rmse": 0.99}])
    assert v_fail["level"] == "bad" and "does NOT beat persistence" in v_fail["text"]
    assert v_noise["level"] == "bad" and "not distinguishable from persistence" in v_noise["text"]
    assert "+1.00% ± 2.00% over 6 runs (3 seeds × 2 folds)" in v_noise["text"]
    assert v_luck["level"] == "bad" and "most likely luck" in v_luck["text"]
    assert v_open["level"] == "warn" and "not yet confirmed" in v_open["text"]
    assert v_good["level"] == "good" and "“ar” baseline does better" in v_good["text"]

    def card(v: dict, skill: float = 0.02) -> dict:
        return {"winner": {"test_skill": skill}, "verdict": v}

    h = _headline([card(v_fail, -0.01), card(v_noise), card(v_good)])
    assert h["level"] == "bad"
    assert h["text"] == ("1 of 3 winners do not beat persistence (“next close = last close”) on the test span; "
                         "1 more cannot be told from it.")
    assert _headline([card(v_fail, -0.01), card(v_fail, -0.02)])["text"].startswith("None of the winners beats")
    assert _headline([card(v_good), card(v_open)])["level"] == "warn"
    assert _headline([card(v_good), card(v_good)])["level"] == "good"
    assert _headline([card(v_luck)])["text"] == "The winner cannot be told from persistence (“next close = last close”)."


# --- the report at a glance -------------------------------------------------------------


@pytest.fixture(scope="module")
def two_groups(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 56-trial, two-group run synthesised from the small real run (benchmarks/report_1000.py),
    in a folder whose name needs shell quoting; its report is built with 10 rows per page."""
    from benchmarks.report_1000 import synthesise
    from reports import build

    run = synthesise(small_run, tmp_path_factory.mktemp("glance") / "my run's", trials=56, groups=2)
    (run / "sweep_finished.json").write_text(json.dumps({"finished": "2026-12-01T10:00:00Z", "fit_seconds": 1.0}))
    mp = pytest.MonkeyPatch()
    mp.setattr(build, "PAGE_SIZE", 10)
    try:
        build_report(run)
    finally:
        mp.undo()
    return run


def _summary_rows(html: str) -> list[str]:
    (table,) = re.findall(r'<table class="summary" id="summary">(.*?)</table>', html, re.S)
    return re.findall(r'<tr class="(?:good|warn|bad)" data-group="([^"]+)">', table)


def test_summary_table_has_one_row_per_group_and_the_verdict_sentence_once(two_groups: Path) -> None:
    html = (two_groups / "report" / "index.html").read_text()
    summary = json.loads((two_groups / "report" / "summary.json").read_text())
    assert _summary_rows(html) == ["BTC-USDT/1d", "ETH-USDT/1d"]
    board = pd.read_csv(two_groups / "report" / "leaderboard.csv")
    for g in summary["groups"]:
        row = html.split(f'data-group="{g["group"]}">', 1)[1].split("</tr>", 1)[0]
        win = board[(board["group"] == g["group"]) & (board["rank"] == 1)].iloc[0]
        assert f"<b>{win['family']}</b> <code>{win['trial_id']}</code>" in row
        assert f"{win['test_skill'] * 100:+.2f}%" in row  # test skill
        assert f"{g['counts']['finished']}/{g['total']}" in row
        bt = g["backtest"]
        assert f"{bt['strategy']['total_return'] * 100:+.2f}% vs {bt['buy_hold']['total_return'] * 100:+.2f}%" in row
        assert "not confirmed" in row and "significant" in row
        # The verdict sentence is said once per group (the banner), not again in a card and the section.
        texts = [x["verdict"]["text"] for x in summary["groups"]]
        assert html.count(str(markupsafe.escape(g["verdict"]["text"]))) == texts.count(g["verdict"]["text"])


def test_run_metadata_and_ready_to_paste_commands(built_run: Path, two_groups: Path) -> None:
    import html as html_mod
    import shlex

    from cluster.cli import build_parser

    page = (built_run / "report" / "index.html").read_text()
    (meta,) = re.findall(r'<dl class="meta small" id="run-meta">(.*?)</dl>', page, re.S)
    groups = json.loads((built_run / "groups.json").read_text())
    # Recorded by the sweep that made the small run: versions, commit (a git checkout), start.
    assert f"tensorflow {groups['versions']['tensorflow']}" in meta
    assert f"python {groups['versions']['python']}" in meta and f"optuna {groups['versions']['optuna']}" in meta
    assert groups["commit"] and f"<code>{groups['commit']}</code>" in meta
    assert groups["created"].replace("T", " ").replace("Z", " UTC") in meta
    finished = json.loads((built_run / "sweep_finished.json").read_text())["finished"]
    assert finished.replace("T", " ").replace("Z", " UTC") in meta and 'id="partial"' not in page

    page = (two_groups / "report" / "index.html").read_text()
    cmds = [shlex.split(html_mod.unescape(c)) for c in re.findall(r'<pre class="cmd small">(.*?)</pre>', page)]
    assert [c[1] for c in cmds] == ["confirm", "export", "forecast", "forecast"]
    parser = build_parser()
    parsed = [parser.parse_args(c[1:]) for c in cmds if c[0] == "tunefactory"]
    assert len(parsed) == 4
    assert parsed[0].run_dir == parsed[1].run_dir == two_groups  # the quoted "my run's" folder, intact
    assert (parsed[0].top_k, parsed[0].seeds, parsed[0].folds) == (3, 5, 3)
    assert [(a.asset, a.timeframe) for a in parsed[2:]] == [("BTC-USDT", "1d"), ("ETH-USDT", "1d")]
    assert parsed[1].registry == parsed[2].registry == Path("winners")


def test_importance_is_collapsed_below_20_scored_trials(built_run: Path, two_groups: Path) -> None:
    few = (built_run / "report" / "index.html").read_text()
    assert re.search(r'<details class="fig-collapsed"><summary class="small">Parameter importance \(fANOVA\): only 4 '
                     r'scored trials \(fewer than 20\)[^<]*</summary><div class="chart" [^>]*data-kind="importance"', few)
    board = pd.read_csv(two_groups / "report" / "leaderboard.csv")
    scored = board[board["status"].isin(["finished", "stopped"])].groupby("group").size()
    assert (scored >= 20).all(), scored  # the synthetic groups have enough: shown open
    many = (two_groups / "report" / "index.html").read_text()
    assert many.count('data-kind="importance"') == 2 and "fig-collapsed" not in many
    # 28 trials per group: the top 10 is compared with all of them.
    assert re.findall(r"Indicators in the top (\d+) vs all (\d+) scored", many) == [("10", str(n)) for n in scored]
    assert "Indicator frequency in the top trials vs all: needs at least 6 scored trials" in few


def test_persistence_directional_accuracy_is_na(built_run: Path) -> None:
    html = (built_run / "report" / "index.html").read_text()
    (row,) = re.findall(r'<tr><td class="l">persistence</td>(.*?)</tr>', html)
    assert row.endswith(">n/a</td>") and "%</td>" not in row.split("</td>")[-2]
    drift = re.findall(r'<tr><td class="l">drift</td>.*?<td>([\d.]+%)</td></tr>', html)
    assert drift, "other baselines keep their directional accuracy"


def test_trial_table_has_parameter_columns_indicator_counts_and_pages(two_groups: Path) -> None:
    html = (two_groups / "report" / "index.html").read_text()
    section = html.split('<table class="sortable board" id="t-1"', 1)[1].split("</table>", 1)[0]
    cols = re.findall(r'data-col="([^"]+)"', section.split("</thead>", 1)[0])
    # one column per searched parameter that varies; no raw model JSON, no wrapped list
    for c in ("param:lookback", "param:batch", "param:lr", "param:units", "n_indicators"):
        assert c in cols, cols
    assert "model" not in cols and "indicators" not in cols
    types = {col: t for t, col in re.findall(r'data-type="(\w+)" data-col="([^"]+)"', section)}
    assert types["param:lr"] == types["param:units"] == types["n_indicators"] == "num"
    board = pd.read_csv(two_groups / "report" / "leaderboard.csv")
    g = board[board["group"] == "BTC-USDT/1d"].reset_index(drop=True)
    rows = re.findall(r"<tr class=\"[^\"]*\" data-ind=\"([^\"]*)\"( hidden)?>(.*?)</tr>", section)
    assert len(rows) == len(g) == 28
    i_units, i_ind = cols.index("param:units"), cols.index("n_indicators")
    for (ind, _hidden, cells), (_, r) in zip(rows, g.iterrows(), strict=True):
        tds = re.findall(r"<td([^>]*)>(.*?)</td>", cells)
        assert tds[i_units][1] == str(json.loads(r["model"])["units"])
        assert tds[i_ind][1] == str(r["n_indicators"]) and f'title="{r["indicators"]}"' in tds[i_ind][0]
        assert ind == r["indicators"]
    # paging: the first 10 rows show, the rest wait hidden; the pager says so
    assert [bool(h) for _, h, _ in rows] == [False] * 10 + [True] * 18
    pager = html.split('<div class="pager" data-table="t-1">', 1)[1].split("</div>", 1)[0]
    assert "page 1 of 3" in pager and 'class="next">' in pager and 'class="prev" disabled' in pager
    assert 'data-page-size="10"' in section


def test_partial_report_is_labelled_until_the_sweep_finished_marker_exists(small_run: Path, tmp_path: Path) -> None:
    run = copy_run(small_run, tmp_path / "run")
    marker = run / "sweep_finished.json"
    assert marker.is_file()  # written by the sweep that made the small run
    build_report(run)
    assert json.loads((run / "report" / "summary.json").read_text())["partial"] is None
    marker.unlink()
    build_report(run)  # every trial has final scores: complete even without the marker
    assert 'id="partial"' not in (run / "report" / "index.html").read_text()
    losers = sorted(d for d in run.glob("trial_*") if d != winner_dir(run))
    # A trial ASHA stopped: epochs without test scores, its last row marked done (Ray 2.60). It
    # has ended, so a finished sweep from before the marker existed is not called partial.
    rows = [json.loads(ln) for ln in (losers[1] / "result.json").read_text().splitlines() if ln.strip()]
    epochs = [r for r in rows if "test_rmse" not in r][:2]
    (losers[1] / "result.json").write_text("".join(json.dumps({**r, "done": i == len(epochs) - 1}) + "\n"
                                                   for i, r in enumerate(epochs)))
    build_report(run)
    assert 'id="partial"' not in (run / "report" / "index.html").read_text()
    (losers[0] / "result.json").unlink()  # a trial still starting: no report yet
    build_report(run)
    html = (run / "report" / "index.html").read_text()
    assert _body_start(html).startswith('<div class="partial" id="partial">Partial report: 1 of 4 trials have not '
                                         "ended")
    assert "<h1>tunefactory report — tiny (partial)</h1>" in html
    assert json.loads((run / "report" / "summary.json").read_text())["partial"] == {"missing": 1, "total": 4}
    marker.write_text(json.dumps({"finished": "2026-12-01T10:00:00Z", "fit_seconds": 3.0}))
    build_report(run)
    assert "(partial)" not in (run / "report" / "index.html").read_text()
    marker.write_text('{"finished": "2026-12-01T10:0')  # damaged: counts as no marker, not as an error
    build_report(run)
    assert "(partial)" in (run / "report" / "index.html").read_text()


def test_cumulative_error_chart_ends_at_the_total_squared_error_difference() -> None:
    from reports import charts

    pred = pd.DataFrame({"timestamp": pd.date_range("2025-01-01", periods=4, freq="D", tz="UTC").astype(str),
                         "y_true": [1.0, 1.02, 0.99, 1.01], "y_pred": [1.01, 1.0, 1.0, 1.0],
                         "y_persistence": [1.0] * 4})
    fig = charts.fig_cumulative_error(pred)
    assert fig is not None
    e_p = (pred["y_true"] - 1.0) ** 2
    e_m = (pred["y_true"] - pred["y_pred"]) ** 2
    assert list(fig.data[0].y) == pytest.approx(list((e_p - e_m).cumsum()))
    assert charts.fig_cumulative_error(pred.drop(columns="y_persistence")) is None
    scatter = charts.fig_predictions(pred, target="multiplier")
    assert list(scatter.data[0].x) == list(pred["y_true"]) and list(scatter.data[0].y) == list(pred["y_pred"])


def test_large_groups_sample_fanova_and_leave_out_optuna_plots(small_run: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from reports import build, charts

    monkeypatch.setattr(charts, "FANOVA_MAX_TRIALS", 30)
    imp, note = charts.importances(charts.build_study(_fake_trials(60)))
    assert note == "fANOVA over a random 30 of the 60 scored trials (seed 0)"
    assert next(iter(imp)) == "lookback" and imp["lookback"] > 0.5, imp  # the sample still finds it

    monkeypatch.setattr(build, "OPTUNA_PLOTS_MAX", 3)
    run = copy_run(small_run, tmp_path / "run")
    build_report(run)
    html = (run / "report" / "index.html").read_text()
    kinds = re.findall(r'data-kind="(\w+)"', html)
    assert "importance" in kinds and not {"parallel", "slice", "contour"} & set(kinds)
    assert ("Parallel-coordinate, slice and contour plots are left out: this group has 4 trials, and above 3 their "
            "data would make the page slow.") in html

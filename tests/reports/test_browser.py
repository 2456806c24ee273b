"""The report in a real headless Chromium: offline, no console error, sortable, screenshot.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped without it. The
page is driven over the DevTools protocol (tests/reports/cdp.py): every network request
and console message the page produces is recorded, the sort is a real mouse click on a
column header, and the assertions read the DOM afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.reports.cdp import CHROMIUM, Browser
from tests.reports.conftest import copy_run

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not found: the browser test needs "
                                "Debian's chromium package (apt-get install -y chromium)")

XSS = "<script>alert(1)</script>"


def _column(b: Browser, table: str, col: str) -> list[str | None]:
    return b.evaluate(f"""(function(){{
        var t = document.querySelector({json.dumps(table)});
        var i = Array.prototype.findIndex.call(t.tHead.rows[0].cells, function(th){{ return th.dataset.col === {json.dumps(col)}; }});
        return Array.prototype.map.call(t.tBodies[0].rows, function(r){{ return r.cells[i].getAttribute('data-v'); }});
    }})()""")


def _open(b: Browser, page: Path) -> None:
    for m in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
        b.call(m)
    b.call("Page.navigate", {"url": page.as_uri()})
    b.wait_event("Page.loadEventFired")
    deadline = time.monotonic() + 60
    while b.evaluate("document.documentElement.getAttribute('data-ready')") != "1":
        assert time.monotonic() < deadline, "the page script never finished"
        time.sleep(0.05)


def _errors(events: list[dict]) -> list[dict]:
    return [e["params"] for e in events
            if e["method"] == "Runtime.exceptionThrown"
            or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
            or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]


def _visible_ranks(b: Browser, table: str) -> list[str]:
    return b.evaluate(f"Array.prototype.filter.call(document.querySelectorAll('{table} tbody tr'),"
                      "function(r){return !r.hidden;}).map(function(r){return r.cells[0].textContent;})")


def test_report_opens_offline_sorts_and_renders(small_run: Path, tmp_path: Path) -> None:
    from reports.build import build_report

    run = copy_run(small_run, tmp_path / "run")
    meta = json.loads((run / "groups.json").read_text())
    meta["name"] = XSS  # a hostile run name must render as text, not run
    (run / "groups.json").write_text(json.dumps(meta))
    page = build_report(run) / "index.html"

    profile = tmp_path / "profile"
    profile.mkdir()
    b = Browser(profile)
    try:
        _open(b, page)
        # Every chart outside a closed <details> rendered as an SVG plot, with its toolbar
        # always visible (not only on hover) and a "download as PNG" button.
        kinds = b.evaluate("Array.prototype.map.call(document.querySelectorAll('.chart'), function(c){"
                           "return c.dataset.kind + (c.closest('details') ? ':closed' : '');})")
        assert kinds == ["history", "importance:closed", "parallel", "slice", "contour:closed", "curves",
                         "predictions", "cumulative", "equity"]
        shown = len([k for k in kinds if not k.endswith(":closed")])
        assert b.evaluate("document.querySelectorAll('.chart .main-svg').length") >= shown
        assert b.evaluate("document.querySelectorAll('.chart .modebar').length") == shown
        assert b.evaluate("document.querySelectorAll('.chart .modebar--hover').length") == 0
        assert b.evaluate("document.querySelectorAll('.chart .modebar-btn[data-title=\"Download plot as a PNG\"]')"
                          ".length") == shown
        opacity = b.evaluate("getComputedStyle(document.querySelector('.chart .modebar-group')).opacity")
        assert opacity == "1"
        # A collapsed chart (importance from 4 trials) draws when opened, at full width.
        b.click("details.fig-collapsed summary")
        deadline = time.monotonic() + 10
        while not b.evaluate("!!document.querySelector('.chart[data-kind=importance] .main-svg')"):
            assert time.monotonic() < deadline, "the collapsed chart did not draw when opened"
            time.sleep(0.05)
        assert b.evaluate("document.querySelector('.chart[data-kind=importance]').offsetWidth") > 300
        # The summary table leads, one row per group, after the verdict banner.
        assert b.evaluate("document.querySelectorAll('#summary tbody tr').length") == 1
        # The trial table has one column per searched parameter (the learning rate is drawn
        # log-uniformly, so it varies) and the indicator count, not raw model JSON.
        cols = b.evaluate("Array.prototype.map.call(document.querySelectorAll('#t-1 thead th'), "
                          "function(th){ return th.dataset.col; })")
        assert "param:lr" in cols and "n_indicators" in cols and "model" not in cols, cols
        # The verdict is the first thing on the page; the hostile name is plain text.
        assert b.evaluate("document.body.firstElementChild.id") == "verdict"
        assert b.evaluate("document.querySelector('h1').textContent") == f"tunefactory report — {XSS}"
        assert b.evaluate("document.title") == f"tunefactory — {XSS}"

        # Sort by test RMSE with real clicks on the header.
        th = "#t-1 th[data-col=test_rmse]"
        before = _column(b, "#t-1", "test_rmse")
        b.click(th)
        asc = _column(b, "#t-1", "test_rmse")
        assert b.evaluate(f"document.querySelector('{th}').getAttribute('aria-sort')") == "ascending"
        assert [float(v) for v in asc] == sorted(float(v) for v in before)
        b.click(th)
        desc = _column(b, "#t-1", "test_rmse")
        assert [float(v) for v in desc] == sorted((float(v) for v in before), reverse=True)
        assert b.evaluate(f"document.querySelector('{th}').getAttribute('aria-sort')") == "descending"

        # The filter box hides non-matching rows.
        b.evaluate("(function(){var i=document.querySelector('input.filter'); i.value='gru'; "
                   "i.dispatchEvent(new Event('input'));})()")
        shown = b.evaluate("Array.prototype.filter.call(document.querySelectorAll('#t-1 tbody tr'),"
                           "function(r){return !r.hidden;}).map(function(r){return r.cells[2].textContent;})")
        assert shown and set(shown) == {"gru"}
        b.evaluate("(function(){var i=document.querySelector('input.filter'); i.value=''; "
                   "i.dispatchEvent(new Event('input'));})()")

        shot = tmp_path / "report.png"
        b.evaluate("window.scrollTo(0, 0)")
        b.screenshot(shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        if os.environ.get("TUNEFACTORY_SCREENSHOTS"):
            dst = Path(os.environ["TUNEFACTORY_SCREENSHOTS"])
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, dst / "report.png")
            b.evaluate("document.querySelector('.charts').scrollIntoView()")
            b.screenshot(dst / "report-charts.png")

        events = list(b.events)
    finally:
        b.close()

    urls = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert urls == [page.as_uri()], f"the page fetched something: {urls}"
    assert _errors(events) == []
    assert not any(e["method"] == "Page.javascriptDialogOpening" for e in events)


def test_trial_table_pages_filters_and_scrolls(small_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table larger than a page: next/prev, filter across pages, sort back to page 1, all rows scroll."""
    from benchmarks.report_1000 import synthesise
    from reports import build

    run = synthesise(small_run, tmp_path / "run", trials=60, groups=1)
    monkeypatch.setattr(build, "PAGE_SIZE", 25)
    page = build.build_report(run) / "index.html"
    profile = tmp_path / "profile"
    profile.mkdir()
    b = Browser(profile)
    try:
        _open(b, page)
        assert _visible_ranks(b, "#t-1") == [str(i) for i in range(1, 26)]
        assert b.evaluate("document.querySelector('.pager .page').textContent") == "page 1 of 3"
        b.click(".pager .next")
        assert _visible_ranks(b, "#t-1") == [str(i) for i in range(26, 51)]
        b.click(".pager .next")
        assert _visible_ranks(b, "#t-1") == [str(i) for i in range(51, 61)]
        assert b.evaluate("document.querySelector('.pager .next').disabled") is True
        b.click(".pager .prev")
        assert _visible_ranks(b, "#t-1")[0] == "26"
        # Filtering searches every page (and the hover-only indicator lists), then shows page 1.
        b.evaluate("(function(){var i=document.querySelector('input.filter'); i.value='failed'; "
                   "i.dispatchEvent(new Event('input'));})()")
        failed = b.evaluate("document.querySelectorAll('#t-1 tbody tr.failed').length")
        assert 0 < failed < 25 and len(_visible_ranks(b, "#t-1")) == failed
        b.evaluate("(function(){var i=document.querySelector('input.filter'); i.value='rsi_14'; "
                   "i.dispatchEvent(new Event('input'));})()")
        with_rsi = b.evaluate("Array.prototype.filter.call(document.querySelectorAll('#t-1 tbody tr'),"
                              "function(r){return r.dataset.ind.split(' ').indexOf('rsi_14')>=0;}).length")
        assert b.evaluate("document.getElementById('t-1-count').textContent") == f"{with_rsi} of 60 trials"
        b.evaluate("(function(){var i=document.querySelector('input.filter'); i.value=''; "
                   "i.dispatchEvent(new Event('input'));})()")
        # Sorting sorts all 60 rows and returns to page 1.
        b.click(".pager .next")
        b.click("#t-1 th[data-col=rank]")
        b.click("#t-1 th[data-col=rank]")
        assert _visible_ranks(b, "#t-1") == [str(i) for i in range(60, 35, -1)]
        # "all" shows every row in a scrolling box with a sticky header.
        b.evaluate("(function(){var s=document.querySelector('.pager .size'); s.value='0'; "
                   "s.dispatchEvent(new Event('change'));})()")
        assert len(_visible_ranks(b, "#t-1")) == 60
        assert b.evaluate("(function(){var w=document.querySelector('.board-wrap');"
                          "return w.scrollHeight > w.clientHeight;})()")
        events = list(b.events)
    finally:
        b.close()
    assert _errors(events) == []

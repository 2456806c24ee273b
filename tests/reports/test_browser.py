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
        for m in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            b.call(m)
        b.call("Page.navigate", {"url": page.as_uri()})
        b.wait_event("Page.loadEventFired")
        deadline = time.monotonic() + 30
        while b.evaluate("document.documentElement.getAttribute('data-ready')") != "1":
            assert time.monotonic() < deadline, "the page script never finished"
            time.sleep(0.05)

        # Every chart rendered as an SVG plot.
        n_charts = b.evaluate("document.querySelectorAll('.chart').length")
        assert n_charts == 6
        assert b.evaluate("document.querySelectorAll('.chart .main-svg').length") >= n_charts
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
    errors = [e["params"] for e in events
              if e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    assert not any(e["method"] == "Page.javascriptDialogOpening" for e in events)

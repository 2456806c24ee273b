"""Fixtures of the report tests: copies of the session's small real run, built once.

``small_run`` (tests/conftest.py) is shared by the whole session and must stay untouched;
every test that writes copies it first (``copy_run``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def copy_run(src: Path, dst: Path) -> Path:
    """A writable copy of a run directory (without its old report)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("report"))
    return dst


def rewrite_results(trial_dir: Path, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Apply ``fn`` to every row of a trial's ``result.json``."""
    f = trial_dir / "result.json"
    rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    f.write_text("".join(json.dumps(fn(r)) + "\n" for r in rows))


def winner_dir(run: Path) -> Path:
    """The trial folder of the run's best trial by validation RMSE."""
    from reports.collect import load_run
    from reports.registry.winners import winners

    (t,) = winners(load_run(run)).values()
    return t.path


@pytest.fixture(scope="session")
def built_run(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the small run with its report built by this code (read-only for tests)."""
    from reports.build import build_report

    run = copy_run(small_run, tmp_path_factory.mktemp("built") / "tiny")
    build_report(run)
    return run


@pytest.fixture(scope="session")
def registry(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A winners registry holding the small run's winner (read-only for tests)."""
    from reports.registry.winners import export_run

    reg = tmp_path_factory.mktemp("registry") / "winners"
    export_run(small_run, reg)
    return reg

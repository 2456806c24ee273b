"""Winners registry: replace only on improvement, history, crash safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reports.registry.winners import export_run, load_winner
from tests.reports.conftest import copy_run, rewrite_results, winner_dir
from trainables.errors import RunError

ROOT = Path(__file__).resolve().parents[3]


def _scaled(small_run: Path, dst: Path, factor: float) -> Path:
    """A copy of the run whose winner's validation RMSE is multiplied by ``factor``."""
    run = copy_run(small_run, dst)
    rewrite_results(winner_dir(run), lambda r: {**r, "val_rmse_best": r["val_rmse_best"] * factor}
                    if "val_rmse_best" in r else r)
    return run


def _history(reg: Path) -> list[dict]:
    f = reg / "history.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.is_file() else []


def test_replaces_only_on_improvement_and_keeps_history(small_run: Path, tmp_path: Path) -> None:
    reg = tmp_path / "winners"
    (line,) = export_run(small_run, reg)
    assert line.startswith("BTC-USDT/1d: exported trial")
    assert len(_history(reg)) == 1 and _history(reg)[0]["before"] is None
    first = load_winner(reg, "BTC-USDT", "1d")

    (line,) = export_run(small_run, reg)
    assert "kept the current winner" in line and "already the current winner" in line
    (line,) = export_run(_scaled(small_run, tmp_path / "worse", 1.5), reg)
    assert "kept the current winner" in line and "on the same span" in line
    assert len(_history(reg)) == 1
    assert load_winner(reg, "BTC-USDT", "1d").path == first.path

    better = _scaled(small_run, tmp_path / "better", 0.5)
    (line,) = export_run(better, reg)
    assert "replaced the current winner" in line
    hist = _history(reg)
    assert len(hist) == 2
    assert hist[1]["before"]["val_rmse_best"] == pytest.approx(first.metrics["val_rmse_best"])
    assert hist[1]["after"]["val_rmse_best"] == pytest.approx(first.metrics["val_rmse_best"] * 0.5)
    now = load_winner(reg, "BTC-USDT", "1d")
    assert now.metrics["run"] == str(better.resolve()) and now.path != first.path

    other = copy_run(small_run, tmp_path / "other-span")
    meta = json.loads((other / "groups.json").read_text())
    meta["groups"]["BTC-USDT/1d"]["spans"]["val"] = ["2020-01-01T00:00Z", "2020-06-01T00:00Z"]
    (other / "groups.json").write_text(json.dumps(meta))
    rewrite_results(winner_dir(other), lambda r: {**r, "val_rmse_best": 1e-9} if "val_rmse_best" in r else r)
    (line,) = export_run(other, reg)
    assert "judged on validation span" in line and "not comparable" in line and len(_history(reg)) == 2
    (line,) = export_run(other, reg, force=True)
    assert "replaced" in line and len(_history(reg)) == 3 and _history(reg)[2]["forced"] is True
    # Only the current and the previous version are kept on disk.
    assert len([p for p in (reg / ".versions" / "BTC-USDT_1d").iterdir()]) == 2


CRASH = textwrap.dedent("""
    import os, shutil, sys
    sys.path.insert(0, {root!r})
    import reports.registry.winners as ex
    point = {point!r}
    calls = {{"copy": 0, "replace": 0}}
    real_copy, real_replace = shutil.copy2, os.replace

    def copy2(src, dst, **kw):
        calls["copy"] += 1
        if point == "copy" and calls["copy"] == 2:
            os._exit(17)  # the process dies mid-write: no finally, no cleanup
        return real_copy(src, dst, **kw)

    def replace(src, dst):
        calls["replace"] += 1
        if point == "rename" and calls["replace"] == 1:
            os._exit(17)  # version written, not yet renamed to its final name
        if point == "publish" and calls["replace"] == 2:
            os._exit(17)  # version complete, link not yet switched
        return real_replace(src, dst)

    ex.shutil.copy2 = copy2
    ex.os.replace = replace
    ex.export_run({run!r}, {reg!r})
""")


@pytest.mark.parametrize("point", ["copy", "rename", "publish"])
def test_crash_mid_export_leaves_the_old_winner_loadable(small_run: Path, tmp_path: Path, point: str) -> None:
    import keras

    reg = tmp_path / "winners"
    export_run(small_run, reg)
    before = load_winner(reg, "BTC-USDT", "1d")
    better = _scaled(small_run, tmp_path / "better", 0.5)
    script = CRASH.format(root=str(ROOT), point=point, run=str(better), reg=str(reg))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 17, r.stderr

    after = load_winner(reg, "BTC-USDT", "1d")
    assert after.path == before.path and after.metrics == before.metrics
    assert len(_history(reg)) == 1
    model = keras.models.load_model(after.path / "selection" / "model.keras", compile=False)
    assert model.count_params() == before.metrics["n_params"]

    # The next export finishes the job and cleans what the crash left.
    (line,) = export_run(better, reg)
    assert "replaced" in line and len(_history(reg)) == 2
    leftovers = [p.name for p in (reg / ".versions" / "BTC-USDT_1d").iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in reg.iterdir() if ".link-" in p.name]
    assert leftovers == []


def test_a_plain_folder_from_an_older_export_is_migrated(small_run: Path, tmp_path: Path) -> None:
    import shutil

    reg = tmp_path / "winners"
    export_run(small_run, reg)
    cur = load_winner(reg, "BTC-USDT", "1d").path
    old = tmp_path / "plain"
    shutil.copytree(cur, old)
    (reg / "BTC-USDT_1d").unlink()
    shutil.rmtree(reg / ".versions")
    shutil.move(str(old), reg / "BTC-USDT_1d")
    (line,) = export_run(_scaled(small_run, tmp_path / "better", 0.5), reg)
    assert "replaced" in line
    assert (reg / "BTC-USDT_1d").is_symlink()
    assert (reg / ".versions" / "BTC-USDT_1d" / "0-legacy" / "selection" / "model.keras").is_file()


def test_export_and_load_errors(small_run: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no exported winner for ETH-USDT 4h"):
        load_winner(tmp_path, "ETH-USDT", "4h")
    run = copy_run(small_run, tmp_path / "run")
    for ck in run.glob("trial_*/checkpoint_*"):
        (ck / "model.keras").unlink()
    with pytest.raises(RunError, match="no finished trial saved a model"):
        export_run(run, tmp_path / "winners")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is not a folder"):
        export_run(small_run, tmp_path / "file")

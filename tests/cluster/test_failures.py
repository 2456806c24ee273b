"""A trial that raises and one whose loss becomes NaN both end as failed, with their reason; the sweep finishes.

Real Ray, real Keras: three groups, one trial each. ETH's training labels are NaN (so the
training loss is NaN at the first epoch and the trainable raises TrialDiverged); SOL's
feature matrix has no columns (so the trial raises IndexError). BTC is healthy. (The
driver's summary of ETH then has NaN baselines fitted on the training span; that is fine
here.)
Storage is a ``file://`` URI, so the object-store path (report built in a local mirror,
uploaded next to the run) is exercised too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from cluster import sweep
from search_spaces.loader import load_spec

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
def test_raising_and_diverging_trials_fail_with_reason_and_sweep_finishes(
        tmp_path: Path, tiny_spec_text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yaml.safe_load(tiny_spec_text)
    raw["name"] = "failures"
    raw["data"]["assets"] = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    raw["model"]["families"] = {"mlp": {"units": 8}}
    raw["search"]["num_samples"] = 1
    raw["resources"]["max_failures"] = 1
    spec_file = tmp_path / "failures.yaml"
    spec_file.write_text(yaml.safe_dump(raw))

    real = sweep.prepare_groups

    def corrupted(spec):  # type: ignore[no-untyped-def]
        out = real(spec)
        eth, sol = out["ETH-USDT/1d"], out["SOL-USDT/1d"]
        y = eth.y.copy()
        y[eth.train_idx] = np.nan
        out["ETH-USDT/1d"] = dataclasses.replace(eth, y=y)
        out["SOL-USDT/1d"] = dataclasses.replace(sol, features=sol.features[:, :0].copy())
        return out

    monkeypatch.setattr(sweep, "prepare_groups", corrupted)
    monkeypatch.setenv("TUNEFACTORY_CACHE", str(tmp_path / "cache"))
    storage = f"file://{tmp_path / 'store'}"
    local = sweep.run_sweep(load_spec(spec_file), name="failures", storage=storage)

    # The report was uploaded next to the run in storage, and built from what storage holds.
    run_in_store = tmp_path / "store" / "failures"
    board = (run_in_store / "report" / "leaderboard.csv").read_text()
    assert board == (local / "report" / "leaderboard.csv").read_text()

    from reports.collect import load_run

    trials = {t.group: t for t in load_run(local).trials}
    assert set(trials) == {"BTC-USDT/1d", "ETH-USDT/1d", "SOL-USDT/1d"}
    assert trials["BTC-USDT/1d"].status == "finished"
    nan, exc = trials["ETH-USDT/1d"], trials["SOL-USDT/1d"]
    assert nan.status == "failed" and exc.status == "failed"
    assert nan.error is not None and "TrialDiverged" in nan.error and "loss became nan" in nan.error
    assert exc.error is not None and "IndexError" in exc.error
    for t in (nan, exc):
        # max_failures=1: tried twice, both failures recorded by Ray in error.txt.
        text = (run_in_store / t.path.name / "error.txt").read_text()
        assert text.count("Failure #") == 2, text[:2000]
        reason = t.error or ""
        assert reason and (reason in board or reason.replace('"', '""') in board)

    # The groups' shared test spans went to object storage beside the trials (through
    # pyarrow, like groups.json), and the finished trial's compact forecasts read back
    # against them there (the local mirror leaves checkpoints in storage).
    from cluster.run_folder import write_test_spans
    from trainables.predictions import read_predictions, span_csv

    spans = run_in_store / "test_span"
    assert sorted(p.name for p in spans.iterdir()) == ["BTC-USDT_1d.csv", "ETH-USDT_1d.csv", "SOL-USDT_1d.csv"]
    ck = next((run_in_store / trials["BTC-USDT/1d"].path.name).glob("checkpoint_*"))
    assert len(read_predictions(ck)) == load_run(local).groups["BTC-USDT/1d"]["samples"]["test"]
    # A resume adds the span files a run from before the compact predictions lacks, and
    # rewrites none that exist.
    prepared = real(load_spec(spec_file).spec)
    (spans / "BTC-USDT_1d.csv").unlink()
    (spans / "ETH-USDT_1d.csv").write_text("kept\n")
    write_test_spans(f"{storage}/failures", prepared, only_missing=True)
    assert (spans / "BTC-USDT_1d.csv").read_text() == span_csv(prepared["BTC-USDT/1d"])
    assert (spans / "ETH-USDT_1d.csv").read_text() == "kept\n"

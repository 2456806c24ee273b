"""Forecast through the one pipeline: ``recipe.json`` carries funding tables, gap policy and
date range, so the forecast of a funding/ffill winner equals its test-span predictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports.registry.forecast import forecast
from tests.conftest import indicator_registry_restored
from trainables.data.candles import EMBEDDED_DIR
from trainables.errors import RunError
from trainables.pipeline import DataRecipe

DAY = pd.Timedelta(days=1)
HOLE = pd.Timestamp("2025-12-10", tz="UTC")  # one missing candle inside the test span

SPEC = """\
name: fundgap
data:
  assets: [BTC-USDT]
  timeframes: [1d]
  path: {path}
  start: 2025-01-01      # the vendored funding file has a hole 2023-06 .. 2024-12
  end: 2026-01-01        # later candles exist: the forecast must still see them
  funding: true          # trainables/data/embedded/funding/BTC-USDT_perp_funding_rate_8h.csv
  gap_policy: ffill
  ffill_limit: 2
window: {{lookback: 4}}
features:
  pool: [log_return, hl_spread, funding_rate, {{funding_rate_change: {{lag: 1}}}}]
  min_size: 3
  max_size: 3
  always: [funding_rate]
model:
  families:
    mlp: {{units: 8}}
training: {{max_epochs: 2, patience: 2, batch_size: 64}}
search: {{algorithm: random, num_samples: 1, seed: 3}}
scheduler: {{kind: none}}
resources: {{cpus: 1}}
"""


@pytest.fixture(scope="module")
def funding_registry(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    """A registry with the winner of a one-trial BTC 1d run using funding rates and ffill,
    on candles with one hole in the test span."""
    from cluster.sweep import run_sweep
    from reports.registry.winners import export_run
    from search_spaces.loader import load_spec

    d = tmp_path_factory.mktemp("fundgap")
    candles = d / "candles"
    candles.mkdir()
    raw = pd.read_csv(EMBEDDED_DIR / "BTC-USDT_1d.csv", dtype=str)
    raw[pd.to_datetime(raw["timestamp"], utc=True) != HOLE].to_csv(candles / "BTC-USDT_1d.csv", index=False)
    spec = d / "fundgap.yaml"
    spec.write_text(SPEC.format(path=candles))
    reg = d / "winners"
    with indicator_registry_restored():  # the funding indicators must not leak into later modules
        run = run_sweep(load_spec(spec), name="fundgap", storage=str(d / "runs"))
        export_run(run, reg)
    return reg


@pytest.fixture(scope="module")
def fund_predictions(funding_registry: Path) -> pd.DataFrame:
    p = pd.read_csv(funding_registry / "BTC-USDT_1d" / "selection" / "predictions.csv")
    p["ts"] = pd.to_datetime(p["timestamp"], utc=True)
    return p


def test_export_records_the_recipe_with_absolute_table_paths(funding_registry: Path) -> None:
    d = json.loads((funding_registry / "BTC-USDT_1d" / "recipe.json").read_text())
    r = DataRecipe.from_dict(d)
    assert r.funding_file is not None and r.funding_file.is_absolute() and r.funding_file.is_file()
    assert r.funding_file.name == "BTC-USDT_perp_funding_rate_8h.csv"
    assert r.path is not None and r.path.is_absolute()
    assert (r.gap_policy, r.ffill_limit, r.start, r.end) == ("ffill", 2, "2025-01-01", "2026-01-01")
    assert "funding_rate" in [m.key for m in r.pool]


def test_funding_ffill_forecast_equals_the_test_prediction(funding_registry: Path,
                                                           fund_predictions: pd.DataFrame) -> None:
    config = (funding_registry / "BTC-USDT_1d" / "config.yaml").read_text()
    assert "funding_rate" in config
    after_hole = fund_predictions.index[fund_predictions["ts"] == HOLE + DAY][0]  # its window holds a filled candle
    for row in (0, after_hole, len(fund_predictions) - 1):
        r = fund_predictions.iloc[row]
        fc = forecast("BTC-USDT", "1d", registry=funding_registry, now=r["ts"] + DAY)
        assert fc.last_open == r["ts"]
        assert fc.value == pytest.approx(r["y_pred"], rel=1e-6, abs=1e-7), row


def test_forecast_now_is_not_cut_off_by_the_runs_end(funding_registry: Path) -> None:
    last = pd.Timestamp("2026-01-05", tz="UTC")  # the last embedded candle, after data.end
    fc = forecast("BTC-USDT", "1d", registry=funding_registry, now=last + DAY + pd.Timedelta(hours=1))
    assert fc.last_open == last and fc.multiplier is not None


def test_winner_without_recipe_json_fails_in_one_line(registry: Path, tmp_path: Path) -> None:
    old = tmp_path / "winners"
    shutil.copytree(registry, old, symlinks=True)
    (old / "BTC-USDT_1d" / "recipe.json").unlink()
    with pytest.raises(RunError, match=r"no recipe\.json .*export the winner again") as e:
        forecast("BTC-USDT", "1d", registry=old)
    assert "\n" not in str(e.value)


METRIC_SPEC = """\
name: metricwin
data:
  assets: [BTC-USDT]
  timeframes: [1d]
  start: 2025-01-01
  metrics: [{table}]
window: {{lookback: 4}}
features:
  pool: [log_return, hl_spread, {{gn_addresses_active_count_change: {{lag: 1}}}}]
  min_size: 3
  max_size: 3
model:
  families:
    mlp: {{units: 8}}
training: {{max_epochs: 2, patience: 2, batch_size: 64}}
search: {{algorithm: random, num_samples: 1, seed: 5}}
scheduler: {{kind: none}}
resources: {{cpus: 1}}
"""


@pytest.fixture(scope="module")
def metric_registry(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    """A registry with the winner of a one-trial run whose subset uses a metric-table feature.

    The table is made here (Glassnode layout: ``timestamp`` + one column per metric, daily
    values stamped at 00:00 of their day), one row per day of the embedded BTC 1d candles.
    """
    from cluster.sweep import run_sweep
    from reports.registry.winners import export_run
    from search_spaces.loader import load_spec

    d = tmp_path_factory.mktemp("metricwin")
    candles = pd.read_csv(EMBEDDED_DIR / "BTC-USDT_1d.csv")
    table = pd.DataFrame({"timestamp": candles["timestamp"],
                          "addresses/active_count": (candles["volume"].astype(float) * 7 + 1000).round()})
    table.to_csv(d / "BTC_metrics.csv", index=False)
    spec = d / "metricwin.yaml"
    spec.write_text(METRIC_SPEC.format(table=d / "BTC_metrics.csv"))
    reg = d / "winners"
    with indicator_registry_restored():  # the metric indicators must not leak into later modules
        run = run_sweep(load_spec(spec), name="metricwin", storage=str(d / "runs"))
        export_run(run, reg)
    return reg


def test_metric_table_forecast_equals_the_test_prediction(metric_registry: Path) -> None:
    r = DataRecipe.from_dict(json.loads((metric_registry / "BTC-USDT_1d" / "recipe.json").read_text()))
    assert len(r.metric_files) == 1 and r.metric_files[0].is_absolute()
    assert "gn_addresses_active_count_change" in (metric_registry / "BTC-USDT_1d" / "config.yaml").read_text()
    preds = pd.read_csv(next((metric_registry / "BTC-USDT_1d").rglob("predictions.csv")))
    preds["ts"] = pd.to_datetime(preds["timestamp"], utc=True)
    for row in (0, len(preds) // 2, len(preds) - 1):
        p = preds.iloc[row]
        fc = forecast("BTC-USDT", "1d", registry=metric_registry, now=p["ts"] + DAY, model="selection")
        assert fc.last_open == p["ts"]
        assert fc.value == pytest.approx(p["y_pred"], rel=1e-6, abs=1e-7), row

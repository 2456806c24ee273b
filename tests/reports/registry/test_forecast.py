"""Forecast from an exported winner: same number as training's test prediction; clear refusals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from reports.registry.forecast import forecast
from trainables.data.candles import EMBEDDED_DIR
from trainables.errors import DataError, RunError

DAY = pd.Timedelta(days=1)


def _cut(dst: Path, until: pd.Timestamp, *, drop: pd.Timestamp | None = None) -> Path:
    """The embedded BTC 1d candles up to ``until`` (inclusive), as a file."""
    raw = pd.read_csv(EMBEDDED_DIR / "BTC-USDT_1d.csv", dtype=str)
    ts = pd.to_datetime(raw["timestamp"], utc=True)
    keep = ts <= until
    if drop is not None:
        keep &= ts != drop
    f = dst / "BTC-USDT_1d.csv"
    raw[keep].to_csv(f, index=False)
    return f


@pytest.fixture(scope="module")
def predictions(registry: Path) -> pd.DataFrame:
    p = pd.read_csv(registry / "BTC-USDT_1d" / "selection" / "predictions.csv")
    p["ts"] = pd.to_datetime(p["timestamp"], utc=True)
    return p


@pytest.mark.parametrize("row", [0, 133, -1])
def test_forecast_from_data_cut_at_t_equals_the_test_prediction_for_t(
        registry: Path, predictions: pd.DataFrame, tmp_path: Path, row: int) -> None:
    r = predictions.iloc[row]
    t = r["ts"]
    fc = forecast("BTC-USDT", "1d", registry=registry, data=_cut(tmp_path, t), now=t + DAY)
    assert fc.last_open == t and fc.made_at == t + DAY
    assert fc.applies_open == t + DAY and fc.applies_close == t + 2 * DAY
    assert fc.value == pytest.approx(r["y_pred"], rel=1e-6, abs=1e-7)
    assert fc.multiplier == pytest.approx(r["y_pred"], rel=1e-6, abs=1e-7)
    assert fc.last_close == pytest.approx(r["close"])
    assert fc.price == pytest.approx(r["close"] * r["y_pred"], rel=1e-6)
    assert fc.dropped_open is None


def test_forecast_as_of_a_past_time_ignores_later_and_in_progress_candles(
        registry: Path, predictions: pd.DataFrame) -> None:
    r = predictions.iloc[50]
    # Half-way through the next candle: that candle is in progress and must be left out.
    fc = forecast("BTC-USDT", "1d", registry=registry, now=r["ts"] + DAY + pd.Timedelta(hours=12))
    assert fc.last_open == r["ts"] and fc.dropped_open == r["ts"] + DAY
    assert fc.value == pytest.approx(r["y_pred"], rel=1e-6, abs=1e-7)
    text = "\n".join(fc.lines())
    assert "multiplier" in text and "in-progress candle" in text and "applies to" in text


def test_forecast_refuses_stale_short_and_gappy_data(registry: Path, predictions: pd.DataFrame,
                                                     tmp_path: Path) -> None:
    t = predictions.iloc[100]["ts"]
    data = _cut(tmp_path, t)
    with pytest.raises(DataError, match="stale data: the latest complete 1d candle closed at"):
        forecast("BTC-USDT", "1d", registry=registry, data=data, now=t + 2 * DAY)
    with pytest.raises(DataError, match=r"too short: .* the winner needs at least"):
        forecast("BTC-USDT", "1d", registry=registry, data=_cut(tmp_path, pd.Timestamp("2021-01-20", tz="UTC")),
                 now=pd.Timestamp("2021-01-21", tz="UTC"))
    with pytest.raises(DataError, match="gap after the candle opened"):
        forecast("BTC-USDT", "1d", registry=registry, data=_cut(tmp_path, t, drop=t - 2 * DAY), now=t + DAY)
    eth = tmp_path / "ETH-USDT_1d.csv"
    eth.write_text(data.read_text())
    with pytest.raises(DataError, match="holds ETH-USDT candles"):
        forecast("BTC-USDT", "1d", registry=registry, data=eth, now=t + DAY)
    with pytest.raises(RunError, match="no exported winner for BTC-USDT 4h"):
        forecast("BTC-USDT", "4h", registry=registry)
    with pytest.raises(DataError, match="timeframe '5m' is not supported"):
        forecast("BTC-USDT", "5m", registry=registry)


def test_cli_forecast_prints_the_forecast_or_one_line_refusal(
        registry: Path, predictions: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    t = predictions.iloc[-1]["ts"]
    at = (t + DAY).strftime("%Y-%m-%dT%H:%MZ")
    assert main(["forecast", "--asset", "BTC-USDT", "--timeframe", "1d", "--registry", str(registry),
                 "--at", at]) == 0
    out = capsys.readouterr().out
    assert "multiplier" in out and "price" in out and (t + DAY).strftime("%Y-%m-%dT%H:%MZ") in out
    assert main(["forecast", "--asset", "BTC-USDT", "--timeframe", "1d", "--registry", str(registry)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stale data" in err[0]

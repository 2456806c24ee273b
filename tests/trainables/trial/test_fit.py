"""One trial from a config: typed config at the entry, artifacts, and the saved model read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trainables.features.dataset import Prepared


@pytest.fixture(scope="module")
def btc() -> Prepared:
    from trainables.data.candles import load_candles
    from trainables.features.dataset import Split, prepare
    from trainables.features.indicators import make_member

    return prepare(load_candles("BTC-USDT", "1d"), [make_member("log_return")], max_lookback=4,
                   split=Split(0.7, 0.15, 0.15))


def _cfg(**kw: Any) -> dict[str, Any]:
    return {"family": "mlp", "model": {"units": 4, "layers": 1}, "columns": ["log_return_1"], "lookback": 4,
            "batch_size": 32, "learning_rate": 1e-3, "max_epochs": 2, "patience": 0, "seed": 3, **kw}


def test_dict_config_takes_its_group_from_the_data_and_unknown_keys_fail(btc: Prepared) -> None:
    from trainables.errors import RunError
    from trainables.trial.fit import trial_config

    cfg = trial_config(_cfg(trial_number=7), btc)
    assert (cfg.group, cfg.asset, cfg.timeframe) == ("BTC-USDT/1d", "BTC-USDT", "1d")
    assert cfg.weight_decay == 0.0 and cfg.optimizer == "adam"  # the dataclass' defaults
    assert trial_config(cfg, btc) is cfg
    with pytest.raises(RunError, match="unknown key"):
        trial_config(_cfg(learning_rat=1e-3), btc)


def test_run_trial_reports_every_epoch_and_saved_model_reproduces_test_predictions(
        btc: Prepared, tmp_path: Path) -> None:
    from trainables.trial.fit import run_trial, trial_config
    from trainables.trial.keras_runtime import load_model, predict_eager

    rows: list[dict[str, Any]] = []
    cfg = trial_config(_cfg(optimizer="adamw", weight_decay=0.0), btc)
    final = run_trial(cfg, btc, sink=rows.append, save_dir=tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2] and final["epochs"] == 2
    assert final["val_rmse_best"] == min(r["val_rmse"] for r in rows)
    assert json.loads((tmp_path / "trial.json").read_text()) == cfg.to_dict()
    assert json.loads((tmp_path / "scaler.json").read_text())["columns"] == ["log_return_1"]

    from trainables.features.dataset import Scaler, windows

    scaler = Scaler.from_json(json.loads((tmp_path / "scaler.json").read_text()))
    x = windows(btc, btc.column_index(cfg.columns), btc.test_idx, cfg.lookback, scaler)
    pred = predict_eager(load_model(tmp_path / "model.keras"), x).astype(np.float64) * scaler.y_std + scaler.y_mean
    saved = np.load(tmp_path / "predictions.npy", allow_pickle=False)
    assert saved.dtype == np.float64 and not (tmp_path / "predictions.csv").exists()
    np.testing.assert_allclose(pred, saved, rtol=1e-5, atol=1e-7)
    assert json.loads((tmp_path / "predictions.json").read_text()) == {
        "format": 1, "span": "BTC-USDT_1d.csv", "first": btc.span(btc.test_idx)[0][:16] + ":00Z",
        "rows": len(btc.test_idx)}


def test_load_model_registers_the_custom_layers_itself(tmp_path: Path) -> None:
    # A forecast loads a winner in a fresh process that never built a transformer.
    import subprocess
    import sys

    from trainables.models.families import build_model
    from trainables.trial.keras_runtime import save_model

    model = build_model("synth_dense", {"layers": 1, "heads": 1, "d_model": 4, "ff_mult": 1}, lookback=4,
                        n_features=2)
    save_model(model, tmp_path / "m.keras")
    code = ("import sys; from pathlib import Path; from trainables.trial.keras_runtime import load_model; "
            f"print(load_model(Path({str(tmp_path / 'm.keras')!r})).count_params())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert int(out.stdout.split()[-1]) == model.count_params()


def test_fit_fixed_epochs_trains_exactly_n_epochs_on_every_sample_and_is_seeded(tmp_path: Path) -> None:
    import dataclasses

    from trainables.data.candles import load_candles
    from trainables.features.dataset import Scaler, Split, fit_scaler, prepare, windows
    from trainables.features.indicators import make_member
    from trainables.trial.fit import fit_fixed_epochs
    from trainables.trial.keras_runtime import load_model, predict_eager

    p = prepare(load_candles("BTC-USDT", "1d"), [make_member("log_return")], max_lookback=4,
                split=Split.everything())
    assert len(p.val_idx) == len(p.test_idx) == 0
    a = fit_fixed_epochs(_cfg(), p, epochs=3, save_dir=tmp_path / "a")
    assert a["epochs"] == 3 and a["samples"] == len(p.train_idx)
    assert a["trained_through"] == p.span(p.train_idx)[1]
    saved = json.loads((tmp_path / "a" / "scaler.json").read_text())
    want = fit_scaler(p, p.column_index(["log_return_1"]))
    assert saved["y_mean"] == pytest.approx(want.y_mean) and saved["y_mean"] == pytest.approx(p.y[p.train_idx].mean())
    fit_fixed_epochs(_cfg(), p, epochs=3, save_dir=tmp_path / "b")
    scaler = Scaler.from_json(saved)
    x = windows(p, p.column_index(["log_return_1"]), p.train_idx[-20:], 4, scaler)
    za = predict_eager(load_model(tmp_path / "a" / "model.keras"), x)
    zb = predict_eager(load_model(tmp_path / "b" / "model.keras"), x)
    np.testing.assert_allclose(za, zb, rtol=1e-5)  # same config and seed: the same model
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        fit_fixed_epochs(_cfg(), dataclasses.replace(p), epochs=0)


def test_synthetic_trial_reports_and_saves_what_a_real_trial_does(btc: Prepared, tmp_path: Path) -> None:
    """The driver benchmark's stand-in (trainables.trial.synthetic) must look like a real trial to the driver."""
    from trainables.predictions import COLUMNS, SPAN_DIR, read_predictions, span_csv, span_file
    from trainables.trial.fit import run_trial, trial_config
    from trainables.trial.synthetic import synthetic_trial

    cfg = trial_config(_cfg(), btc)
    real_rows: list[dict[str, Any]] = []
    fake_rows: list[dict[str, Any]] = []
    real_dir, fake_dir = tmp_path / "trial_real" / "checkpoint_000000", tmp_path / "trial_fake" / "checkpoint_000000"
    real = run_trial(cfg, btc, sink=real_rows.append, save_dir=real_dir)
    fake = synthetic_trial(cfg, btc, sink=fake_rows.append, save_dir=fake_dir, epochs=2)
    assert [sorted(r) for r in fake_rows] == [sorted(r) for r in real_rows]
    assert sorted(fake) == sorted(real)
    assert fake["val_rmse_best"] == min(r["val_rmse"] for r in fake_rows)
    assert sorted(p.name for p in fake_dir.iterdir()) == sorted(p.name for p in real_dir.iterdir())
    # Both read back through the one reader, against the span file the driver writes.
    (tmp_path / SPAN_DIR).mkdir()
    (tmp_path / SPAN_DIR / span_file(cfg.group)).write_text(span_csv(btc))
    real_pred, fake_pred = read_predictions(real_dir), read_predictions(fake_dir)
    assert list(real_pred.columns) == list(COLUMNS) == list(fake_pred.columns)
    assert len(real_pred) == len(fake_pred) == len(btc.test_idx)
    pd.testing.assert_frame_equal(real_pred.drop(columns="y_pred"), fake_pred.drop(columns="y_pred"))
    again = synthetic_trial(cfg, btc, sink=lambda row: None, save_dir=None, epochs=2)  # seeded: reproducible
    assert {k: v for k, v in again.items() if "seconds" not in k} == {k: v for k, v in fake.items() if "seconds" not in k}

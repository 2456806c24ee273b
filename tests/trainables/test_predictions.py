"""Compact test-span predictions: the writer, the one reader, old checkpoints, alignment, damage."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainables.errors import RunError
from trainables.features.dataset import Prepared
from trainables.predictions import (
    COLUMNS,
    SPAN_DIR,
    SpanCache,
    predictions_csv,
    read_prediction_columns,
    read_predictions,
    span_csv,
    span_file,
    write_predictions,
)


@pytest.fixture(scope="module")
def btc() -> Prepared:
    from trainables.data.candles import load_candles
    from trainables.features.dataset import Split, prepare
    from trainables.features.indicators import make_member

    return prepare(load_candles("BTC-USDT", "1d"), [make_member("log_return")], max_lookback=4,
                   split=Split(0.7, 0.15, 0.15))


def _forecasts(p: Prepared, seed: int = 0) -> np.ndarray:
    """Forecasts whose 10-significant-digit text parses back to the very same doubles (as a CSV holds them)."""
    raw = p.persistence[p.test_idx] + np.random.default_rng(seed).normal(0, 0.01, len(p.test_idx))
    return np.array([float(f"{v:.8f}") for v in raw])


def _experiment(root: Path, p: Prepared, group: str = "BTC-USDT/1d") -> Path:
    """An experiment folder as the driver leaves it: the group's span file, no trials yet."""
    (root / SPAN_DIR).mkdir(parents=True, exist_ok=True)
    (root / SPAN_DIR / span_file(group)).write_text(span_csv(p))
    return root


def _checkpoint(root: Path, trial: str) -> Path:
    ck = root / f"trial_{trial}" / "checkpoint_000000"
    ck.mkdir(parents=True)
    return ck


def _old_writer_csv(p: Prepared, pred: np.ndarray) -> str:
    """What ``save_trial_files`` wrote per trial before the compact form (its code, verbatim)."""
    idx = p.test_idx
    return pd.DataFrame({
        "timestamp": pd.to_datetime(p.timestamps[idx], utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "close": p.close[idx],
        "y_true": p.y[idx],
        "y_pred": pred,
        "y_persistence": p.persistence[idx],
    }).to_csv(index=False, float_format="%.10g")


def test_old_csv_and_compact_checkpoints_read_as_the_identical_table(btc: Prepared, tmp_path: Path) -> None:
    exp = _experiment(tmp_path / "run", btc)
    pred = _forecasts(btc)
    new = _checkpoint(exp, "new")
    write_predictions(new, btc, group="BTC-USDT/1d", test_pred=pred)
    assert sorted(f.name for f in new.iterdir()) == ["predictions.json", "predictions.npy"]
    old = _checkpoint(exp, "old")
    (old / "predictions.csv").write_text(_old_writer_csv(btc, pred))

    a, b = read_predictions(old), read_predictions(new)
    assert list(a.columns) == list(COLUMNS) and len(a) == len(btc.test_idx)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a["timestamp"].iloc[0] == btc.span(btc.test_idx)[0][:16] + ":00Z"
    # The registry's copy of a compact checkpoint is, byte for byte, the file the old writer made.
    assert predictions_csv(b) == _old_writer_csv(btc, pred)
    # float64 on disk: the forecasts come back bit for bit, not rounded to 10 digits.
    exact = btc.persistence[btc.test_idx] + 1e-13
    write_predictions(new, btc, group="BTC-USDT/1d", test_pred=exact)
    assert np.array_equal(read_predictions(new)["y_pred"].to_numpy(), exact)
    assert (new / "predictions.npy").stat().st_size == 128 + 8 * len(btc.test_idx)


def test_an_old_csv_without_close_and_persistence_still_reads(btc: Prepared, tmp_path: Path) -> None:
    ck = _checkpoint(tmp_path, "x")
    (ck / "predictions.csv").write_text("timestamp,y_true,y_pred\n2025-01-01T00:00:00Z,1.01,1\n\n"
                                        "2025-01-02T00:00:00Z,0.99,1.002\n")
    df = read_predictions(ck)
    assert list(df.columns) == ["timestamp", "y_true", "y_pred"]
    assert df["y_pred"].tolist() == [1.0, 1.002] and df["timestamp"].tolist()[1] == "2025-01-02T00:00:00Z"


def test_an_old_csv_that_repeats_a_timestamp_is_refused_in_one_line(btc: Prepared, tmp_path: Path) -> None:
    ck = _checkpoint(tmp_path, "x")
    (ck / "predictions.csv").write_text("timestamp,y_true,y_pred\n2025-01-01T00:00:00Z,1.01,1\n"
                                        "2025-01-01T00:00:00Z,0.99,1.002\n")
    with pytest.raises(RunError, match=r"predictions\.csv: repeats a timestamp; restore or remove that trial folder"):
        read_predictions(ck)


def test_forecasts_align_to_their_first_timestamp_and_share_the_cached_span(btc: Prepared, tmp_path: Path) -> None:
    exp = _experiment(tmp_path / "run", btc)
    pred = _forecasts(btc, seed=1)
    a, b = _checkpoint(exp, "a"), _checkpoint(exp, "b")
    for ck in (a, b):
        write_predictions(ck, btc, group="BTC-USDT/1d", test_pred=pred)
    cache: SpanCache = {}
    ca, cb = read_prediction_columns(a, cache=cache), read_prediction_columns(b, cache=cache)
    assert len(cache) == 1 and ca["timestamp"] is cb["timestamp"] and ca["y_true"] is cb["y_true"]

    # A trial whose test span starts 5 samples later (another split of the same group's rows)
    # is aligned by its first timestamp, not by position.
    late = dataclasses.replace(btc, test_idx=btc.test_idx[5:])
    c = _checkpoint(exp, "late")
    write_predictions(c, late, group="BTC-USDT/1d", test_pred=pred[5:])
    df = read_predictions(c, cache=cache)
    want = read_predictions(a).iloc[5:].reset_index(drop=True)
    pd.testing.assert_frame_equal(df, want, check_exact=True)
    meta = json.loads((c / "predictions.json").read_text())
    assert meta == {"format": 1, "span": "BTC-USDT_1d.csv", "first": want["timestamp"][0], "rows": len(pred) - 5}


def test_span_files_are_named_by_dataset_key_and_confirm_folds_get_their_own(btc: Prepared, tmp_path: Path) -> None:
    assert span_file("BTC-USDT/1h") == "BTC-USDT_1h.csv"
    assert span_file("BTC-USDT/1h#fold1") == "BTC-USDT_1h_fold1.csv"
    assert span_file("A B/../x") == "A_B_.._x.csv"  # no path separator survives
    fold = dataclasses.replace(btc, test_idx=btc.test_idx[10:20])
    exp = _experiment(tmp_path / "confirm" / "k1", fold, group="BTC-USDT/1d#fold1")
    ck = _checkpoint(exp, "f")
    write_predictions(ck, fold, group="BTC-USDT/1d#fold1", test_pred=np.ones(10))
    assert len(read_predictions(ck)) == 10


def test_damaged_compact_predictions_are_one_line_naming_the_file(btc: Prepared, tmp_path: Path) -> None:
    exp = _experiment(tmp_path / "run", btc)
    ck = _checkpoint(exp, "d")
    n = len(btc.test_idx)
    write_predictions(ck, btc, group="BTC-USDT/1d", test_pred=_forecasts(btc))

    np.save(ck / "predictions.npy", np.array([object()] * n, dtype=object), allow_pickle=True)
    with pytest.raises(RunError, match=r"predictions\.npy: not a float64 \.npy array of .*pickled objects, which "
                                       r"are never loaded"):
        read_predictions(ck)
    np.save(ck / "predictions.npy", np.ones(n, dtype=np.float32))
    with pytest.raises(RunError, match=r"predictions\.npy: .*dtype <f4; expected float64"):
        read_predictions(ck)
    a = np.ones(n)
    a[7] = np.inf
    np.save(ck / "predictions.npy", a)
    with pytest.raises(RunError, match=r"predictions\.npy: forecast 7: expected a finite number; got inf"):
        read_predictions(ck)
    np.save(ck / "predictions.npy", np.ones(n + 600))
    with pytest.raises(RunError, match=r"predictions\.npy: [\d,]+ bytes; files over [\d,]+ bytes are refused"):
        read_predictions(ck)
    np.save(ck / "predictions.npy", np.ones(n))
    assert len(read_predictions(ck)) == n
    meta = json.loads((ck / "predictions.json").read_text())
    (ck / "predictions.json").write_text(json.dumps({**meta, "span": "../../groups.csv"}))
    with pytest.raises(RunError, match=r"predictions\.json: span: .*got '\.\./\.\./groups\.csv'"):
        read_predictions(ck)  # only a file name inside test_span/ is ever opened
    (ck / "predictions.json").write_text(json.dumps(meta))
    (exp / SPAN_DIR / "BTC-USDT_1d.csv").unlink()
    with pytest.raises(RunError, match=r"test_span/BTC-USDT_1d\.csv: file not found; restore the run folder's test_span"):
        read_predictions(ck)
    for f in ck.iterdir():
        f.unlink()
    with pytest.raises(RunError, match=r"checkpoint_000000: no test predictions \(predictions\.npy or predictions\.csv\)"):
        read_predictions(ck)
    with pytest.raises(ValueError, match="shape"):
        write_predictions(ck, btc, group="BTC-USDT/1d", test_pred=np.ones(n - 1))

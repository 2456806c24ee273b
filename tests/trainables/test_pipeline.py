"""The one pipeline: a recipe survives JSON, and the forecast's feature rows are training's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainables.data.candles import EMBEDDED_FUNDING_DIR
from trainables.errors import RunError
from trainables.features.dataset import Split
from trainables.features.indicators import PoolMember
from trainables.pipeline import DataRecipe, feature_frame, prepare_group

POOL = (PoolMember("log_return", "log_return", ((("lag", 1),),)),
        PoolMember("rsi", "rsi", ((("period", 7),), (("period", 14),)), ("period",)))


def _recipe(**kw: object) -> DataRecipe:
    base: dict[str, object] = dict(
        asset="BTC-USDT", timeframe="1d", pool=POOL, target="multiplier", horizon=2, max_lookback=8,
        split=Split(val_start="2024-07-01", test_start="2024-10-01"), path=Path("/data/candles"),
        start="2024-01-01", end="2025-01-01", gap_policy="ffill", ffill_limit=2,
        funding_file=EMBEDDED_FUNDING_DIR / "BTC-USDT_perp_funding_rate_8h.csv",
        metric_files=(Path("/m/a.csv"), Path("/m/b.csv")))
    base.update(kw)
    return DataRecipe(**base)  # type: ignore[arg-type]


def test_recipe_round_trips_through_json() -> None:
    r = _recipe()
    d = json.loads(json.dumps(r.to_dict()))
    assert DataRecipe.from_dict(d) == r
    assert d["funding_file"].endswith("BTC-USDT_perp_funding_rate_8h.csv") and d["metric_files"] == ["/m/a.csv",
                                                                                                     "/m/b.csv"]
    plain = DataRecipe("ETH-USDT", "4h", POOL)  # defaults: embedded data, fractions, no tables
    assert DataRecipe.from_dict(json.loads(json.dumps(plain.to_dict()))) == plain


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("pool"), "missing key 'pool'"),
    (lambda d: d.update(colour="red"), "unknown key 'colour'"),
    (lambda d: d.update(horizon="2"), "horizon: expected int; got '2'"),
    (lambda d: d.update(horizon=True), "horizon: expected int; got True"),
    (lambda d: d.update(path=3), "path: expected str or null; got 3"),
    (lambda d: d["pool"][1].update(variants="period=7"), r"pool\[1\]\.variants: expected list"),
    (lambda d: d["split"].update(train="x"), r"split\.train: expected int or float; got 'x'"),
    (lambda d: d.update(metric_files=[1]), r"metric_files\[\]: expected str; got 1"),
])
def test_malformed_recipe_is_one_line_naming_the_key(change: object, message: str) -> None:
    d = _recipe().to_dict()
    change(d)  # type: ignore[operator]
    with pytest.raises(RunError, match=message) as e:
        DataRecipe.from_dict(d)
    assert "\n" not in str(e.value)


def test_feature_frame_rows_are_the_prepared_rows_plus_the_unlabelled_last_ones() -> None:
    r = DataRecipe("BTC-USDT", "1d", POOL, horizon=1, max_lookback=4, start="2024-01-01", end="2024-06-01")
    p = prepare_group(r)
    ff = feature_frame(r)
    warm = int(p.meta["warmup_rows"])  # type: ignore[call-overload]
    assert ff.warmup == warm and ff.columns == p.columns
    np.testing.assert_array_equal(ff.features[warm:], p.features)
    # the last candle has no label (its next close is unknown) but has its feature row
    assert np.isnan(p.y[-1]) and np.isfinite(ff.features[-1]).all()


def test_prepare_refit_trains_on_every_labelled_sample_through_the_last_complete_candle() -> None:
    import dataclasses
    import datetime as dt

    import pandas as pd

    from trainables.pipeline import prepare_refit

    r = dataclasses.replace(_recipe(), path=None, funding_file=None, metric_files=(), gap_policy="drop_windows")
    sel = prepare_group(r)
    # The recipe's split gives way: every labelled sample through the last complete candle.
    p = prepare_refit(r, through=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    assert len(p.val_idx) == len(p.test_idx) == 0
    assert p.timestamps[p.train_idx[0]] == sel.timestamps[sel.train_idx[0]]
    assert p.timestamps[p.train_idx[-1]] == sel.timestamps[sel.test_idx[-1]]
    held = np.concatenate([sel.train_idx, sel.val_idx, sel.test_idx])
    assert set(sel.timestamps[held]) < set(p.timestamps[p.train_idx])  # the purged boundary samples too
    # 2024-12-31 12:00: the candle opened 2024-12-31 is still in progress and is left out.
    early = prepare_refit(r, through=dt.datetime(2024, 12, 31, 12, tzinfo=dt.timezone.utc))
    last = pd.Timestamp(int(early.timestamps[early.train_idx[-1]]), tz="UTC")
    assert last == pd.Timestamp("2024-12-28", tz="UTC")  # 2024-12-30 is the last complete candle, horizon 2
    later = prepare_refit(r, through=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc))
    assert pd.Timestamp(int(later.timestamps[later.train_idx[-1]]), tz="UTC") == pd.Timestamp("2025-02-26", tz="UTC")

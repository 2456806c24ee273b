"""Indicators read from metric tables: definitions, name clashes, explicit registration."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainables.data.helpers import DAILY, _candles
from trainables.errors import DataError, TunefactoryError
from trainables.features.indicators import INDICATORS, compute_features, make_member
from trainables.features.table_indicators import (
    METRIC_INDICATORS,
    attach_metrics,
    metric_indicator_name,
    register_metric,
    register_metric_indicators,
)


def test_metric_indicator_definitions() -> None:
    candles = _candles("1d", "2021-01-01", "2021-03-01")
    f = attach_metrics(candles, "1d", metric_files=[DAILY])
    assert metric_indicator_name("addresses/active_count") == "gn_addresses_active_count"
    x = f["m:addresses/active_count"].to_numpy()
    out, names, warm = compute_features(f, [make_member("gn_addresses_active_count_logchange", {"lag": 3}),
                                            make_member("gn_addresses_active_count_change", {"lag": 3})])
    assert names == ["gn_addresses_active_count_logchange_3", "gn_addresses_active_count_change_3"]
    assert warm == 3
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(out[3:, 0], np.log(x[3:] / x[:-3]).astype(np.float32), rtol=1e-5)
    np.testing.assert_allclose(out[3:, 1], (x[3:] - x[:-3]).astype(np.float32), rtol=1e-5)
    # Signed metric: difference only.
    assert "gn_transactions_transfers_volume_exchanges_net_change" in INDICATORS
    assert "gn_transactions_transfers_volume_exchanges_net_logchange" not in INDICATORS
    # A pool naming a metric indicator on a frame without the metric: a clear error.
    with pytest.raises(TunefactoryError, match=r"needs the column 'm:addresses/active_count'.*attach_metrics"):
        compute_features(candles, [make_member("gn_addresses_active_count")])
    with pytest.raises(TunefactoryError, match="lag must be a whole number >= 1"):
        compute_features(f, [make_member("gn_addresses_active_count_change", {"lag": 0})])
    with pytest.raises(TunefactoryError, match="'rsi' already exists"):
        register_metric("rsi", "some/metric")
    with pytest.raises(DataError, match=r"metric 'addresses/active_count' is also provided by"):
        attach_metrics(candles, "1d", metric_files=[DAILY, DAILY])


def test_nothing_is_registered_at_import_and_registration_is_explicit() -> None:
    assert not any(n.startswith(("funding_rate", "gn_")) for n in INDICATORS)
    names = register_metric_indicators(funding=True, metric_files=[DAILY])
    assert names[:2] == ["funding_rate", "funding_rate_change"]
    assert "gn_addresses_active_count_logchange" in names and len(names) == 2 + 4 * 3 - 1
    assert all(n in INDICATORS and n in METRIC_INDICATORS for n in names)

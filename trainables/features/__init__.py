"""Model inputs and labels computed from candles (numpy/pandas only, no model code).

Modules:
    indicators: the indicator registry and pool members; computes a pool's feature columns.
    table_indicators: indicators read from metric tables; ``attach_metrics`` adds their columns.
    targets: the target registry (labels and persistence forecasts).
    dataset: one (asset, timeframe) prepared once per sweep: features, labels, split, windows.
"""

from __future__ import annotations

from trainables.features.dataset import Prepared, Split, prepare
from trainables.features.indicators import INDICATORS, PoolMember, compute_features, make_member
from trainables.features.table_indicators import METRIC_INDICATORS, attach_metrics
from trainables.features.targets import TARGETS

__all__ = [
    "INDICATORS",
    "METRIC_INDICATORS",
    "TARGETS",
    "PoolMember",
    "Prepared",
    "Split",
    "attach_metrics",
    "compute_features",
    "make_member",
    "prepare",
]

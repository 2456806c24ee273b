"""Shared pytest setup: quiet TensorFlow, one local Ray instance, one small real run.

The small run is a real 4-trial sweep (real Ray, real Keras training on the embedded BTC
daily candles) made once per test session and shared by the report and export tests.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

# Silence TensorFlow's C++ start-up banner before any test imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

ROOT = Path(__file__).resolve().parent.parent

TINY_SPEC = textwrap.dedent("""\
    # A tiny real sweep for tests: BTC daily since 2021, two families, 2 epochs.
    name: tiny
    data:
      assets: [BTC-USDT]
      timeframes: [1d]
      start: 2021-01-01
    target: {kind: multiplier, horizon: 1}
    window:
      lookback: {type: choice, values: [4, 8]}
    features:
      pool: [log_return, {log_return: {lag: 3}}, rsi, hl_spread, volume_change]
      min_size: 1
      max_size: 3
      always: [log_return_1]
    model:
      families:
        mlp: {units: {type: choice, values: [8, 16]}}
        gru: {units: 8}
    training:
      max_epochs: 2
      patience: 2
      batch_size: 64
      learning_rate: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
    search: {algorithm: random, num_samples: 4, seed: 7}
    scheduler: {kind: none}
    resources: {cpus: 1}
    """)


@contextlib.contextmanager
def indicator_registry_restored() -> Iterator[None]:
    """Undo, on exit, what specs with funding/metric sources registered process-wide.

    For fixtures of a wider scope than a test (a module fixture that runs a funding sweep),
    which the per-test reset below cannot see.
    """
    from trainables.features.indicators import INDICATORS
    from trainables.features.table_indicators import METRIC_INDICATORS

    before, before_m = dict(INDICATORS), dict(METRIC_INDICATORS)
    try:
        yield
    finally:
        INDICATORS.clear()
        INDICATORS.update(before)
        METRIC_INDICATORS.clear()
        METRIC_INDICATORS.update(before_m)


@pytest.fixture(autouse=True)
def _restore_indicator_registry() -> Iterator[None]:
    """Specs with funding/metric sources register indicators process-wide; undo it after
    each test so every test sees the candle indicators only (as a fresh process does)."""
    with indicator_registry_restored():
        yield


@pytest.fixture(scope="session")
def tiny_spec_text() -> str:
    """The text of a tiny but complete spec (BTC 1d since 2021, 4 trials x 2 epochs)."""
    return TINY_SPEC


@pytest.fixture()
def tiny_spec(tmp_path: Path) -> Path:
    """A tiny spec written to a temporary file."""
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_SPEC)
    return p


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance (2 CPUs, loopback, no dashboard) for the whole session."""
    import ray

    from cluster.sweep import init_ray

    init_ray(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    """Run directory of a real 4-trial sweep (made once per session; treat as read-only)."""
    from cluster.sweep import run_sweep
    from search_spaces.loader import load_spec

    d = tmp_path_factory.mktemp("runs")
    spec = d / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    return run_sweep(load_spec(spec), name="tiny", storage=str(d))

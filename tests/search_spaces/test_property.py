"""Property-based: random valid specs build a Tuner and yield runnable configs; broken ones give SpecError only."""

from __future__ import annotations

import copy
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_spaces.loader import SpecError, load_spec
from search_spaces.schema import LOSSES, OPTIMIZERS
from search_spaces.space import CONFIG_KEYS
from trainables.models.families import MODELS

SETTINGS = settings(max_examples=int(os.environ.get("SPEC_PROPERTY_EXAMPLES", "50")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Every pool member a random spec may use; the datasets are prepared once with all of them.
UNIVERSE: list[Any] = ["log_return", {"log_return": {"lag": 3}}, "rsi", {"rsi": {"period": {"type": "choice",
                       "values": [7, 21]}}}, "hl_spread", "volume_change", {"sma_ratio": {"period": 10}}]
MAX_LOOKBACK = 16
FAMILIES = ["mlp", "lstm", "gru", "tcn", "transformer", "synth_random", "synth_factorized_dense"]


# ----------------------------------------------------------------------------- strategies
def _int_dist(lo: int, hi: int, finite: bool) -> st.SearchStrategy[Any]:
    lo_ = st.integers(lo, hi)
    opts = [lo_, st.lists(lo_, min_size=1, max_size=3, unique=True).map(lambda v: {"type": "choice", "values": v}),
            st.tuples(lo_, lo_).map(lambda t: {"type": "randint", "low": min(t), "high": max(t)})]
    return st.one_of(opts)


def _float_dist(lo: float, hi: float, finite: bool) -> st.SearchStrategy[Any]:
    val = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    opts: list[st.SearchStrategy[Any]] = [
        val, st.lists(val, min_size=1, max_size=3, unique=True).map(lambda v: {"type": "choice", "values": v})]
    if not finite:
        opts.append(st.tuples(val, val).filter(lambda t: t[0] != t[1]).map(
            lambda t: {"type": "uniform", "low": min(t), "high": max(t)}))
        if lo > 0:
            opts.append(st.tuples(val, val).filter(lambda t: t[0] != t[1]).map(
                lambda t: {"type": "loguniform", "low": min(t), "high": max(t)}))
    return st.one_of(opts)


def _cat_dist(options: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(options), st.lists(st.sampled_from(options), min_size=1, unique=True).map(
        lambda v: {"type": "choice", "values": v}))


@st.composite
def family_space(draw: st.DrawFn, fam: str, finite: bool, min_lookback: int) -> dict[str, Any]:
    params = MODELS[fam].params
    space: dict[str, Any] = {}
    for k, p in params.items():
        if k in ("heads", "d_model", "factor", "pos_encoding") or not draw(st.booleans()):
            continue
        if p.type is int:
            space[k] = draw(_int_dist(int(p.low), min(int(p.high), 64), finite))
        elif p.type is float:
            space[k] = draw(_float_dist(float(p.low), float(p.high), finite))
        elif p.type is bool:
            space[k] = draw(_cat_dist([True, False]))
    if "d_model" in params:
        d_model = draw(st.sampled_from([8, 16]))
        space["d_model"] = d_model
        space["heads"] = draw(_cat_dist([h for h in (1, 2, 4, 8) if d_model % h == 0]))
        space["pos_encoding"] = draw(_cat_dist(["learned", "sinusoidal"]))
    if "factor" in params:
        space["factor"] = draw(st.integers(1, min_lookback))
    return space


@st.composite
def valid_raw(draw: st.DrawFn) -> dict[str, Any]:
    algorithm = draw(st.sampled_from(["optuna-tpe", "random", "grid"]))
    finite = algorithm == "grid"
    lookback = draw(_int_dist(2, MAX_LOOKBACK, finite))
    lbs = lookback["values"] if isinstance(lookback, dict) and "values" in lookback else (
        [lookback["low"]] if isinstance(lookback, dict) else [lookback])
    fams = draw(st.lists(st.sampled_from(FAMILIES), min_size=1, max_size=3 if not finite else 2, unique=True))
    pool_idx = draw(st.lists(st.integers(0, len(UNIVERSE) - 1), min_size=1, max_size=4 if finite else 7,
                             unique=True))
    pool = [UNIVERSE[i] for i in sorted(pool_idx)]
    n = len(pool)
    max_size = draw(st.one_of(st.none(), st.integers(1, n)))
    hi = max_size if max_size is not None else n
    min_size = draw(st.integers(1, hi))
    max_epochs = draw(st.integers(1, 30))
    raw: dict[str, Any] = {
        "name": draw(st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)),
        "data": {"assets": draw(st.lists(st.sampled_from(["BTC-USDT", "ETH-USDT"]), min_size=1, unique=True)),
                 "timeframes": draw(st.lists(st.sampled_from(["1d", "12h"]), min_size=1, unique=True)),
                 "start": "2021-01-01"},
        "target": {"kind": draw(st.sampled_from(["multiplier", "log_return"])), "horizon": draw(st.integers(1, 5))},
        "window": {"lookback": lookback},
        "features": {"pool": pool, "min_size": min_size, "max_size": max_size},
        "model": {"families": {f: draw(family_space(f, finite, min(lbs))) for f in fams}},
        "training": {
            "max_epochs": max_epochs,
            "patience": draw(_int_dist(0, 5, finite)),
            "batch_size": draw(_int_dist(8, 256, finite)),
            "learning_rate": draw(_float_dist(1e-5, 1e-1, finite)),
            "weight_decay": draw(st.sampled_from([0.0, 1e-5])),
            "loss": draw(_cat_dist(list(LOSSES))),
            "optimizer": draw(_cat_dist(list(OPTIMIZERS))),
        },
        "search": {"algorithm": algorithm, "num_samples": draw(st.integers(1, 6)), "seed": draw(st.integers(0, 999)),
                   "n_startup_trials": draw(st.integers(0, 3))},
        "scheduler": draw(st.one_of(
            st.just({"kind": "none"}),
            st.builds(lambda g, rf: {"kind": "asha", "grace_period": g, "reduction_factor": rf},
                      st.integers(1, max_epochs), st.sampled_from([2, 3, 4])))),
        "resources": {"cpus": draw(st.sampled_from([0.5, 1, 2])), "gpus": draw(st.sampled_from([0, 0.125, 0.5, 1, 2]))},
    }
    if finite:
        _shrink_grid(raw)
    if "log_return" in pool and draw(st.booleans()):
        raw["features"]["always"] = ["log_return_1"]
    if draw(st.booleans()):
        raw["split"] = draw(st.one_of(
            st.just({"train": 0.6, "val": 0.2, "test": 0.2}), st.just({"train": 0.8, "val": 0.1}),
            st.just({"val_start": "2023-06-01", "test_start": "2024-06-01"})))
    return raw


def _size(v: Any) -> int:
    if isinstance(v, dict) and "values" in v:
        return len(v["values"])
    if isinstance(v, dict) and v.get("type") == "randint":
        return int(v["high"] - v["low"] + 1)
    return 1


def _first(v: Any) -> Any:
    return v["values"][0] if "values" in v else v["low"]


def _shrink_grid(raw: dict[str, Any]) -> None:
    """Fix the largest dimensions of a grid spec until it has at most ~2,000 points per group."""
    dims: list[tuple[dict[str, Any], str]] = [(raw["window"], "lookback")]
    dims += [(raw["training"], k) for k in ("patience", "batch_size", "learning_rate", "loss", "optimizer")]
    dims += [(space, k) for space in raw["model"]["families"].values() for k in space]
    n_pool = len(raw["features"]["pool"])

    def total() -> int:
        fam = sum(math.prod(_size(v) for v in space.values()) for space in raw["model"]["families"].values())
        return fam * math.prod(_size(d[k]) for d, k in dims[:6]) * 2 ** n_pool * 2

    while total() > 2000:
        d, k = max(dims, key=lambda dk: _size(dk[0][dk[1]]))
        if _size(d[k]) == 1:
            break
        d[k] = _first(d[k])


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def universe_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from cluster.sweep import prepare_groups

    d = tmp_path_factory.mktemp("universe")
    raw = {"data": {"assets": ["BTC-USDT"], "timeframes": ["1d"], "start": "2022-01-01"},
           "window": {"lookback": MAX_LOOKBACK}, "features": {"pool": UNIVERSE},
           "model": {"families": {"mlp": {}}}}
    (d / "u.yaml").write_text(yaml.safe_dump(raw))
    return prepare_groups(load_spec(d / "u.yaml").spec)


def _load(raw: dict[str, Any], overrides: list[str] | None = None) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "spec.yaml"
        p.write_text(yaml.safe_dump(raw, sort_keys=False))
        return load_spec(p, overrides)


# ----------------------------------------------------------------------------- valid specs
@SETTINGS
@given(raw=valid_raw())
def test_random_valid_spec_builds_a_tuner_and_runnable_configs(raw: dict[str, Any], universe_datasets: Any,
                                                               ray_local: None) -> None:
    from cluster.searcher import GroupedSearcher
    from cluster.sweep import build_tuner

    spec = _load(raw).spec
    (prepared,) = universe_datasets.values()
    with tempfile.TemporaryDirectory() as tmp:
        tuner = build_tuner(spec, universe_datasets, Path(tmp) / "run")
    assert tuner is not None
    searcher = GroupedSearcher(spec)
    for i in range(min(searcher.total, 6)):
        cfg = searcher.suggest(f"t{i}")
        assert set(CONFIG_KEYS) <= set(cfg)
        assert cfg["group"] in {f"{a}/{tf}" for a, tf in spec.groups}
        assert cfg["family"] in spec.model.families
        params = MODELS[cfg["family"]].params
        assert set(cfg["model"]) <= set(params)
        for k, v in cfg["model"].items():
            p = params[k]
            if p.type in (int, float):
                assert p.low <= v <= p.high, (k, v)
            if p.type is int:
                assert v == int(v)
        if "heads" in cfg["model"] and "d_model" in cfg["model"]:
            assert cfg["model"]["d_model"] % cfg["model"]["heads"] == 0
        assert set(cfg["columns"]) <= set(prepared.columns)
        assert 1 <= cfg["lookback"] <= prepared.max_lookback
        assert spec.features.lower <= len(cfg["indicators"]) <= spec.features.upper
        assert set(spec.features.always) <= set(cfg["indicators"])
        assert isinstance(cfg["batch_size"], int) and cfg["batch_size"] >= 1
        assert cfg["loss"] in LOSSES and cfg["optimizer"] in OPTIMIZERS
        assert math.isfinite(cfg["learning_rate"]) and cfg["learning_rate"] > 0
        assert 1 <= cfg["max_epochs"] <= spec.training.max_epochs and cfg["patience"] >= 0
        searcher.on_trial_complete(f"t{i}", {"val_ratio_best": 1.0 / (i + 1)})


# ----------------------------------------------------------------------------- invalid specs
SECTIONS = ["data", "target", "split", "window", "features", "model", "training", "search", "scheduler",
            "resources"]
_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12),
                    st.dates(), st.sampled_from(["BTC-USDT", "1d", "rsi", "lstm", "choice", "grid", "asha", "mse"]))
JUNK = st.recursive(_scalar, lambda c: st.one_of(st.lists(c, max_size=3),
                                                 st.dictionaries(st.text(max_size=6), c, max_size=3)), max_leaves=8)


def _setp(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    node = out
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return out


@st.composite
def invalid_raw(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec with one change that makes it invalid for sure."""
    raw = draw(valid_raw())
    kind = draw(st.sampled_from(["unknown_key", "wrong_type", "low_high", "empty_choice", "indicator", "family",
                                 "asset", "timeframe", "missing", "negative", "gpu", "bounds", "horizon", "split"]))
    if kind == "unknown_key":
        sec = draw(st.sampled_from(SECTIONS))
        key = draw(st.from_regex(r"[a-z]{3,9}_x", fullmatch=True))
        if sec == "model":
            return _setp(raw, f"model.{key}", 1)
        return _setp(raw, f"{sec}.{key}", draw(_scalar))
    if kind == "wrong_type":
        path = draw(st.sampled_from(["training.max_epochs", "target.horizon", "search.num_samples", "search.seed",
                                     "features.min_size", "resources.cpus"]))
        return _setp(raw, path, draw(st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2),
                                               st.just({"a": 1}))))
    if kind == "low_high":
        lo = draw(st.floats(1e-4, 1e-1))
        return _setp(raw, "training.learning_rate", {"type": "loguniform", "low": lo, "high": lo / 2})
    if kind == "empty_choice":
        return _setp(raw, draw(st.sampled_from(["window.lookback", "training.batch_size", "training.loss"])),
                     {"type": "choice", "values": []})
    if kind == "indicator":
        return _setp(raw, "features.pool", [*raw["features"]["pool"], draw(st.from_regex(r"[a-z]{4,8}_q",
                                                                                             fullmatch=True))])
    if kind == "family":
        return _setp(raw, "model.families", {draw(st.from_regex(r"[a-z]{3,8}_q", fullmatch=True)): {}})
    if kind == "asset":
        return _setp(raw, "data.assets", [draw(st.from_regex(r"[A-Z]{3,5}Q-USDT", fullmatch=True))])
    if kind == "timeframe":
        return _setp(raw, "data.timeframes", [draw(st.sampled_from(["5m", "1w", "1D", "30m", ""]))])
    if kind == "missing":
        out = copy.deepcopy(raw)
        out.pop(draw(st.sampled_from(["data", "features", "model"])))
        return out
    if kind == "negative":
        return _setp(raw, draw(st.sampled_from(["resources.cpus", "resources.gpus"])), -draw(st.floats(0.01, 8)))
    if kind == "gpu":
        return _setp(raw, "resources.gpus", draw(st.integers(1, 7)) + draw(st.sampled_from([0.25, 0.5, 0.9])))
    if kind == "bounds":
        return _setp(raw, "features.max_size", len(raw["features"]["pool"]) + draw(st.integers(1, 5)))
    if kind == "horizon":
        return _setp(raw, "target.horizon", draw(st.integers(4000, 90_000)))
    return _setp(raw, "split", draw(st.sampled_from([
        {"train": 0.8, "val": 0.2, "test": 0.2}, {"val_start": "2024-06-01", "test_start": "2024-01-01"},
        {"train": 0.5}, {"val_start": "2024-01-01", "test_start": "2024-01-01"}])))


@SETTINGS
@given(raw=invalid_raw())
def test_random_invalid_spec_raises_spec_error(raw: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as info:
        _load(raw)
    assert info.value.lines and all(line.strip() and "\n" not in line for line in info.value.lines)
    assert "Traceback" not in str(info.value)


@SETTINGS
@given(raw=valid_raw(), path=st.sampled_from([f"{s}.{k}" for s, ks in {
    "data": ["assets", "timeframes", "path", "start", "end"], "target": ["kind", "horizon"],
    "split": ["train", "val", "test", "val_start", "test_start"], "window": ["lookback"],
    "features": ["pool", "min_size", "max_size", "always"], "model": ["families"],
    "training": ["max_epochs", "patience", "batch_size", "learning_rate", "loss", "optimizer", "jit_compile"],
    "search": ["algorithm", "num_samples", "seed", "max_concurrent", "points_to_evaluate", "balance_families"],
    "scheduler": ["kind", "max_t", "grace_period", "reduction_factor"],
    "resources": ["cpus", "gpus", "max_failures"]}.items() for k in ks] + SECTIONS + ["name", "storage"]),
    junk=JUNK)
def test_arbitrary_values_never_crash_the_loader(raw: dict[str, Any], path: str, junk: Any) -> None:
    """Any value anywhere: either a valid spec or a SpecError, never another exception."""
    try:
        _load(_setp(raw, path, junk))
    except SpecError as e:
        assert e.lines


@SETTINGS
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_loader(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "spec.yaml"
        p.write_bytes(text.encode("utf-8", errors="replace"))
        with pytest.raises(SpecError):
            load_spec(p)


@SETTINGS
@given(raw=valid_raw(), key=st.text(max_size=20), value=st.text(max_size=20))
def test_arbitrary_overrides_never_crash_the_loader(raw: dict[str, Any], key: str, value: str) -> None:
    try:
        _load(raw, [f"{key}={value}"])
    except SpecError as e:
        assert e.lines

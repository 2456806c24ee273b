"""Malformed specs: every one exits 2 with exact one-line messages, no traceback, nothing written.

Each case starts from the tiny valid spec of ``tests/conftest.py`` and breaks one thing
(or writes a raw file). Messages are ``FILE: path.to.key: rule; got VALUE``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from search_spaces.loader import SpecError, load_spec
from trainables.data.candles import EMBEDDED_DIR

ALLOWED_TOP = ("name, description, data, target, split, window, features, model, training, search, scheduler, "
               "resources, report, tracking, storage")
ALLOWED_TRAINING = ("max_epochs, patience, batch_size, learning_rate, weight_decay, loss, optimizer, jit_compile, "
                    "steps_per_execution")
ASSETS = "ADA-USDT, BNB-USDT, BTC-USDT, ETH-USDT, SOL-USDT, XRP-USDT"
SPAN = "BTC-USDT 1d has about 1,831 candles (2021-01-01..2026-01-05)"
FAMILIES = ("mlp, lstm, gru, tcn, transformer, synth_dense, synth_random, synth_factorized_dense, "
            "synth_factorized_random, synth_dense_vanilla, synth_random_vanilla")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        keys = path.split(".")
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value

    return mutate


def _del(*keys: str) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        for k in keys:
            raw.pop(k)

    return mutate


def _many(*fns: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        for f in fns:
            f(raw)

    return mutate


# id → (mutation of the tiny spec, expected stderr lines; "{spec}" is the spec file)
CASES: dict[str, tuple[Callable[[dict[str, Any]], None], list[str]]] = {
    "unknown-top-level-key": (
        _set("trainig", {"max_epochs": 3}),
        [f"{{spec}}: trainig: unknown key (did you mean 'training'?); allowed: {ALLOWED_TOP}; got {{max_epochs: 3}}"]),
    "unknown-nested-key": (
        _set("training.learnin_rate", 0.01),
        [f"{{spec}}: training.learnin_rate: unknown key (did you mean 'learning_rate'?); allowed: "
         f"{ALLOWED_TRAINING}; got 0.01"]),
    "wrong-type-int": (
        _set("training.max_epochs", "ten"),
        ["{spec}: training.max_epochs: must be a whole number; got 'ten'"]),
    "wrong-type-bool-for-int": (
        _set("target.horizon", True),
        ["{spec}: target.horizon: must be a whole number; got true"]),
    "wrong-type-list": (
        _set("data.assets", "BTC-USDT"),
        ["{spec}: data.assets: must be a list; got 'BTC-USDT'"]),
    "low-not-below-high": (
        _set("training.learning_rate", {"type": "loguniform", "low": 0.1, "high": 0.01}),
        ["{spec}: training.learning_rate: low must be < high; got low=0.1, high=0.01"]),
    "empty-choice": (
        _set("window.lookback", {"type": "choice", "values": []}),
        ["{spec}: window.lookback: choice.values must not be empty; got []"]),
    "unknown-distribution-type": (
        _set("training.learning_rate", {"type": "logunif", "low": 0.001, "high": 0.01}),
        ["{spec}: training.learning_rate: unknown distribution type (did you mean 'loguniform'?); allowed: choice, "
         "grid, uniform, quniform, loguniform, randint, qrandint; got 'logunif'"]),
    "unknown-indicator": (
        _set("features.pool", ["log_return", "rsii"]),
        ["{spec}: features.pool[1]: unknown indicator (did you mean 'rsi'?); allowed: atr_ratio, bollinger_b, "
         "co_spread, ema_ratio, hl_spread, log_return, macd, obv_change, realized_vol, rsi, sma_ratio, stoch_k, "
         "volume_change, volume_ratio; got 'rsii'"]),
    "unknown-indicator-parameter": (
        _set("features.pool", ["log_return", {"rsi": {"perod": 21}}]),
        ["{spec}: features.pool[1].rsi.perod: unknown parameter (did you mean 'period'?); rsi takes period; got 21"]),
    "unknown-model-family": (
        _set("model.families", {"lstmm": {"units": 8}}),
        [f"{{spec}}: model.families.lstmm: unknown model family (did you mean 'lstm'?); allowed: {FAMILIES}; "
         "got 'lstmm'"]),
    "conditional-parameter-on-wrong-family": (
        _set("model.families", {"gru": {"units": 8, "heads": 2}}),
        ["{spec}: model.families.gru.heads: unknown parameter; gru takes layers, units, dropout; got 2"]),
    "heads-must-divide-d-model": (
        _set("model.families", {"transformer": {"d_model": 64, "heads": {"type": "choice", "values": [2, 3, 5]}}}),
        ["{spec}: model.families.transformer.heads: heads must divide d_model (d_model: 64); heads that do not: "
         "[3, 5]; got {type: 'choice', values: [2, 3, 5]}"]),
    "unknown-asset": (
        _set("data.assets", ["BTC-USDT", "DOGE-USDT"]),
        [f"{{spec}}: data.assets[1]: no candle file for this asset in the embedded candles (did you mean "
         f"'SOL-USDT'?); available: {ASSETS}; got 'DOGE-USDT'"]),
    "unknown-timeframe": (
        _set("data.timeframes", ["1d", "1w"]),
        ["{spec}: data.timeframes[1]: unknown timeframe; allowed: 1h, 2h, 3h, 4h, 6h, 8h, 12h, "
         "1d; got '1w'"]),
    "subset-bound-larger-than-pool": (
        _set("features.max_size", 9),
        ["{spec}: features.max_size: subset size bound is larger than the pool (5 members); got 9"]),
    "always-not-in-pool": (
        _set("features.always", ["log_return"]),
        ["{spec}: features.always[0]: not in the pool (did you mean 'log_return_1'?); pool members: log_return_1, "
         "log_return_3, rsi_14, hl_spread, volume_change_1; got 'log_return'"]),
    "overlapping-split-fractions": (
        _set("split", {"train": 0.8, "val": 0.15, "test": 0.15}),
        ["{spec}: split.test: train + val + test must be 1 (the spans would overlap); got 0.8 + 0.15 + 0.15 = 1.1"]),
    "reversed-split-dates": (
        _set("split", {"val_start": "2025-01-01", "test_start": "2024-06-01"}),
        ["{spec}: split.test_start: must be after split.val_start (2025-01-01): validation comes before test and "
         "the spans must not overlap; got 2024-06-01"]),
    "fractions-and-dates": (
        _set("split", {"train": 0.7, "val_start": "2024-01-01", "test_start": "2025-01-01"}),
        ["{spec}: split.train: use either fractions (train/val/test) or dates (val_start/test_start), not both; "
         "got 0.7"]),
    "split-date-outside-data": (
        _set("split", {"val_start": "2024-01-01", "test_start": "2027-01-01"}),
        [f"{{spec}}: split.test_start: must fall inside the data, after its first candle: {SPAN}; got 2027-01-01"]),
    "horizon-longer-than-data": (
        _set("target.horizon", 5000),
        [f"{{spec}}: target.horizon: is longer than the data: {SPAN}; got 5000"]),
    "negative-resources": (
        _set("resources", {"cpus": -1, "gpus": -0.5}),
        ["{spec}: resources.cpus: must be > 0; got -1",
         "{spec}: resources.gpus: must be >= 0; got -0.5"]),
    "gpu-above-one-not-whole": (
        _set("resources.gpus", 1.5),
        ["{spec}: resources.gpus: a GPU request above 1 must be a whole number of GPUs; got 1.5"]),
    "grid-needs-finite-dimensions": (
        _set("search.algorithm", "grid"),
        ["{spec}: training.learning_rate: search.algorithm grid needs a finite set of values (fixed, choice, grid, "
         "randint, qrandint or quniform); got loguniform"]),
    "unknown-algorithm": (
        _set("search.algorithm", "tpe"),
        ["{spec}: search.algorithm: must be one of optuna-tpe, random, grid; got 'tpe'"]),
    "report-alpha-zero": (
        _set("report.alpha", 0),
        ["{spec}: report.alpha: must be > 0; got 0"]),
    "report-alpha-above-half": (
        _set("report.alpha", 0.7),
        ["{spec}: report.alpha: must be <= 0.5; got 0.7"]),
    "report-alpha-text": (
        _set("report.alpha", "5%"),
        ["{spec}: report.alpha: must be a number; got '5%'"]),
    "report-unknown-key": (
        _set("report.alhpa", 0.1),
        ["{spec}: report.alhpa: unknown key (did you mean 'alpha'?); allowed: alpha; got 0.1"]),
    "grace-period-beyond-epochs": (
        _set("scheduler", {"kind": "asha", "grace_period": 5}),
        ["{spec}: scheduler.grace_period: must be <= training.max_epochs (2); got 5; add --set scheduler.grace_period=1 (or raise training.max_epochs)"]),
    "point-to-evaluate-unknown": (
        _set("search.points_to_evaluate", [{"lookback": 5}]),
        ["{spec}: search.points_to_evaluate[0].lookback: is not a value of choice[4, 8]; got 5"]),
    "point-switches-on-more-than-max-size": (
        _set("search.points_to_evaluate", [{"ind.rsi_14": True, "ind.hl_spread": True, "ind.log_return_3": True}]),
        ["{spec}: search.points_to_evaluate[0]: switches on 4 indicators (always-on ones included), more than "
         "features.max_size (3) allows; got {ind.rsi_14: true, ind.hl_spread: true, ind.log_return_3: true}"]),
    "point-switches-off-below-its-size": (
        _set("search.points_to_evaluate", [{"ind.size": 3, "ind.rsi_14": False, "ind.hl_spread": False,
                                            "ind.log_return_3": False}]),
        ["{spec}: search.points_to_evaluate[0]: switches off so many indicators that 2 remain, fewer than "
         "ind.size (3) needs; got {ind.size: 3, ind.rsi_14: false, ind.hl_spread: false, ind.log_return_3: false}"]),
    "point-size-outside-the-bounds": (
        _set("search.points_to_evaluate", [{"ind.size": 4}]),
        ["{spec}: search.points_to_evaluate[0].ind.size: is not a value of randint(1, 3); got 4"]),
    "missing-sections": (
        _del("data", "model"),
        ["{spec}: data: required key is missing",
         "{spec}: model: required key is missing"]),
    "several-errors-at-once": (
        _many(_set("training.max_epochs", 0), _set("data.assets", ["XXX-USDT"]),
              _set("model.families", {"mlp": {"units": 0}})),
        [f"{{spec}}: data.assets[0]: no candle file for this asset in the embedded candles (did you mean "
         f"'XRP-USDT'?); available: {ASSETS}; got 'XXX-USDT'",
         "{spec}: model.families.mlp.units: must be >= 1; got 0",
         "{spec}: training.max_epochs: must be >= 1; got 0"]),
}

# id → (raw file text, expected stderr lines)
RAW_CASES: dict[str, tuple[str, list[str]]] = {
    "yaml-syntax-error": (
        "data:\n  assets: [BTC-USDT\n  timeframes: [1d]\n",
        ["{spec}: line 3, column 13: YAML syntax error: expected ',' or ']', but got ':'; got 'timeframes: [1d]'"]),
    "yaml-duplicate-key": (
        "data: {assets: [BTC-USDT], timeframes: [1d]}\ndata: {assets: [ETH-USDT]}\n",
        ["{spec}: line 2, column 1: YAML syntax error: duplicate key 'data' (first at line 1); "
         "got 'data: {assets: [ETH-USDT]}'"]),
    "empty-file": (
        "",
        ["{spec}: file is empty; a spec needs at least data, features and model sections"]),
    "only-comments": (
        "# a spec to be written\n",
        ["{spec}: file is empty; a spec needs at least data, features and model sections"]),
    "top-level-list": (
        "- data\n- model\n",
        ["{spec}: top level must be a mapping of sections (data, features, model, ...); got ['data', 'model']"]),
}


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _mutated(tiny_spec_text: str, mutate: Callable[[dict[str, Any]], None]) -> str:
    raw = copy.deepcopy(yaml.safe_load(tiny_spec_text))
    mutate(raw)
    return yaml.safe_dump(raw, sort_keys=False)


def _assert_rejected(res: Any, expected: list[str], spec: Path) -> None:
    assert res.code == 2
    assert res.err_lines == [e.replace("{spec}", str(spec)) for e in expected]
    assert "Traceback" not in res.err and res.out == ""


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_spec_is_rejected_with_exact_lines(case: str, tmp_path: Path, tiny_spec_text: str, cli) -> None:
    mutate, expected = CASES[case]
    spec = _write(tmp_path, _mutated(tiny_spec_text, mutate))
    _assert_rejected(cli("validate", spec), expected, spec)
    with pytest.raises(SpecError, match=re.escape(expected[0].replace("{spec}", str(spec)))):
        load_spec(spec)


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_malformed_file_is_rejected_with_exact_lines(case: str, tmp_path: Path, cli) -> None:
    text, expected = RAW_CASES[case]
    spec = _write(tmp_path, text)
    _assert_rejected(cli("validate", spec), expected, spec)


def test_enough_malformed_cases() -> None:
    assert len(CASES) + len(RAW_CASES) >= 20  # plus base cycle, missing base, missing file, bad --set below


def test_base_cycle(tmp_path: Path, tiny_spec_text: str, cli) -> None:
    a = _write(tmp_path, "base: b.yaml\nname: a\n", "a.yaml")
    _write(tmp_path, "base: a.yaml\nname: b\n", "b.yaml")
    res = cli("validate", a)
    _assert_rejected(res, [f"{tmp_path / 'b.yaml'}: base: forms a cycle (a.yaml -> b.yaml -> a.yaml); remove one "
                           "of the base: links; got 'a.yaml'"], a)
    self_loop = _write(tmp_path, "base: self.yaml\n", "self.yaml")
    with pytest.raises(SpecError, match=r"base: forms a cycle \(self.yaml -> self.yaml\)"):
        load_spec(self_loop)


def test_missing_base_file(tmp_path: Path, cli) -> None:
    spec = _write(tmp_path, "base: nowhere.yaml\nname: x\n")
    res = cli("validate", spec)
    _assert_rejected(res, [f"{{spec}}: base: file not found (looked for {tmp_path / 'nowhere.yaml'}); "
                           "got 'nowhere.yaml'"], spec)


def test_missing_spec_file(tmp_path: Path, cli) -> None:
    spec = tmp_path / "absent.yaml"
    _assert_rejected(cli("validate", spec), ["{spec}: file not found"], spec)
    _assert_rejected(cli("space", tmp_path), ["{spec}: is a folder, not a spec file"], tmp_path)


def test_bad_set_overrides(tiny_spec: Path, cli) -> None:
    res = cli("validate", tiny_spec, "--set", "data.assets.first=BTC-USDT")
    assert res.code == 2
    assert res.err_lines == ["--set data.assets.first=BTC-USDT: data.assets is not a section, so it has no key "
                             "'first'; got ['BTC-USDT']"]
    res = cli("validate", tiny_spec, "--set", "training.max_epochs")
    assert res.err_lines == ["--set training.max_epochs: expected KEY=VALUE, e.g. --set search.num_samples=4"]
    res = cli("space", tiny_spec, "--set", "training.max_epochs=-3")
    assert res.code == 2
    assert res.err_lines == [f"{tiny_spec}: training.max_epochs: must be >= 1; got -3"]
    with pytest.raises(SpecError, match=r"--set base=x.yaml: base: can only be set in the spec file"):
        load_spec(tiny_spec, ["base=x.yaml"])


@pytest.mark.parametrize("case", ["unknown-asset", "horizon-longer-than-data", "negative-resources",
                                  "unknown-top-level-key", "overlapping-split-fractions"])
def test_run_writes_nothing_for_a_bad_spec(case: str, tmp_path: Path, tiny_spec_text: str, cli) -> None:
    mutate, expected = CASES[case]
    spec = _write(tmp_path, _mutated(tiny_spec_text, mutate))
    runs = tmp_path / "runs"
    res = cli("run", spec, "--storage", runs)
    _assert_rejected(res, expected, spec)
    assert not runs.exists()


def test_run_writes_nothing_for_a_broken_file(tmp_path: Path, cli) -> None:
    spec = _write(tmp_path, "data: [\n")
    runs = tmp_path / "runs"
    res = cli("run", spec, "--storage", runs)
    assert res.code == 2 and len(res.err_lines) == 1 and "YAML syntax error" in res.err
    assert not runs.exists()


# ----------------------------------------------------------------------------- direct API
def test_spec_error_lists_every_problem(tmp_path: Path, tiny_spec_text: str) -> None:
    mutate, expected = CASES["several-errors-at-once"]
    spec = _write(tmp_path, _mutated(tiny_spec_text, mutate))
    with pytest.raises(SpecError, match=r"data\.assets\[0\]: no candle file") as info:
        load_spec(spec)
    assert info.value.lines == [e.replace("{spec}", str(spec)) for e in expected]


@pytest.mark.parametrize(("key", "value", "match"), [
    ("model.families", {"lstm": {"units": {"type": "uniform", "low": 4, "high": 8}}},
     r"model\.families\.lstm\.units: takes whole numbers: use a fixed value, choice, grid, randint or qrandint; "
     r"got uniform"),
    ("model.families", {"lstm": {"units": [4, 8]}},
     r"model\.families\.lstm\.units: a list is not a distribution; write \{type: choice, values: \[4, 8\]\}"),
    ("model.families", {"lstm": {"layers": 40}}, r"model\.families\.lstm\.layers: must be <= 16; got 40"),
    ("model.families", {"transformer": {"pos_encoding": "rotary"}},
     r"model\.families\.transformer\.pos_encoding: must be one of learned, sinusoidal"),
    ("model.families", {"synth_factorized_dense": {"d_model": 8, "heads": 2, "factor": 9}},
     r"model\.families\.synth_factorized_dense\.factor: must be <= the shortest window\.lookback \(4\); got 9"),
    ("model.families", {}, r"model\.families: must map family names to parameter spaces"),
    ("features.pool", ["rsi", "rsi"], r"features\.pool\[1\]: pool member 'rsi_14' is already listed at "
     r"features\.pool\[0\]; list each member once; got 'rsi'"),
    ("features.pool", [{"rsi": {"period": {"type": "uniform", "low": 5, "high": 9}}}],
     r"features\.pool\[0\]\.rsi\.period: takes whole numbers"),
    ("features.pool", [{"ema_ratio": {"period": {"type": "randint", "low": 5, "high": 9}}}],
     r"features\.pool\[0\]\.ema_ratio\.period: indicator parameters are precomputed, so only choice/grid"),
    ("features.pool", [{"rsi": {"period": 0}}], r"features\.pool\[0\]\.rsi\.period: must be >= 1; got 0"),
    ("features.min_size", 4, r"features\.min_size: must be <= features\.max_size \(3\); got 4"),
    ("training.loss", "msa", r"training\.loss: must be one of mse, mae, huber \(did you mean 'mse'\?\); got 'msa'"),
    ("training.learning_rate", float("nan"), r"training\.learning_rate: must be a finite number; got nan"),
    ("training.batch_size", {"type": "choice", "values": [32, 32.0]},
     r"training\.batch_size: choice\.values must not repeat a value"),
    ("training.patience", -1, r"training\.patience: must be >= 0; got -1"),
    ("search.seed", -1, r"search\.seed: must be >= 0; got -1"),
    ("scheduler", {"kind": "none", "max_t": 2}, r"scheduler\.max_t: only applies to scheduler\.kind asha"),
    ("scheduler", {"kind": "asha", "max_t": 5, "grace_period": 1},
     r"scheduler\.max_t: must be <= training\.max_epochs \(2\); got 5"),
    ("resources.cpus", float("inf"), r"resources\.cpus: must be a finite number; got inf"),
    ("data.assets", ["btc/usdt"], r"data\.assets\[0\]: must look like BASE-QUOTE in capitals, e\.g\. BTC-USDT "
     r"\(did you mean 'BTC-USDT'\?\); got 'btc/usdt'"),
    ("data.assets", ["BTC-USDT", "BTC-USDT"], r"data\.assets\[1\]: is listed twice"),
    ("data.path", "/nonexistent/candles", r"data\.path: folder does not exist; got '/nonexistent/candles'"),
    ("data.start", "2030-01-01", r"data\.start: is after the last candle \(2026-01-05\); no data left"),
    ("data.end", "2020-01-01", r"data\.end: must be after data\.start \(2021-01-01\); got 2020-01-01"),
    ("target.kind", "multiplyer", r"target\.kind: unknown target \(did you mean 'multiplier'\?\)"),
    ("split", {"train": 0.9, "val": 0.1}, r"split\.val: fractions leave nothing for test"),
    ("split", {"val_start": "2024-01-01"}, r"split\.test_start: a date split needs both val_start and test_start"),
    ("name", "my run", r"name: must be 1-100 characters from A-Z a-z 0-9 \. _ - \(no '\.\.', no path separators\) "
     r"\(it names the run folder\); got 'my run'"),
    ("name", "a..b", r"name: must be 1-100 characters .*; got 'a\.\.b'"),
    ("storage", "runs\ntouch x", r"storage: must be a folder for run directories \(no newlines or other control "
     r"characters\)"),
])
def test_more_rules(key: str, value: Any, match: str, tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _write(tmp_path, _mutated(tiny_spec_text, _set(key, value)))
    with pytest.raises(SpecError, match=match) as info:
        load_spec(spec)
    assert all(line.startswith(f"{spec}: ") for line in info.value.lines)


def test_window_too_long_for_the_data(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _write(tmp_path, _mutated(tiny_spec_text, _set("window.lookback", 1790)))
    with pytest.raises(SpecError, match=r"window\.lookback: lookback \(1790\), target\.horizon \(1\) and indicator "
                       r"warm-up \(42\) leave about 0 samples; need at least 67 \(10 in each split span\)"):
        load_spec(spec)


def test_unknown_asset_in_own_folder(tmp_path: Path, tiny_spec_text: str) -> None:
    folder = tmp_path / "candles"
    folder.mkdir()
    (folder / "ETH-USDT_1d.csv").write_text("timestamp,open,high,low,close,volume\n")
    spec = _write(tmp_path, _mutated(tiny_spec_text, _set("data.path", str(folder))))
    with pytest.raises(SpecError, match=rf"data\.assets\[0\]: no candle file for this asset in {folder} "
                       r"\(did you mean 'ETH-USDT'\?\); available: ETH-USDT; got 'BTC-USDT'"):
        load_spec(spec)
    spec = _write(tmp_path, _mutated(tiny_spec_text, _many(_set("data.path", str(folder)),
                                                           _set("data.assets", ["ETH-USDT"]),
                                                           _set("data.timeframes", ["4h"]))))
    with pytest.raises(SpecError, match=r"data\.timeframes\[0\]: no ETH-USDT candles at 4h or at a finer timeframe "
                       rf"that divides it in {folder} \(files: ETH-USDT 1d\); got '4h'"):
        load_spec(spec)


def test_empty_sections_take_defaults(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _write(tmp_path, tiny_spec_text + "split:\n")
    loaded = load_spec(spec)
    assert loaded.spec.split.fractions() == (0.7, 0.15, 0.15)


def test_volatility_target_rules(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _write(tmp_path, _mutated(tiny_spec_text, _many(_set("target.kind", "volatility"),
                                                           _set("data.timeframes", ["1h"]))))
    with pytest.raises(SpecError, match=r"target\.horizon: volatility on 1h candles needs horizon >= 2 \(e\.g\. 24 "
                       r"for next-day volatility\)"):
        load_spec(spec)
    folder = tmp_path / "candles"
    folder.mkdir()
    (folder / "BTC-USDT_1d.csv").write_bytes((EMBEDDED_DIR / "BTC-USDT_1d.csv").read_bytes())
    spec = _write(tmp_path, _mutated(tiny_spec_text, _many(_set("target.kind", "volatility"),
                                                           _set("data.path", str(folder)))))
    with pytest.raises(SpecError, match=rf"data\.assets\[0\]: target volatility is computed from 1h candles, and "
                       rf"there is no BTC-USDT_1h\.csv\[\.gz\] in {folder}; got 'BTC-USDT'"):
        load_spec(spec)


def test_dates_out_of_range(tmp_path: Path, tiny_spec_text: str) -> None:
    spec = _write(tmp_path, tiny_spec_text.replace("start: 2021-01-01", "start: 1900-01-01"))
    with pytest.raises(SpecError, match=r"data\.start: must be between 1970-01-01 and 2200-12-31; got 1900-01-01"):
        load_spec(spec)


def test_the_readme_shrink_example_validates_on_the_demo_spec() -> None:
    """The README's `--set` example is run as written against the demo spec (it once failed on ASHA)."""
    import shlex

    root = Path(__file__).resolve().parents[2]
    (line,) = [ln for ln in (root / "README.md").read_text().splitlines() if ln.startswith("`--set ")]
    words = shlex.split(line.strip("`"))
    overrides = [w for w in words if w != "--set"]
    assert len(overrides) == len(words) // 2 >= 3 and "training.max_epochs=2" in overrides
    spec = load_spec(root / "search_spaces" / "laptop.yaml", overrides).spec
    assert spec.training.max_epochs == 2 and spec.data.assets == ["BTC-USDT"]
    # without the grace-period override the error names the --set to add
    with pytest.raises(SpecError, match=r"scheduler\.grace_period: must be <= training\.max_epochs \(2\); got \d+; "
                                        r"add --set scheduler\.grace_period=1"):
        load_spec(root / "search_spaces" / "laptop.yaml", [o for o in overrides if "grace" not in o])

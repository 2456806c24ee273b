"""Hostile input, table-driven: damaged run folders, registries, specs and data files.

Each case copies a real artefact (the session's tiny real run, a registry exported from
it with a real production refit, a real spec, the embedded candles), damages one thing,
runs the real CLI (``cluster.cli.main``) and asserts what issue 14 asks of every user
error: exit 2, exactly one line on stderr, under 300 characters, no traceback (an
exception other than a ``TunefactoryError`` would escape ``main`` and fail the case), and
nothing written: the case's whole folder (and the working directory) is byte-for-byte and
mtime-for-mtime what it was before.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from cluster.cli import main
from tests.conftest import TINY_SPEC

EMBEDDED = Path(__file__).resolve().parent.parent / "trainables" / "data" / "embedded" / "ohlcv"
GROUP = "BTC-USDT_1d"
#: Just after the last embedded daily candle closes: the forecast is not stale there.
AT = "2026-01-06T00:00Z"


@dataclass(frozen=True)
class Case:
    """One damaged input: what to copy, how to damage it, the command, and what the line names."""

    id: str
    mutate: Callable[[Path], object]
    argv: Callable[[Path], list[str]]
    names: str  # a substring the error line must contain (the file or option at fault)
    hidden: str = "\x00"  # a substring it must not contain (content of a file that is not the user's spec)


# --- damage helpers (``w`` is the case's folder: run/, winners/, spec.yaml, data/) ----------

#: Placeholders in the table's paths: ``{trial}`` is the run's winning trial folder (set
#: by the ``world`` fixture, which finds it).
FILL: dict[str, str] = {}


def at(w: Path, rel: str) -> Path:
    return w / rel.format(**FILL)



def write(rel: str, data: str | bytes) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        p = at(w, rel)
        p.unlink(missing_ok=True) if not p.is_dir() else shutil.rmtree(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return go


def truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        p = at(w, rel)
        raw = p.read_bytes()
        p.write_bytes(raw[: int(len(raw) * keep)])
    return go


def folder(rel: str) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        p = at(w, rel)
        p.unlink()
        p.mkdir()
    return go


def remove(rel: str) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        p = at(w, rel)
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return go


def edit_json(rel: str, fn: Callable[[Any], Any]) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        p = at(w, rel)
        p.write_text(json.dumps(fn(json.loads(p.read_text()))))
    return go


def edit_jsonl(rel: str, line: int, fn: Callable[[Any], Any]) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        p = at(w, rel)
        rows = p.read_text().splitlines()
        rows[line] = json.dumps(fn(json.loads(rows[line])))
        p.write_text("\n".join(rows) + "\n")
    return go


def edit_yaml(rel: str, fn: Callable[[Any], Any]) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        p = at(w, rel)
        p.write_text(yaml.safe_dump(fn(yaml.safe_load(p.read_text()))))
    return go


def setk(path: str, value: Any) -> Callable[[Any], Any]:
    """Set (or, with ``...``, delete) a dotted key in parsed data."""
    def fn(d: Any) -> Any:
        node = d
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if value is ...:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
        return d
    return fn


def npy(rel: str, fn: Callable[[int], Any]) -> Callable[[Path], None]:
    """Replace a checkpoint's ``predictions.npy`` by ``fn(rows)`` (rows: what its ``predictions.json`` says)."""
    def go(w: Path) -> None:
        p = at(w, rel)
        rows = json.loads((p.parent / "predictions.json").read_text())["rows"]
        arr = fn(rows)
        p.unlink()
        if isinstance(arr, bytes):
            p.write_bytes(arr)
        else:
            np.save(p, arr, allow_pickle=arr.dtype == object)
    return go


def old_csv(rel: str, data: str | bytes) -> Callable[[Path], None]:
    """A checkpoint from before the compact predictions: only ``predictions.csv``, with ``data``."""
    def go(w: Path) -> None:
        p = at(w, rel)
        for n in ("predictions.npy", "predictions.json"):
            (p / n).unlink()
        (p / "predictions.csv").write_bytes(data.encode() if isinstance(data, str) else data)
    return go


def np_ones(n: int, dtype: str) -> Any:
    return np.ones(n, dtype=dtype)


def np_object(n: int) -> Any:
    """An object array: ``np.save`` pickles it; the reader must never unpickle it."""
    return np.array([{"x": 1}] * n, dtype=object)


def span_cell(row: int, col: int, value: str) -> Callable[[Path], None]:
    """Set one cell of the group's test span file (row 1 = the first data line)."""
    def go(w: Path) -> None:
        p = w / "run" / "test_span" / "BTC-USDT_1d.csv"
        lines = p.read_text().split("\n")
        cells = lines[row].split(",")
        cells[col] = value
        lines[row] = ",".join(cells)
        p.write_text("\n".join(lines))
    return go


def _nan_at(i: int) -> Callable[[int], Any]:
    def fn(n: int) -> Any:
        a = np.ones(n)
        a[i] = np.nan
        return a
    return fn


def both(*steps: Callable[[Path], object]) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        for step in steps:
            step(w)
    return go


def replace(rel: str, old: bytes, new: bytes) -> Callable[[Path], None]:
    def go(w: Path) -> None:
        p = at(w, rel)
        raw = p.read_bytes()
        assert old in raw, (rel, old)
        p.write_bytes(raw.replace(old, new, 1))
    return go


def keras_config(rel: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Path], None]:
    """Rewrite the ``config.json`` inside a ``.keras`` zip (the rest of the archive kept)."""
    def go(w: Path) -> None:
        p = at(w, rel)
        src = zipfile.ZipFile(io.BytesIO(p.read_bytes()))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == "config.json":
                    data = json.dumps(fn(json.loads(data))).encode()
                z.writestr(info, data)
        p.write_bytes(out.getvalue())
    return go


def first_layer_as(class_name: str, module: str, config: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def fn(c: dict[str, Any]) -> dict[str, Any]:
        layer = c["config"]["layers"][1]
        layer.update({"class_name": class_name, "module": module, "registered_name": None})
        layer["config"] = {**layer["config"], **config}
        return c
    return fn


def gzip_bomb(rel: str, size: int) -> Callable[[Path], None]:
    """A valid-looking candle file whose one cell expands to ``size`` bytes (~1/1000 on disk)."""
    def go(w: Path) -> None:
        c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        with open(w / rel, "wb") as fh:
            fh.write(c.compress(b"timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,1,1,1,"))
            chunk = b"1" * (1 << 20)
            for _ in range(size >> 20):
                fh.write(c.compress(chunk))
            fh.write(c.compress(b"\n") + c.flush())
    return go


def resign(w: Path, damage: Callable[[Path], None]) -> None:
    """Damage the run's state, then sign it with this user's key as a sweep would: resume
    then trusts the file (it was not altered behind the signature) and must still refuse
    its content in one line."""
    from cluster import integrity

    damage(w)
    integrity.sign_files(str(w / "run"))


def blank_lines_then_bad_cell(w: Path) -> None:
    """Three blank lines after line 10, then a bad cell on what was line 42 (now 45)."""
    p = w / CSV
    lines = p.read_text().splitlines()
    lines[41] = lines[41].replace(",", ",x", 1)
    p.write_text("\n".join(lines[:10]) + "\n\n\n\n" + "\n".join(lines[10:]) + "\n")


def metric_bomb(w: Path) -> None:
    """A spec whose metric table (a real gzip file) expands past the size cap."""
    gzip_bomb("data/BTC_m.csv.gz", 300 << 20)(w)
    (w / "spec.yaml").write_text(TINY_SPEC.replace(
        "  start: 2021-01-01\n", f"  start: 2021-01-01\n  metrics: [{json.dumps(str(w / 'data' / '{base}_m.csv.gz'))}]\n"))


# --- the commands -----------------------------------------------------------------------

def report(w: Path) -> list[str]:
    return ["report", str(w / "run")]


def export(w: Path) -> list[str]:
    return ["export", str(w / "run"), "--registry", str(w / "winners"), "--no-refit", "--force"]


def forecast(*extra: str) -> Callable[[Path], list[str]]:
    def argv(w: Path) -> list[str]:
        return ["forecast", "--asset", "BTC-USDT", "--timeframe", "1d", "--registry", str(w / "winners"),
                "--at", AT, *extra]
    return argv


def validate(w: Path) -> list[str]:
    return ["validate", str(w / "spec.yaml")]


def check(name: str) -> Callable[[Path], list[str]]:
    return lambda w: ["data", "check", str(w / "data" / name)]


def nothing(w: Path) -> None:
    return None


def fixed(*args: str) -> Callable[[Path], list[str]]:
    return lambda w: [a.replace("{w}", str(w)) for a in args]


T = "run/{trial}"  # the winning trial's folder (filled in per case)
C = f"{T}/checkpoint_000000"  # its checkpoint
W = f"winners/{GROUP}"  # the registry's published version (a link, followed)
S = f"{W}/selection"
P = f"{W}/production"
CSV = "data/BTC-USDT_1d.csv"

CASES: list[Case] = [
    # run folder: groups.json
    Case("groups-truncated", truncate("run/groups.json"), report, "groups.json: line"),
    Case("groups-empty", write("run/groups.json", ""), report, "groups.json: line 1, column 1"),
    Case("groups-list", write("run/groups.json", "[1, 2]"), report, "groups.json: (top level)"),
    Case("groups-groups-list", edit_json("run/groups.json", setk("groups", [])), report, "groups.json: groups:"),
    Case("groups-no-spans", edit_json("run/groups.json", setk("groups.BTC-USDT/1d.spans", ...)), report,
         "groups.BTC-USDT/1d.spans: missing"),
    Case("groups-short-span", edit_json("run/groups.json", setk("groups.BTC-USDT/1d.spans.val", ["2024"])),
         report, "spans.val: expected at least 2 items; got"),
    Case("groups-horizon-text", edit_json("run/groups.json", setk("groups.BTC-USDT/1d.horizon", "1")), report,
         "BTC-USDT/1d.horizon"),
    Case("groups-horizon-zero", edit_json("run/groups.json", setk("groups.BTC-USDT/1d.horizon", 0)), report,
         "BTC-USDT/1d.horizon: must be >= 1; got 0"),
    Case("groups-persistence-text",
         edit_json("run/groups.json", setk("groups.BTC-USDT/1d.persistence_rmse", "x")), report, "persistence_rmse"),
    Case("groups-not-utf8", replace("run/groups.json", b'"tiny"', b'"ti\xffy"'), report, "not UTF-8"),
    Case("groups-folder", folder("run/groups.json"), report, "groups.json: is a folder"),
    Case("groups-huge-value", edit_json("run/groups.json", setk("groups.BTC-USDT/1d.horizon", "7" * 2_000_000)),
         report, "(2,000,000 chars)"),
    # run folder: spec.yaml
    Case("spec-yaml-syntax", write("run/spec.yaml", "name: x\ndata: [1, 2\n"), report, "spec.yaml: line"),
    Case("spec-yaml-list", write("run/spec.yaml", "- 1\n- 2\n"), report, "spec.yaml: (top level)"),
    Case("spec-yaml-python-tag", write("run/spec.yaml", "a: !!python/object/apply:os.system [id]\n"), report,
         "spec.yaml: line 1"),
    Case("spec-yaml-folder", folder("run/spec.yaml"), report, "spec.yaml: is a folder"),
    # run folder: a trial's params.json
    Case("params-truncated", truncate(f"{T}/params.json"), report, "params.json: line"),
    Case("params-list", write(f"{T}/params.json", "[]"), report, "params.json: (top level)"),
    Case("params-lookback-text", edit_json(f"{T}/params.json", setk("lookback", "8")), report,
         "params.json: lookback"),
    Case("params-columns-text", edit_json(f"{T}/params.json", setk("columns", "rsi_14")), report,
         "params.json: columns"),
    Case("params-no-family", edit_json(f"{T}/params.json", setk("family", ...)), report,
         "params.json: family: missing"),
    Case("params-group-number", edit_json(f"{T}/params.json", setk("group", 7)), report, "params.json: group"),
    Case("params-not-utf8", write(f"{T}/params.json", b'{"family": "\xe9"}'), report, "line 1, byte 13"),
    Case("params-folder", folder(f"{T}/params.json"), report, "params.json: is a folder"),
    # run folder: a trial's result.json
    Case("result-middle-line-torn", replace(f"{T}/result.json", b'"val_rmse"', b'"val_rmse'), report,
         "result.json: line 1"),
    Case("result-row-list", edit_jsonl(f"{T}/result.json", 0, lambda r: [r]), report,
         "result.json: line 1: (top level)"),
    Case("result-best-text", edit_jsonl(f"{T}/result.json", -1, setk("val_rmse_best", "0.1")), report,
         "val_rmse_best"),
    Case("result-done-text", edit_jsonl(f"{T}/result.json", -1, setk("done", "yes")), report, ": done:"),
    Case("result-not-utf8", replace(f"{T}/result.json", b"\n{", b"\n\xff{"), report, "line 2, byte 1: not UTF-8"),
    Case("result-folder", folder(f"{T}/result.json"), report, "result.json: is a folder"),
    # run folder: the rest
    # run folder: a checkpoint's test predictions, old form (predictions.csv) ...
    Case("predictions-garbage", old_csv(C, "timestamp,y_true\n\x00,zz\n"), report, "predictions.csv"),
    Case("predictions-not-utf8", old_csv(C, b"timestamp,y\xff\n"), report, "predictions.csv: line 1, byte 12"),
    Case("predictions-csv-nan", old_csv(C, "timestamp,y_true,y_pred\n2025-01-01T00:00:00Z,1,1\n"
                                           "2025-01-02T00:00:00Z,1,nan\n"), report,
         "predictions.csv: line 3: y_pred: expected a finite number; got 'nan'"),
    Case("predictions-csv-ragged", old_csv(C, "timestamp,y_true,y_pred\n2025-01-01T00:00:00Z,1\n"), report,
         "predictions.csv: line 2: 2 fields, the header has 3"),
    # ... and compact: predictions.npy + predictions.json, and the group's test_span/ file
    Case("predictions-npy-pickle", npy(f"{C}/predictions.npy", lambda n: np_object(n)), report,
         "predictions.npy: not a float64 .npy array of"),
    Case("predictions-npy-truncated", truncate(f"{C}/predictions.npy"), report, "predictions.npy: not a float64"),
    Case("predictions-npy-not-npy", npy(f"{C}/predictions.npy", lambda n: b"PK\x03\x04" + b"\0" * 64), report,
         "predictions.npy: not a float64 .npy array"),
    Case("predictions-npy-float32", npy(f"{C}/predictions.npy", lambda n: np_ones(n, "<f4")), report,
         "dtype <f4; expected float64"),
    Case("predictions-npy-ints", npy(f"{C}/predictions.npy", lambda n: np_ones(n, "<i8")), report, "dtype <i8"),
    Case("predictions-npy-2d", npy(f"{C}/predictions.npy", lambda n: np_ones(n, "<f8").reshape(n, 1)), report,
         "predictions.npy: not a float64 .npy array"),
    Case("predictions-npy-short", npy(f"{C}/predictions.npy", lambda n: np_ones(n - 1, "<f8")), report,
         "predictions.json says rows"),
    Case("predictions-npy-nan", npy(f"{C}/predictions.npy", _nan_at(3)), report,
         "predictions.npy: forecast 3: expected a finite number; got nan"),
    Case("predictions-npy-too-large", npy(f"{C}/predictions.npy", lambda n: np_ones(n + 1000, "<f8")), report,
         "bytes; files over"),
    Case("predictions-npy-missing", remove(f"{C}/predictions.npy"), report, "predictions.npy: file not found"),
    Case("predictions-json-truncated", truncate(f"{C}/predictions.json"), report, "predictions.json: line 1"),
    Case("predictions-json-rows-text", edit_json(f"{C}/predictions.json", setk("rows", "9")), report,
         "predictions.json: rows"),
    Case("predictions-json-rows-past-span", edit_json(f"{C}/predictions.json", lambda d: {**d, "rows": d["rows"] + 1}),
         report, "run past the end of test_span/BTC-USDT_1d.csv"),
    Case("predictions-json-first-unknown", edit_json(f"{C}/predictions.json", setk("first", "1999-01-01T00:00:00Z")),
         report, "first: '1999-01-01T00:00:00Z' is not a timestamp of test_span/BTC-USDT_1d.csv"),
    Case("predictions-json-span-escapes", edit_json(f"{C}/predictions.json", setk("span", "../../../etc/passwd.csv")),
         report, "predictions.json: span"),
    Case("predictions-json-format-2", edit_json(f"{C}/predictions.json", setk("format", 2)), report,
         "predictions.json: format"),
    Case("test-span-missing", remove("run/test_span/BTC-USDT_1d.csv"), report, "BTC-USDT_1d.csv: file not found"),
    Case("test-span-truncated", truncate("run/test_span/BTC-USDT_1d.csv"), report, "BTC-USDT_1d.csv"),
    Case("test-span-no-close", replace("run/test_span/BTC-USDT_1d.csv", b"close,", b"klose,"), report,
         "BTC-USDT_1d.csv: header: missing column close"),
    Case("test-span-nan", span_cell(2, 2, "nan"), report, "BTC-USDT_1d.csv: line 3: y_true: expected a finite number"),
    Case("test-span-ragged", span_cell(2, 2, "1,2"), report, "BTC-USDT_1d.csv: line 3: 5 fields, the header has 4"),
    Case("export-predictions-npy-truncated", truncate(f"{C}/predictions.npy"), export, "predictions.npy"),
    Case("report-is-a-file", write("run/report", "x"), report, "report"),
    Case("run-dir-is-a-file", write("run", "x"), report, "run: is a file, not a run folder"),
    Case("run-dir-missing", remove("run"), report, "no such run directory"),
    Case("report-top-k-zero", nothing, lambda w: ["report", str(w / "run"), "--top-k", "0"], "--top-k"),
    Case("export-registry-is-a-file", write("winners", "x"), export, "registry"),
    Case("export-groups-truncated", truncate("run/groups.json"), export, "groups.json"),
    Case("export-history-is-a-folder", folder("winners/history.jsonl"), export, "history.jsonl"),
    Case("confirm-params-list", write(f"{T}/params.json", "[]"),
         lambda w: ["confirm", str(w / "run"), "--top-k", "1", "--seeds", "1"], "params.json"),
    Case("resume-state-truncated", lambda w: resign(w, truncate(
        f"run/{next((w / 'run').glob('experiment_state-*.json')).name}")),
        lambda w: ["resume", str(w / "run")], "experiment_state"),
    Case("resume-state-trial-list", lambda w: resign(w, edit_json(
        f"run/{next((w / 'run').glob('experiment_state-*.json')).name}", setk("trial_data", [["[]", "{}"]]))),
        lambda w: ["resume", str(w / "run")], "trial_data[0][0]"),
    Case("resume-searcher-truncated", lambda w: resign(w, truncate(
        f"run/{next((w / 'run').glob('searcher-state-*.pkl')).name}")),
        lambda w: ["resume", str(w / "run")], "searcher-state-"),
    Case("resume-searcher-issued-text", lambda w: resign(w, edit_json(
        f"run/{next((w / 'run').glob('searcher-state-*.pkl')).name}", setk("issued", {"BTC-USDT/1d": "4"}))),
        lambda w: ["resume", str(w / "run")], "issued.BTC-USDT/1d: expected a valid integer"),
    Case("confirm-summary-truncated", write("run/confirm/summary.json", '{"ranking": [{"group": "BTC-USDT/1d", '),
         report, "summary.json: line 1, column"),
    Case("confirm-summary-ranking-mapping", write("run/confirm/summary.json", '{"ranking": {"group": 1}}'), report,
         "summary.json: ranking: expected a valid list"),
    Case("confirm-summary-no-verdict", write("run/confirm/summary.json", json.dumps(
        {"ranking": [{"group": "BTC-USDT/1d", "trial_id": "x", "runs": 3}]})), report, "ranking[0].verdict: missing"),
    # registry: config.yaml, metrics.json, recipe.json
    Case("config-syntax", write(f"{W}/config.yaml", "trial: [1,\n"), forecast(), "config.yaml: line"),
    Case("config-list", write(f"{W}/config.yaml", "- 1\n"), forecast(), "config.yaml: (top level)"),
    Case("config-no-lookback", edit_yaml(f"{W}/config.yaml", setk("trial.lookback", ...)), forecast(),
         "trial.lookback: missing"),
    Case("config-lookback-text", edit_yaml(f"{W}/config.yaml", setk("trial.lookback", "8")), forecast(),
         "trial.lookback"),
    Case("config-lookback-negative", edit_yaml(f"{W}/config.yaml", setk("trial.lookback", -3)), forecast(),
         "trial.lookback"),
    Case("config-columns-mapping", edit_yaml(f"{W}/config.yaml", setk("trial.columns", {"a": 1})), forecast(),
         "trial.columns"),
    Case("config-python-tag", write(f"{W}/config.yaml", "trial: !!python/name:os.system\n"), forecast(),
         "config.yaml: line 1"),
    Case("metrics-truncated", truncate(f"{W}/metrics.json"), forecast(), "metrics.json: line"),
    Case("metrics-list", write(f"{W}/metrics.json", "[]"), forecast(), "metrics.json: (top level)"),
    Case("metrics-not-utf8", write(f"{W}/metrics.json", b'{\n\n"a": "\xff"}'), forecast(),
         "metrics.json: line 3, byte 7"),
    Case("metrics-through-number", edit_json(f"{W}/metrics.json", setk("production", {"trained_through": 5})),
         forecast(), "production.trained_through"),
    Case("recipe-truncated", truncate(f"{W}/recipe.json"), forecast(), "recipe.json: line"),
    Case("recipe-list", write(f"{W}/recipe.json", "[]"), forecast(), "recipe.json"),
    Case("recipe-no-horizon", edit_json(f"{W}/recipe.json", setk("horizon", ...)), forecast(), "recipe.json"),
    # registry: the models' scaler.json and model.keras
    Case("scaler-strings", edit_json(f"{P}/scaler.json", setk("mean", ["a", "b"])), forecast(),
         "scaler.json: mean[0]"),
    Case("scaler-wrong-width", edit_json(f"{P}/scaler.json", lambda d: {**d, "mean": d["mean"] * 2,
                                                                          "std": d["std"] * 2}),
         forecast(), "scaler.json"),
    Case("scaler-missing", remove(f"{P}/scaler.json"), forecast(), "scaler.json"),
    Case("scaler-truncated", truncate(f"{S}/scaler.json"), forecast("--model", "selection"), "scaler.json: line"),
    Case("scaler-std-zero", edit_json(f"{S}/scaler.json", setk("y_std", 0)), forecast("--model", "selection"),
         "y_std"),
    Case("scaler-mapping", write(f"{S}/scaler.json", '{"mean": {"a": 1}}'), forecast("--model", "selection"),
         "scaler.json: mean"),
    Case("model-corrupt", write(f"{P}/model.keras", b"PK\x03\x04 not really a zip"), forecast(), "model.keras"),
    Case("model-empty", write(f"{S}/model.keras", b""), forecast("--model", "selection"), "model.keras"),
    Case("model-os-system", keras_config(f"{P}/model.keras", first_layer_as("system", "os", {})), forecast(),
         "model.keras"),
    Case("model-lambda", keras_config(f"{P}/model.keras", first_layer_as(
        "Lambda", "keras.layers", {"function": {"class_name": "__lambda__", "config": {
            "code": "4wEAAAAAAAAAAAAAAAEAAAABAAAAQwAAAHMEAAAAfABTAKkBTqkAKQHaAXhyAQAAAHIBAAAA+gE8bGFtYmRhPgEAAADzAAAAAA==",
            "defaults": None, "closure": None}}})), forecast(), "model.keras"),
    Case("model-config-not-json", replace(f"{P}/model.keras", b"config.json", b"config.jsoN"), forecast(),
         "model.keras"),
    Case("selection-model-missing", remove(f"{S}/model.keras"), forecast("--model", "selection"), "model.keras"),
    Case("registry-is-a-file", write("winners", "x"), forecast(), "winners: is a file, not a registry folder"),
    Case("registry-dangling-link", lambda w: shutil.rmtree(w / "winners" / ".versions"), forecast(),
         "no exported winner"),
    # specs
    Case("spec-funding-placeholder", write("spec.yaml", TINY_SPEC.replace("  start: 2021-01-01\n",
                                                                       '  start: 2021-01-01\n  funding: "x{foo}.csv"\n')),
         validate, "data.funding"),
    Case("spec-metrics-placeholder", write("spec.yaml", TINY_SPEC.replace(
        "  start: 2021-01-01\n", '  start: 2021-01-01\n  metrics: ["m{0}.csv"]\n')), validate, "data.metrics"),
    Case("spec-base-passwd", write("spec.yaml", "base: /etc/passwd\n" + TINY_SPEC), validate, "passwd", "root"),
    Case("spec-base-binary", both(write("b.yaml", b"k: \x00\xff\xfe secret\n"),
                                  write("spec.yaml", "base: b.yaml\n" + TINY_SPEC)), validate, "b.yaml", "secret"),
    Case("spec-base-secret-syntax", both(write("b.yaml", "token: [s3cr3t-value\n"),
                                         write("spec.yaml", "base: b.yaml\n" + TINY_SPEC)),
         validate, "b.yaml: line", "s3cr3t"),
    Case("spec-base-secret-scalar", both(write("b.yaml", "s3cr3t-password-line\n"),
                                         write("spec.yaml", "base: b.yaml\n" + TINY_SPEC)),
         validate, "b.yaml: top level", "s3cr3t"),
    Case("spec-base-folder", write("spec.yaml", "base: /tmp\n" + TINY_SPEC), validate, "base"),
    Case("spec-not-utf8", write("spec.yaml", TINY_SPEC.encode() + b"\n\n# caf\xe9\n"), validate,
         f"line {TINY_SPEC.count(chr(10)) + 3}, byte 6"),
    Case("spec-syntax", write("spec.yaml", "name: x\n\n\ndata: {assets: [BTC\n"), validate, "spec.yaml: line"),
    Case("spec-list", write("spec.yaml", "- a\n"), validate, "top level"),
    Case("spec-python-tag", write("spec.yaml", "name: !!python/object/apply:os.system [id]\n"), validate,
         "spec.yaml: line 1"),
    Case("spec-folder", folder("spec.yaml"), validate, "spec.yaml: is a folder"),
    Case("spec-missing", remove("spec.yaml"), validate, "spec.yaml: file not found"),
    Case("spec-huge-name", write("spec.yaml", TINY_SPEC.replace("name: tiny", "name: " + "n" * 3_000_000)), validate,
         "spec.yaml: name"),
    Case("spec-over-size-cap", write("spec.yaml", TINY_SPEC + "#" * (5 << 20) + "\n"), validate,
         "bytes; files over"),
    # data files
    Case("data-gzip-bomb", gzip_bomb("data/BTC-USDT_1d.csv.gz", 300 << 20), check("BTC-USDT_1d.csv.gz"),
         "BTC-USDT_1d.csv.gz"),
    Case("run-metric-table-gzip-bomb", metric_bomb, fixed("run", "{w}/spec.yaml", "--storage", "{w}/runs"),
         "BTC_m.csv.gz: expands to more than"),
    Case("data-gzip-truncated", lambda w: (w / "data" / "BTC-USDT_1d.csv.gz").write_bytes(
        zlib.compress((w / CSV).read_bytes())[:1000]), check("BTC-USDT_1d.csv.gz"), "BTC-USDT_1d.csv.gz"),
    Case("data-not-utf8", replace(CSV, b"\n2024-01-02", b"\n2024-01-0\xff"), check("BTC-USDT_1d.csv"),
         "not UTF-8"),
    Case("data-huge-cell", replace(CSV, b"\n2024-01-02T00:00:00Z", b"\n" + b"9" * 5_000_000), check("BTC-USDT_1d.csv"),
         "BTC-USDT_1d.csv"),
    Case("data-blank-lines-exact", blank_lines_then_bad_cell, check("BTC-USDT_1d.csv"), "csv: line 45: open 'x"),
    Case("data-folder", lambda w: (w / "data" / "x.csv").mkdir(), check("x.csv"), "x.csv: is a folder"),
    Case("data-list-file", nothing, fixed("data", "list", "{w}/data/BTC-USDT_1d.csv"), "BTC-USDT_1d.csv"),
    Case("data-list-missing-dir", nothing, fixed("data", "list", "{w}/nope"), "nope"),
    Case("forecast-data-garbage", write("data/BTC-USDT_1d.csv", "a,b\n1,2\n"),
         forecast("--data", "{w}/data/BTC-USDT_1d.csv"), "BTC-USDT_1d.csv"),
    # options
    Case("run-num-cpus-negative", nothing, fixed("run", "{w}/spec.yaml", "--num-cpus", "-3"), "--num-cpus"),
    Case("run-storage-is-a-file", lambda w: (w / "store").write_text("x"),
         fixed("run", "{w}/spec.yaml", "--storage", "{w}/store"), "store"),
    Case("submit-ftp-address", nothing, fixed("submit", "{w}/spec.yaml", "--address", "ftp://127.0.0.1:8265"),
         "ftp://"),
    Case("confirm-num-cpus-zero", nothing, fixed("confirm", "{w}/run", "--num-cpus", "0"), "--num-cpus"),
]


@pytest.fixture(scope="module")
def world(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A folder with ``run/`` (the tiny real run, report built), ``winners/`` (its winner,
    exported with a real production refit), ``spec.yaml`` and ``data/`` (a real candle
    file); and the name of the run's winning trial folder."""
    from cluster.refit import production_refit
    from reports.build import build_report
    from reports.collect import load_run
    from reports.registry.winners import export_run, winners

    w = tmp_path_factory.mktemp("hostile")
    shutil.copytree(small_run, w / "run", ignore=shutil.ignore_patterns("report"))
    build_report(w / "run")
    export_run(w / "run", w / "winners", refit=production_refit(through=None, threads=1))
    (w / "spec.yaml").write_text(TINY_SPEC)
    (w / "data").mkdir()
    shutil.copy(EMBEDDED / "BTC-USDT_1d.csv", w / CSV)
    (t,) = winners(load_run(w / "run")).values()
    return w, t.path.name


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file"
        out[str(p.relative_to(root))] = (st.st_size if kind == "file" else 0, st.st_mtime_ns if kind != "dir" else 0,
                                         kind)
    return out


def test_the_table_has_at_least_60_distinct_cases() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60, len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_line_exit_2_nothing_written(
        case: Case, world: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    src, trial = world
    FILL["trial"] = trial
    w = tmp_path / "w"
    shutil.copytree(src, w, symlinks=True)
    monkeypatch.chdir(tmp_path)
    case.mutate(w)
    argv = [a.replace("{w}", str(w)) for a in case.argv(w)]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, f"exit {code}; stderr: {err[:500]}; stdout: {out[:300]}"
    assert len(lines) == 1, lines[:5]
    assert len(lines[0]) < 300, lines[0][:400]
    assert "Traceback" not in err
    assert case.names in lines[0], lines[0]
    assert case.hidden not in lines[0], lines[0]
    assert _snapshot(tmp_path) == before, "files were written or changed"


#: Cases run again as a real process: what a user's terminal gets, file descriptor 2
#: included (TensorFlow's C++ start-up lines, library warnings), not only ``sys.stderr``.
PROCESS_CASES = ["params-list", "model-corrupt", "scaler-wrong-width", "spec-base-passwd", "data-gzip-bomb",
                 "resume-searcher-truncated", "run-num-cpus-negative"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in PROCESS_CASES], ids=PROCESS_CASES)
def test_hostile_input_as_a_process_prints_one_line(case: Case, world: tuple[Path, str], tmp_path: Path) -> None:
    src, trial = world
    FILL["trial"] = trial
    w = tmp_path / "w"
    shutil.copytree(src, w, symlinks=True)
    case.mutate(w)
    argv = [a.replace("{w}", str(w)) for a in case.argv(w)]
    before = _snapshot(tmp_path)
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-m", "cluster.cli", *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and len(lines[0]) < 300 and case.names in lines[0], lines
    assert _snapshot(tmp_path) == before

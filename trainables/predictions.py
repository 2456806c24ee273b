"""A trial's test-span predictions: the compact files a checkpoint holds, and the one reader.

Every trial of an asset/timeframe group is scored on the same test samples: ``prepare``
drops every sample whose window of the group's *longest* lookback (``max_lookback``) or
whose label would span a gap, so a trial's own lookback never moves the first test sample.
Only the forecasts differ between trials. So a checkpoint keeps just its own forecasts,

- ``predictions.npy``: ``y_pred``, one float64 per test sample (an ``.npy`` file, read
  with ``allow_pickle=False`` only), and
- ``predictions.json``: ``{"format": 1, "span": FILE, "first": TIME, "rows": N}``: which
  shared span file the forecasts belong to and where they start in it,

and the columns every trial shares are written once per group by the driver, before any
trial starts: ``<experiment>/test_span/<ASSET>_<TF>.csv`` (``timestamp``, ``close``,
``y_true``, ``y_persistence``; the experiment folder is the one holding the trial folders:
the run folder, or a confirmation's ``confirm/<name>/``, whose folds have their own spans).

Measured on BTC-USDT 1h (9,098 test samples, ``benchmarks/run_rate.py --by-file``): the old
per-trial ``predictions.csv`` was 518.8 KB; ``predictions.npy`` is 8 bytes a sample plus a
128-byte header (72.9 KB), ``predictions.json`` 87 bytes, the shared span file 406 KB once per
group. float64 rather than float32: the forecasts are ``z * y_std + y_mean`` with ``z`` the
network's float32 output, so for a multiplier target (``y_mean`` ~1, ``y_std`` ~0.01) the
values have ~2 more significant digits than float32 holds near 1; float32 would round each
forecast by up to 6e-8, far more than the model's own resolution, and the report's DM/SPA
tests, backtest and the registry's ``predictions.csv`` would no longer reproduce the scores
the trial reported (they were computed from the float64 values). Halving 73 KB is not
worth that.

:func:`read_predictions` returns the same table the old ``predictions.csv`` gave
(``timestamp`` as text, ``close``, ``y_true``, ``y_pred``, ``y_persistence``) from either
form, so run folders written before this change keep working. Every problem is one line
naming the file (:class:`~trainables.errors.RunError`), as in :mod:`trainables.records`.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from trainables.errors import RunError
from trainables.features.dataset import Prepared
from trainables.records import Record, decode, excerpt, read_bytes, read_json

#: A checkpoint's own forecasts and their alignment (the compact form).
NPY = "predictions.npy"
META = "predictions.json"
#: The full table: old checkpoints, and the registry's ``selection/`` (self-contained).
CSV = "predictions.csv"
#: Folder of the shared span files, beside the trial folders.
SPAN_DIR = "test_span"

#: Columns of the full table, in order (``close`` and ``y_persistence`` are absent in old runs).
COLUMNS = ("timestamp", "close", "y_true", "y_pred", "y_persistence")
REQUIRED = ("timestamp", "y_true", "y_pred")
SPAN_COLUMNS = ("timestamp", "close", "y_true", "y_persistence")

#: Text form of the floats in every CSV: 10 significant digits, as ``predictions.csv`` always had.
FLOAT_FORMAT = "%.10g"

#: What to do about a damaged trial file / span file.
TRIAL_HINT = "restore or remove that trial folder"
SPAN_HINT = "restore the run folder's test_span/ (it is written when the sweep starts)"

#: Bytes an ``.npy`` header may take beyond the data (numpy writes 128 for a 1-D array).
_NPY_HEADER = 4096
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.csv")


class PredictionsMeta(Record):
    """``predictions.json`` of a checkpoint."""

    format: Literal[1]
    span: Annotated[str, Field(pattern="^" + _SAFE_NAME.pattern + "$", max_length=200)]  # a file name, no path
    first: str
    rows: Annotated[int, Field(ge=1)]


def span_file(group: str) -> str:
    """The span file of a dataset key: ``BTC-USDT/1h`` → ``BTC-USDT_1h.csv``, ``…#fold0`` → ``…_fold0.csv``.

    Only ``[A-Za-z0-9._-]`` survive: the name goes into URIs (``#`` would start a fragment)
    and is checked against the same pattern when read back.
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", group.replace("#", "_")) + ".csv"


def _iso(ns: np.ndarray) -> np.ndarray:
    """ISO text (``2024-01-01T00:00:00Z``) of int64 ns UTC open times, as an object array."""
    return np.asarray(pd.to_datetime(ns, utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"), dtype=object)


def span_csv(data: Prepared) -> str:
    """The text of a group's span file: the test rows every trial of the group shares."""
    idx = data.test_idx
    return pd.DataFrame({
        # The candle the forecast is made from (its open time; the forecast uses its close).
        "timestamp": _iso(data.timestamps[idx]),
        "close": data.close[idx],
        "y_true": data.y[idx],
        "y_persistence": data.persistence[idx],
    }).to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def write_predictions(out: Path, data: Prepared, *, group: str, test_pred: np.ndarray) -> None:
    """Write a checkpoint's compact predictions (``predictions.npy`` + ``predictions.json``).

    Args:
        out: the checkpoint folder.
        data: the prepared arrays the trial was scored on (its ``test_idx`` are the rows).
        group: the trial's dataset key (``BTC-USDT/1h``; a confirmation fold's ``…#fold0``),
            which names the span file the driver wrote.
        test_pred: the forecasts, one per test sample, in target units.
    """
    pred = np.ascontiguousarray(test_pred, dtype="<f8")
    if pred.shape != (len(data.test_idx),):
        raise ValueError(f"test_pred has shape {pred.shape}; expected ({len(data.test_idx)},)")
    np.save(out / NPY, pred, allow_pickle=False)
    first = str(_iso(data.timestamps[data.test_idx[:1]])[0])
    (out / META).write_text(json.dumps({"format": 1, "span": span_file(group), "first": first,
                                        "rows": len(pred)}))


def predictions_csv(table: pd.DataFrame | dict[str, np.ndarray]) -> str:
    """The text of a full ``predictions.csv`` (the registry's human-readable copy)."""
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    return df[[c for c in COLUMNS if c in df]].to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def has_predictions(checkpoint: Path) -> bool:
    """True when the checkpoint holds predictions in either form (they may still be damaged)."""
    return any((checkpoint / n).exists() for n in (NPY, META, CSV))


def read_table(path: Path, *, required: tuple[str, ...], optional: tuple[str, ...] = (), hint: str = ""
               ) -> dict[str, np.ndarray]:
    """A CSV we wrote, as columns (``timestamp`` as text, the rest float64, all finite).

    A plain split rather than ``pandas.read_csv``: a 1,000-trial report of an old run reads
    1,000 of these, and pandas' per-call overhead was 2/3 of the report's time.

    Raises:
        RunError: one line naming the file and the line/column at fault.
    """
    text = decode(read_bytes(path, hint=hint), path=path, hint=hint)
    lines = text.split("\n")
    header = lines[0].strip().split(",") if lines and lines[0].strip() else []
    missing = [c for c in required if c not in header]
    if missing:
        raise RunError(f"{path}: header: missing column {', '.join(missing)}; got "
                       f"{excerpt(','.join(header))}" + (f"; {hint}" if hint else ""))
    want = [c for c in (*required, *optional) if c in header]
    pos = {c: header.index(c) for c in want}
    rows: list[list[str]] = []
    numbers: list[int] = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != len(header):
            raise RunError(f"{path}: line {i}: {len(cells)} fields, the header has {len(header)}"
                           + (f"; {hint}" if hint else ""))
        rows.append(cells)
        numbers.append(i)
    if not rows:
        raise RunError(f"{path}: no rows after the header" + (f"; {hint}" if hint else ""))
    out: dict[str, np.ndarray] = {}
    for name in want:
        col = [r[pos[name]].strip() for r in rows]
        if name == "timestamp":
            out[name] = np.array(col, dtype=object)
            continue
        try:
            values = np.array(col, dtype=np.float64)
        except ValueError:
            values = np.array([_float(v) for v in col])
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise RunError(f"{path}: line {numbers[bad[0]]}: {name}: expected a finite number; got "
                           f"{excerpt(col[bad[0]])}" + (f"; {hint}" if hint else ""))
        out[name] = values
    return out


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return float("nan")  # reported with its line by the caller


@dataclass
class Span:
    """A span file, read once and shared by every checkpoint that points at it."""

    columns: dict[str, np.ndarray]
    row: dict[str, int]


#: Span files already read, by path: pass one dict to every read of a report.
SpanCache = dict[Path, Span]


def _span(path: Path, cache: SpanCache | None) -> Span:
    key = path.resolve() if path.exists() else path
    if cache is not None and key in cache:
        return cache[key]
    cols = read_table(path, required=SPAN_COLUMNS, hint=SPAN_HINT)
    ts = cols["timestamp"]
    row = {str(t): i for i, t in enumerate(ts)}
    if len(row) != len(ts):
        raise RunError(f"{path}: repeats a timestamp; {SPAN_HINT}")
    span = Span(cols, row)
    if cache is not None:
        cache[key] = span
    return span


def _load_npy(path: Path, rows: int) -> np.ndarray:
    raw = read_bytes(path, limit=_NPY_HEADER + 8 * rows, hint=TRIAL_HINT)
    fail = f"{path}: not a float64 .npy array of {rows:,} forecasts"
    try:
        arr = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except ValueError as e:  # a pickle, a truncated file, a damaged header: numpy says which
        why = str(e).splitlines()[0] if str(e) else "damaged"
        if "pickle" in why.lower() or "object arrays" in why.lower():
            why = "it holds pickled objects, which are never loaded"
        raise RunError(f"{fail} ({excerpt(why, 80, plain=True)}); {TRIAL_HINT}") from None
    except Exception as e:  # numpy's header parser lets tokenize's TokenError out on a junk header
        raise RunError(f"{fail} ({type(e).__name__}); {TRIAL_HINT}") from None
    if arr.dtype.kind != "f" or arr.dtype.itemsize != 8:
        raise RunError(f"{fail}: dtype {arr.dtype.str}; expected float64 ('<f8'); {TRIAL_HINT}")
    if arr.ndim != 1 or len(arr) != rows:
        raise RunError(f"{fail}: shape {arr.shape}; predictions.json says rows {rows}; {TRIAL_HINT}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise RunError(f"{path}: forecast {bad[0]}: expected a finite number; got {float(arr[bad[0]])}; {TRIAL_HINT}")
    return arr.astype(np.float64, copy=False)


def read_prediction_columns(checkpoint: Path, *, cache: SpanCache | None = None) -> dict[str, np.ndarray]:
    """The test-span table of a checkpoint as columns (see :func:`read_predictions`): finite
    numbers, no timestamp twice.

    When the forecasts cover their whole span file, the shared columns are the cached
    arrays themselves (the same objects for every trial of the group), so callers can
    compare them by identity.
    """
    meta_file = checkpoint / META
    if not meta_file.exists() and not (checkpoint / NPY).exists():
        if (checkpoint / CSV).exists():  # a checkpoint written before the compact form
            cols = read_table(checkpoint / CSV, required=REQUIRED, optional=("close", "y_persistence"),
                              hint=TRIAL_HINT)
            if len(set(cols["timestamp"])) != len(cols["timestamp"]):  # span files are checked in _span
                raise RunError(f"{checkpoint / CSV}: repeats a timestamp; {TRIAL_HINT}")
            return {c: cols[c] for c in COLUMNS if c in cols}
        raise RunError(f"{checkpoint}: no test predictions ({NPY} or {CSV}); {TRIAL_HINT}")
    meta: dict[str, Any] = read_json(meta_file, PredictionsMeta, hint=TRIAL_HINT)
    span_path = checkpoint.parent.parent / SPAN_DIR / meta["span"]
    span = _span(span_path, cache)
    named = f"{SPAN_DIR}/{meta['span']}"  # the file's own errors name its full path; here keep the line short
    start, rows = span.row.get(meta["first"]), int(meta["rows"])
    n = len(span.columns["timestamp"])
    if start is None:
        raise RunError(f"{meta_file}: first: {excerpt(meta['first'])} is not a timestamp of {named}; {TRIAL_HINT}")
    if start + rows > n:
        raise RunError(f"{meta_file}: rows: {rows} from {meta['first']} run past the end of {named} ({n} rows); "
                       f"{TRIAL_HINT}")
    pred = _load_npy(checkpoint / NPY, rows)
    whole = start == 0 and rows == n
    part = {c: (v if whole else v[start:start + rows]) for c, v in span.columns.items()}
    return {"timestamp": part["timestamp"], "close": part["close"], "y_true": part["y_true"], "y_pred": pred,
            "y_persistence": part["y_persistence"]}


def read_predictions(checkpoint: Path, *, cache: SpanCache | None = None) -> pd.DataFrame:
    """A checkpoint's test-span predictions, from the compact form or an old ``predictions.csv``.

    Args:
        checkpoint: the trial's checkpoint folder.
        cache: span files already read (pass one dict when reading many checkpoints).

    Returns:
        ``timestamp`` (ISO text, the candle the forecast is made from), ``close``,
        ``y_true``, ``y_pred``, ``y_persistence`` (an old CSV may lack ``close`` and
        ``y_persistence``), one row per test sample, all numbers finite.

    Raises:
        RunError: one line naming the damaged or missing file.
    """
    return pd.DataFrame(read_prediction_columns(checkpoint, cache=cache))


__all__ = ["COLUMNS", "CSV", "META", "NPY", "SPAN_DIR", "PredictionsMeta", "SpanCache", "has_predictions",
           "predictions_csv", "read_prediction_columns", "read_predictions", "read_table", "span_csv", "span_file",
           "write_predictions"]

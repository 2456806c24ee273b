"""The one reading layer for the files tunefactory reads back (run folders, registries, states).

Every file the project wrote and reads again (``groups.json``, ``params.json``,
``result.json``, ``metrics.json``, ``scaler.json``, ``config.yaml``, Tune's experiment
state, the searcher's state, ...) goes through these functions, so a file that is
truncated, of the wrong type or shape, too big or not UTF-8 becomes **one line** naming
the file, the line (and column) or the dotted key, and what was expected, raised as a
:class:`~trainables.errors.TunefactoryError` (exit 2), never a traceback.

Rules every message keeps:

- positions are exact: lines count every newline, blank lines included; columns count
  characters of that line from 1 (bytes, for text that is not UTF-8);
- a quoted value is cut to a short excerpt (:func:`excerpt`), so a huge cell or a file
  that is one long line cannot make a "one-line" error of megabytes;
- a file bigger than :data:`MAX_BYTES` (or a gzip member that expands past it) is refused
  before it is parsed, by its size alone.

Shapes are pydantic models kept beside the code that owns each file
(``trainables/run_files.py`` for the trial and group files, ``reports/registry/winners.py``
for the registry, ...). The readers validate and return the parsed data itself (plain
dicts and lists), so the code that used ``json.loads`` keeps working on the same values,
now known to have the shape its model states.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from trainables.errors import RunError, TunefactoryError

#: Largest file (or decompressed gzip stream) the layer reads: a run folder's biggest file
#: is a 1,000-trial leaderboard of a few MB, the largest candle file ~40 MB; anything past
#: this is not one of ours, and reading it whole could exhaust memory.
MAX_BYTES = 256 * 2**20

#: Characters of a quoted value a message may show.
EXCERPT = 60

ErrorType = type[TunefactoryError]


class Record(BaseModel):
    """Base of the models of our files: keys the model does not name are kept (and ignored).

    Strict types: ``"8"`` is not a lookback and ``true`` is not a count; an ``int`` is
    still accepted where a ``float`` is expected (JSON writes 1.0 as 1 sometimes).
    """

    model_config = ConfigDict(extra="allow", strict=True)


def excerpt(value: Any, limit: int = EXCERPT, *, plain: bool = False) -> str:
    """``repr``-like text of ``value``, at most ``limit`` characters plus how much was cut.

    Examples: ``'abc'``, ``[1, 2]``, ``'aaaaaaaa… (500,000,000 chars)``; with ``plain``, a
    string is shown as is (no quotes), still cut.
    """
    if plain and isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… ({len(value):,} chars)"
    if isinstance(value, (str, bytes, bytearray)):
        n, unit = len(value), "chars" if isinstance(value, str) else "bytes"
        text = repr(value[: limit + 1] if isinstance(value, str) else bytes(value[: limit + 1]))
    else:
        try:
            text = json.dumps(value, default=str, allow_nan=True)
        except (TypeError, ValueError, RecursionError):
            text = object.__repr__(value)
        n, unit = len(text), "chars"
    # A repr may be longer than its value (escapes): bound the text shown, not the value.
    if n <= limit and len(text) <= limit + 2:
        return text
    return f"{text[:limit]}… ({n:,} {unit})"


def _fail(error: ErrorType, path: Path, what: str, hint: str) -> TunefactoryError:
    return error(f"{path}: {what}" + (f"; {hint}" if hint else ""))


def read_bytes(path: Path | str, *, limit: int = MAX_BYTES, error: ErrorType = RunError, hint: str = "",
               decompress: bool | None = None) -> bytes:
    """The bytes of ``path`` (gunzipped when it ends in ``.gz``), refused past ``limit``.

    Args:
        path: the file.
        limit: largest size accepted, on disk and after decompression.
        error: the error class to raise (``DataError`` for data files).
        hint: what to do about it, appended to every message.
        decompress: gunzip (default: when the name ends in ``.gz``).

    Raises:
        TunefactoryError: missing, a folder, unreadable, too big, or a broken gzip stream.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise _fail(error, path, "file not found", hint)
        if not path.is_file():
            raise _fail(error, path, "is a folder, not a file" if path.is_dir() else "not a regular file", hint)
        size = path.stat().st_size
        if size > limit:
            raise _fail(error, path, f"{size:,} bytes; files over {limit:,} bytes are refused", hint)
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as e:
        raise _fail(error, path, f"cannot be read ({e.strerror or e.__class__.__name__})", hint) from None
    if decompress if decompress is not None else path.name.endswith(".gz"):
        raw = gunzip(raw, path=path, limit=limit, error=error, hint=hint)
    return raw


_CHUNK = 1 << 20


def inflate(raw: bytes, *, limit: int) -> tuple[bytes, str | None]:
    """Decompress every gzip member of ``raw`` in chunks, stopping once the output passes ``limit``.

    The one decompression loop (``read_bytes`` and the data-table reader word their own
    errors from its result): a gzip bomb (a few hundred KB that expand to GBs) stops after
    ``limit`` bytes of output, not after all of them.

    Returns:
        ``(output so far, problem)``: ``problem`` is None for a whole stream, ``"limit"``,
        ``"truncated"`` (it ends inside a member) or ``"corrupt: <zlib's reason>"``.
    """
    out: list[bytes] = []
    total = 0
    data = raw
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one gzip member (files may hold several)
        try:
            while True:
                chunk = d.decompress(data, _CHUNK)
                total += len(chunk)
                if total > limit:
                    return b"".join(out), "limit"
                out.append(chunk)
                data = d.unconsumed_tail
                # A full chunk may leave output pending even when all input was consumed.
                if d.eof or (not data and len(chunk) < _CHUNK):
                    break
        except zlib.error as e:
            return b"".join(out), f"corrupt: {e}"
        if not d.eof:
            return b"".join(out), "truncated"
        # Like the gzip module: more members may follow; trailing zero padding is ignored.
        data = d.unused_data.lstrip(b"\x00")
    return b"".join(out), None


def gunzip(raw: bytes, *, path: Path, limit: int = MAX_BYTES, error: ErrorType = RunError, hint: str = "") -> bytes:
    """:func:`inflate`, with a broken or oversized stream refused in one line."""
    out, problem = inflate(raw, limit=limit)
    if problem == "limit":
        raise _fail(error, path, f"expands to more than {limit:,} bytes when decompressed; refused", hint)
    if problem == "truncated":
        raise _fail(error, path, "gzip stream is truncated or corrupt (it ends inside a member)", hint)
    if problem is not None:
        raise _fail(error, path, f"gzip stream is truncated or corrupt ({problem.removeprefix('corrupt: ')})", hint)
    return out


def position(raw: bytes | str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of ``offset`` in ``raw``; every newline counts, blank lines too.

    For bytes the column counts bytes; for text, characters.
    """
    nl = b"\n" if isinstance(raw, bytes) else "\n"
    line = raw.count(nl, 0, offset) + 1  # type: ignore[arg-type]
    start = raw.rfind(nl, 0, offset) + 1  # type: ignore[arg-type]
    return line, offset - start + 1


def decode(raw: bytes, *, path: Path, error: ErrorType = RunError, hint: str = "") -> str:
    """Strict UTF-8 text of ``raw``; a bad byte is named by its exact line and byte column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = position(raw, e.start)
        raise _fail(error, path, f"line {line}, byte {col}: not UTF-8 (byte 0x{raw[e.start]:02x})",
                    hint or "save the file as UTF-8") from None


def read_text(path: Path | str, *, limit: int = MAX_BYTES, error: ErrorType = RunError, hint: str = "") -> str:
    """Strict UTF-8 text of a file (gunzipped for ``.gz``), size-capped; see :func:`read_bytes`."""
    path = Path(path)
    return decode(read_bytes(path, limit=limit, error=error, hint=hint), path=path, error=error, hint=hint)


def dotted(loc: Sequence[int | str]) -> str:
    """``("groups", "BTC-USDT/1d", "spans", 0)`` → ``groups.BTC-USDT/1d.spans[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _expected(err: Any) -> str:
    ctx = err.get("ctx") or {}
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
              "less_than": ("<", "lt")}
    if err.get("type") in bounds:
        op, key = bounds[err["type"]]
        return f"must be {op} {ctx.get(key)}"
    if err.get("type") in ("too_short", "too_long"):
        n = ctx.get("min_length") if err["type"] == "too_short" else ctx.get("max_length")
        return f"expected {'at least' if err['type'] == 'too_short' else 'at most'} {n} item{'s' if n != 1 else ''}"
    msg = str(err.get("msg", "invalid"))
    # pydantic says "Input should be a valid integer": say what is expected, lower-case.
    msg = msg.removeprefix("Input should be ").removeprefix("Value error, ")
    if err.get("type") == "missing":
        return "missing (required)"
    if err.get("type") == "extra_forbidden":
        return "not an allowed key"
    if err.get("type") in ("model_type", "dict_type", "model_attributes_type"):
        return "expected a mapping"
    return "expected " + msg if not msg.startswith(("expected", "must", "not ")) else msg


def check(data: Any, model: type[BaseModel] | Any, *, path: Path | str, where: str = "", error: ErrorType = RunError,
          hint: str = "") -> Any:
    """Validate parsed ``data`` against ``model`` (a pydantic model or a type); return ``data``.

    Args:
        data: what the file held (dicts, lists, scalars).
        model: a :class:`Record` subclass, or any type a ``TypeAdapter`` takes
            (``list[ResultRow]``, ``dict[str, Group]``).
        path: the file, for the message.
        where: a prefix for the key (``line 3`` for JSON lines).
        error: the error class raised.
        hint: what to do about it.

    Raises:
        TunefactoryError: one line ``FILE: [where: ]key: expected ...; got EXCERPT``
        (plus how many more problems there are).
    """
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            model.model_validate(data)
        else:
            TypeAdapter(model).validate_python(data)
    except ValidationError as e:
        errs = e.errors(include_url=False)
        first = errs[0]
        key = dotted(first.get("loc", ()))
        got = "" if first.get("type") == "missing" else f"; got {excerpt(first.get('input'))}"
        more = f" ({len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
        head = f"{where}: " if where else ""
        raise _fail(error, Path(path), f"{head}{key}: {_expected(first)}{got}{more}", hint) from None
    return data


def _json_error(e: json.JSONDecodeError) -> str:
    # JSONDecodeError counts lines by "\n" in the text it was given (blank lines included)
    # and columns in characters: exact for the file's text.
    return f"line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})"


def parse_json(text: str, *, path: Path, error: ErrorType = RunError, hint: str = "", line: int | None = None) -> Any:
    """``json.loads`` with one-line errors; ``line`` names the line of a JSON-lines file."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = (f"line {line}, column {e.colno}: not valid JSON ({e.msg})" if line is not None
                 else _json_error(e))
        raise _fail(error, path, where, hint) from None
    except (RecursionError, ValueError) as e:  # nesting thousands deep; an integer of 5,000 digits
        at = f"line {line}: " if line is not None else ""
        raise _fail(error, path, f"{at}JSON cannot be read ({excerpt(str(e).splitlines()[0] if str(e) else e.__class__.__name__, 80)})", hint) from None


def read_json(path: Path | str, model: Any = None, *, limit: int = MAX_BYTES, error: ErrorType = RunError,
              hint: str = "") -> Any:
    """Read one JSON document, validate it against ``model`` (optional); return the parsed data."""
    path = Path(path)
    data = parse_json(read_text(path, limit=limit, error=error, hint=hint), path=path, error=error, hint=hint)
    return data if model is None else check(data, model, path=path, error=error, hint=hint)


def read_jsonl(path: Path | str, model: Any = None, *, limit: int = MAX_BYTES, error: ErrorType = RunError,
               hint: str = "", torn_tail: bool = False) -> list[Any]:
    """Read a JSON-lines file: one document per non-blank line, each validated against ``model``.

    Args:
        torn_tail: skip a last line that does not parse and has no newline after it (a
            writer, e.g. Ray appending ``result.json``, may be in the middle of it).

    Raises:
        TunefactoryError: naming the exact line (blank lines counted).
    """
    path = Path(path)
    text = read_text(path, limit=limit, error=error, hint=hint)
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last = i == len(lines)  # no newline after it
        try:
            row = parse_json(line, path=path, error=error, hint=hint, line=i)
        except TunefactoryError:
            if torn_tail and last:
                break
            raise
        if model is not None:
            check(row, model, path=path, where=f"line {i}", error=error, hint=hint)
        rows.append(row)
    return rows


def parse_yaml(text: str, *, path: Path, error: ErrorType = RunError, hint: str = "",
               loader: Callable[[str], Any] = yaml.safe_load) -> Any:
    """YAML (safe loader only) with one-line errors naming the line and column."""
    try:
        return loader(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = excerpt(str(e.problem or e.context or "invalid"), 80).strip("'\"")
        raise _fail(error, path, f"{at}not valid YAML ({problem})", hint) from None
    except yaml.YAMLError as e:
        raise _fail(error, path, f"not valid YAML ({excerpt(str(e).splitlines()[0], 80)})", hint) from None
    except RecursionError:
        raise _fail(error, path, "YAML nested too deeply", hint) from None
    except (ValueError, OverflowError) as e:
        raise _fail(error, path, f"YAML value cannot be read ({excerpt(str(e).splitlines()[0], 80)})", hint) from None


def read_yaml(path: Path | str, model: Any = None, *, limit: int = MAX_BYTES, error: ErrorType = RunError,
              hint: str = "") -> Any:
    """Read one YAML document (safe loader), validate it against ``model`` (optional)."""
    path = Path(path)
    data = parse_yaml(read_text(path, limit=limit, error=error, hint=hint), path=path, error=error, hint=hint)
    return data if model is None else check(data, model, path=path, error=error, hint=hint)


def read_csv(path: Path | str, *, columns: dict[str, str], optional: dict[str, str] | None = None,
             limit: int = MAX_BYTES, error: ErrorType = RunError, hint: str = "") -> Any:
    """Read a CSV we wrote (``predictions.csv``, ``confirm/*.csv``) and check its columns.

    Args:
        columns: required column → kind: ``float`` (a number, NaN allowed only as the
            literal ``nan``), ``time`` (an ISO-8601 date-time) or ``text``.

    Returns:
        The ``pandas.DataFrame`` (the checked columns typed: float64, UTC timestamps).

    Raises:
        TunefactoryError: naming the file, and the exact line (blank lines counted) and
        column of the first bad cell, or the missing column.
    """
    import io

    import pandas as pd

    path = Path(path)
    text = read_text(path, limit=limit, error=error, hint=hint)
    try:
        # Blank lines stay rows, so a row's line is its index + 2 (the header is line 1).
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise _fail(error, path, f"file is empty; expected the columns {', '.join(columns)}", hint) from None
    except (pd.errors.ParserError, ValueError) as e:
        raise _fail(error, path, f"not a valid CSV ({excerpt(str(e).splitlines()[0], 100)})", hint) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise _fail(error, path, f"header: missing column {', '.join(missing)}; got "
                    f"{excerpt(','.join(map(str, df.columns)))}", hint)
    present = {**columns, **{k: v for k, v in (optional or {}).items() if k in df.columns}}
    for name, kind in present.items():
        raw = df[name]
        if kind == "float":
            typed = pd.to_numeric(raw.str.strip(), errors="coerce").astype("float64")
            bad = typed.isna() & (raw.str.strip().str.lower() != "nan")
            what = "a number"
        elif kind == "time":
            typed = pd.to_datetime(raw.str.strip(), utc=True, errors="coerce", format="ISO8601")
            bad = typed.isna()
            what = "an ISO-8601 date-time"
        else:
            continue
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise _fail(error, path, f"line {i + 2}: {name}: expected {what}; got {excerpt(raw.iloc[i])}", hint)
        df[name] = typed
    return df


def finite(value: float) -> float:
    """A validator body: refuse NaN and infinities (``float('nan')`` passes a ``float`` type)."""
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


__all__ = ["MAX_BYTES", "Record", "check", "decode", "dotted", "excerpt", "finite", "gunzip", "inflate",
           "parse_json", "parse_yaml", "position", "read_bytes", "read_csv", "read_json", "read_jsonl", "read_text",
           "read_yaml"]

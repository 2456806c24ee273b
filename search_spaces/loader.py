"""Read a spec file: YAML (safe loader only), ``base:`` inheritance, ``--set`` overrides, schema.

Every problem becomes a :class:`SpecError` whose message has one line per error::

    search_spaces/x.yaml: training.learning_rate: low must be < high; got low=0.1, high=0.01

Composition: a spec may start with ``base: other.yaml`` (relative to the spec's folder);
the base is loaded first (recursively) and the spec is deep-merged over it: mappings
merge key by key; lists, scalars and new distributions (``{type: ...}``) replace.
``--set a.b=value`` overrides are applied last; values are parsed as YAML.
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from search_spaces.distributions import did_you_mean, fmt_value
from search_spaces.schema import Spec
from trainables.errors import TunefactoryError
from trainables.features.table_indicators import register_funding_indicators, register_metric_table
from trainables.records import read_text

#: A spec is a few KB; the largest preset is under 20 KB.
SPEC_MAX_BYTES = 4 * 2**20


class SpecFileError(TunefactoryError):
    """A spec file that cannot be read as text (raised by the reading layer, re-raised as a SpecError)."""


class SpecError(TunefactoryError):
    """The spec is invalid; ``str(err)`` lists one ``FILE: key: rule; got VALUE`` per line."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with the merged raw mapping it came from (for ``spec.yaml`` in runs)."""

    spec: Spec
    raw: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``over`` wins.

    Mappings merge key by key (so ``{values: [4, 8]}`` over a ``choice`` changes only its
    values); lists, scalars and mappings with a ``type`` (a whole new distribution) replace.
    """
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and "type" not in v:
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` keys may be overridden; only literal repeats are mistakes
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        except TypeError:
            pass  # unhashable key: construct_mapping below reports it
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that also rejects duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: as safe as safe_load


def _read_yaml(path: Path, *, own: bool = True) -> dict[str, Any]:
    """The mapping of one spec file.

    Args:
        own: the file the user named; ``False`` for a ``base:`` it points to, which may be
            any file on the machine (``base: /etc/passwd``): its content is never quoted.
    """
    try:
        if not path.is_file():
            what = "is a folder, not a spec file" if path.is_dir() else "file not found"
            raise SpecError([f"{path}: {what}"])
        # The reading layer: a size cap, and a non-UTF-8 byte named by its exact line and column.
        text = read_text(path, limit=SPEC_MAX_BYTES, error=SpecFileError)
    except SpecFileError as e:
        raise SpecError([str(e)]) from None
    except (OSError, ValueError) as e:
        raise SpecError([f"{path}: cannot be read ({getattr(e, 'strerror', None) or e})"]) from None
    try:
        data = parse_yaml(text)
    except RecursionError:
        raise SpecError([f"{path}: YAML nested too deeply"]) from None
    except (ValueError, OverflowError) as e:  # e.g. an integer literal of thousands of digits
        raise SpecError([f"{path}: YAML value cannot be read: {str(e).splitlines()[0]}"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        got = ""
        if mark is not None and own:
            lines = text.splitlines()
            if 0 <= mark.line < len(lines) and lines[mark.line].strip():
                got = f"; got {fmt_value(lines[mark.line].strip())}"
        raise SpecError([f"{path}: {where}YAML syntax error: {problem}{got}"]) from None
    if data is None:
        raise SpecError([f"{path}: file is empty; a spec needs at least data, features and model sections"])
    if not isinstance(data, dict):
        got = f"got {fmt_value(data)}" if own else f"got a {type(data).__name__}"
        raise SpecError([f"{path}: top level must be a mapping of sections (data, features, model, ...); {got}"])
    return data


def _resolve_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    data = _read_yaml(path, own=not seen)
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base.strip() or "\x00" in base:
        raise SpecError([f"{path}: base: must be the path of another spec file; got {fmt_value(base)}"])
    here = path.resolve()
    base_path = (here.parent / base).resolve()
    chain = (*seen, here)
    if base_path in chain:
        names = " -> ".join(p.name for p in (*chain[chain.index(base_path):], base_path))
        raise SpecError([f"{path}: base: forms a cycle ({names}); remove one of the base: links; got {base!r}"])
    if not base_path.is_file():
        raise SpecError([f"{path}: base: file not found (looked for {base_path}); got {base!r}"])
    return deep_merge(_resolve_bases(base_path, chain), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` → (["a", "b"], yaml-parsed value)."""
    if "=" not in text:
        raise SpecError([f"--set {text}: expected KEY=VALUE, e.g. --set search.num_samples=4"])
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not p.strip() for p in key.split(".")):
        raise SpecError([f"--set {text}: bad key {key!r}; use dotted keys like training.max_epochs"])
    try:
        parsed = parse_yaml(value) if value.strip() else None
    except RecursionError:
        raise SpecError([f"--set {text}: value nested too deeply"]) from None
    except (ValueError, OverflowError) as e:
        raise SpecError([f"--set {text}: value cannot be read ({str(e).splitlines()[0]})"]) from None
    except yaml.YAMLError as e:
        raise SpecError([f"--set {text}: value is not valid YAML ({str(e).splitlines()[0]})"]) from None
    return [p.strip() for p in key.split(".")], parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides (values parsed as YAML, typed later by the schema)."""
    out = copy.deepcopy(raw)
    for o in overrides:
        keys, value = parse_override(o)
        if keys[0] == "base":
            raise SpecError([f"--set {o}: base: can only be set in the spec file"])
        node = out
        for i, k in enumerate(keys[:-1]):
            nxt = node.get(k)
            if nxt is None:
                nxt = {}
                node[k] = nxt
            if not isinstance(nxt, dict):
                where = ".".join(keys[: i + 1])
                raise SpecError([f"--set {o}: {where} is not a section, so it has no key {keys[i + 1]!r}; "
                                 f"got {fmt_value(nxt)}"])
            node = nxt
        node[keys[-1]] = value
    return out


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the schema model at ``loc`` (for did-you-mean on unknown keys)."""
    model: Any = Spec
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return []
        model = model.model_fields[part].annotation
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _key(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        if p == "[key]":  # pydantic's marker for "the key itself" (e.g. a number used as a key)
            continue
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _rule(e: dict[str, Any]) -> str:
    """A pydantic built-in error as a short rule."""
    typ, ctx, msg = e["type"], e.get("ctx") or {}, e["msg"]
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if typ in bounds:
        limit = next(iter(ctx.values()), "?")
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return f"must be {bounds[typ]} {fmt_value(limit)}"
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number"
    if typ in ("float_type", "float_parsing"):
        return "must be a number"
    if typ == "finite_number":
        return "must be a finite number"
    if typ in ("string_type", "string_unicode"):
        return "must be a string"
    if typ in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if typ == "list_type":
        return "must be a list"
    if typ in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping of keys to values"
    if typ == "invalid_key":
        return "keys must be strings"
    if typ == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"needs at least {ctx.get('min_length')} items"
    if typ.startswith("date") or typ.startswith("datetime"):
        return "must be a date like 2024-01-31"
    if typ == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(e.get("input"), options) if options else ""
        return f"must be one of {', '.join(options)}{hint}" if options else msg
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg[:1].lower() + msg[1:]


def format_errors(path: Path | str, err: ValidationError) -> list[str]:
    """Render a pydantic error as ``FILE: a.b.c: rule; got VALUE`` lines (duplicates dropped)."""
    lines: list[str] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        key = _key(loc)
        typ = e["type"]
        if typ == "extra_forbidden":
            parent, bad = loc[:-1], str(loc[-1])
            fields = _fields_at(parent)
            hint = did_you_mean(bad, fields)
            line = f"{key}: unknown key{hint}; allowed: {', '.join(fields)}; got {fmt_value(e.get('input'))}"
        elif typ == "missing":
            line = f"{key}: required key is missing"
        elif typ == "spec":  # our own rule, already ending in "; got VALUE" where there is one
            line = f"{key}: {e['msg']}" if key else e["msg"]
        else:
            rule = _rule(dict(e))
            got = "" if "; got " in rule else f"; got {fmt_value(e.get('input'))}"
            line = f"{key}: {rule}{got}" if key else f"{rule}{got}"
        line = f"{path}: {line}"
        if line not in lines:
            lines.append(line)
    return lines


def _register_metric_sources(raw: dict[str, Any]) -> None:
    """Register the metric-derived indicators a spec's data sources provide.

    Pool members such as ``funding_rate_change`` exist in the indicator registry only once
    their source is declared (``data.funding``, ``data.metrics``), so the pool can be
    validated against them. Missing or unreadable files are left to the schema's file
    checks, which name the key.
    """
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        return
    if data.get("funding"):
        register_funding_indicators()
    metrics, assets = data.get("metrics") or [], data.get("assets") or []
    if isinstance(metrics, list) and isinstance(assets, list):
        for m in metrics:
            for a in assets:
                if not isinstance(m, str) or not isinstance(a, str):
                    continue
                f = Path(m.replace("{asset}", a).replace("{base}", a.split("-")[0]))
                if f.is_file():
                    # A bad table is reported by the data checks, with the key that names it.
                    with contextlib.suppress(TunefactoryError):
                        register_metric_table(f)


def validate_raw(raw: dict[str, Any], path: Path | str, *, check_files: bool = True) -> Spec:
    """Validate an already merged spec mapping; ``path`` names it in messages.

    Args:
        raw: the spec mapping (after ``base:`` and ``--set``).
        path: what to call it in error lines.
        check_files: also check assets, timeframes, horizon and split against the candle files.

    Raises:
        SpecError: every problem found, one per line.
    """
    _register_metric_sources(raw)
    try:
        return Spec.model_validate(raw, context={"files": check_files})
    except ValidationError as e:
        raise SpecError(format_errors(path, e)) from None
    except RecursionError:
        raise SpecError([f"{path}: the spec is nested too deeply"]) from None


def load_spec(path: Path | str, overrides: list[str] | None = None) -> LoadedSpec:
    """Load, merge, override and validate a spec.

    Args:
        path: the YAML file.
        overrides: ``key=value`` strings (``--set``).

    Returns:
        A :class:`LoadedSpec`.

    Raises:
        SpecError: every problem found, one per line.
    """
    path = Path(path)
    raw = apply_overrides(_resolve_bases(path), overrides or [])
    spec = validate_raw(raw, path)
    return LoadedSpec(spec, raw, path)

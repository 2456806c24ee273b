"""Read a spec file: YAML (safe_load only), ``base:`` inheritance, ``--set`` overrides, schema.

Every problem becomes a :class:`SpecError` whose message has one line per error::

    search_spaces/x.yaml: training.learning_rate: low (0.1) must be < high (0.01)
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from search_spaces.schema import Spec
from trainables.errors import TunefactoryError


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
    """Recursive dict merge; ``over`` wins; lists and scalars are replaced, not concatenated."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and "type" not in v:
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpecError([f"{path}: file not found"])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError([f"{path}: not UTF-8 text at byte {e.start}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError([f"{path}: {where}YAML syntax error: {problem}"]) from None
    if data is None:
        raise SpecError([f"{path}: file is empty; a spec needs at least data, features and model sections"])
    if not isinstance(data, dict):
        raise SpecError([f"{path}: top level must be a mapping of sections; got {type(data).__name__}"])
    return data


def _resolve_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise SpecError([f"{seen[0]}: base: cycle {chain}; remove one of the base: links"])
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise SpecError([f"{path}: base: must be a file path; got {base!r}"])
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise SpecError([f"{path}: base: file {base} not found (looked for {base_path})"])
    return deep_merge(_resolve_bases(base_path, (*seen, path)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` → (["a", "b"], yaml-parsed value)."""
    if "=" not in text:
        raise SpecError([f"--set {text}: expected KEY=VALUE, e.g. --set search.num_samples=4"])
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise SpecError([f"--set {text}: bad key {key!r}; use dotted keys like training.max_epochs"])
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise SpecError([f"--set {text}: value is not valid YAML ({str(e).splitlines()[0]})"]) from None
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides (values parsed as YAML, typed later by the schema)."""
    out = copy.deepcopy(raw)
    for o in overrides:
        keys, value = parse_override(o)
        node = out
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = {}
                node[k] = nxt
            node = nxt
        node[keys[-1]] = value
    return out


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the schema model at ``loc`` (for did-you-mean on unknown keys)."""
    model: Any = Spec
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return []
        ann = model.model_fields[part].annotation
        model = ann
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _fmt_value(v: Any) -> str:
    s = repr(v) if isinstance(v, str) else str(v)
    return s if len(s) <= 80 else s[:77] + "..."


def format_errors(path: Path | str, err: ValidationError) -> list[str]:
    """Render a pydantic error as ``FILE: a.b.c: rule; got VALUE`` lines."""
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        msg = e["msg"]
        typ = e["type"]
        if typ == "extra_forbidden":
            parent, bad = loc[:-1], str(loc[-1])
            fields = _fields_at(parent)
            near = difflib.get_close_matches(bad, fields, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            lines.append(f"{path}: {key}: unknown key{hint} (allowed: {', '.join(fields)})")
            continue
        if typ == "missing":
            lines.append(f"{path}: {key}: required key is missing")
            continue
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        # Our validators already say "got ..." where it helps; add the input otherwise.
        if "got" not in msg and "input" in e:
            msg = f"{msg}; got {_fmt_value(e['input'])}"
        if key:
            lines.append(f"{path}: {key}: {msg}")
        else:
            lines.append(f"{path}: {msg}")
    return lines


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
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(format_errors(path, e)) from None
    from search_spaces.space import check_space

    problems = check_space(spec)
    if problems:
        raise SpecError([f"{path}: {p}" for p in problems])
    return LoadedSpec(spec, raw, path)

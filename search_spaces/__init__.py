"""The spec language: sweep specs (the YAML presets beside this package's modules) and their validation.

Map: :mod:`~search_spaces.distributions` (searchable values: parsing, Optuna suggestion,
grid values), :mod:`~search_spaces.schema` (the pydantic schema, one module per concern,
and the data inventory it checks specs against), :mod:`~search_spaces.loader` (YAML,
``base:`` inheritance, ``--set`` overrides, error lines), :mod:`~search_spaces.space`
(trial configs: define-by-run sampling, grid enumeration, trial counts),
:mod:`~search_spaces.summary` (what ``tunefactory validate`` and ``space`` print) and
:mod:`~search_spaces.recipes` (a spec's groups as the data pipeline's recipes). The public
surface re-exported here is what callers need to read a spec; it imports no TensorFlow or
Ray, so ``tunefactory validate`` stays fast.
"""

from __future__ import annotations

from search_spaces.loader import LoadedSpec, SpecError, load_spec
from search_spaces.schema import Spec

__all__ = ["LoadedSpec", "Spec", "SpecError", "load_spec"]

"""The trial config: what one trial trains, typed, with every default in one place.

Searchers (``search_spaces.space``) build these as plain dicts because Ray Tune stores a
trial's config as JSON (``params.json``) and passes it to the worker as a dict; the trial
turns it into a :class:`TrialConfig` first thing (:meth:`TrialConfig.from_dict`), so a
missing or misspelt key fails there, by name, instead of as a silent default deep in the
training code. The spec language (``search_spaces``) takes its training defaults from
:data:`DEFAULTS`, so they are written once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from trainables.errors import RunError

#: Searchable training settings, in the order they are sampled and enumerated.
TRAINING_KEYS: tuple[str, ...] = ("batch_size", "learning_rate", "weight_decay", "loss", "optimizer", "patience")

#: Keys a trial config may carry besides the fields: bookkeeping of the searchers
#: (``trial_number``) and of ``confirm`` (``index``), which the trial does not read.
BOOKKEEPING_KEYS: frozenset[str] = frozenset({"trial_number", "index"})


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """One trial: a model family and its hyperparameters, on one (asset, timeframe) group.

    Attributes:
        group: ``ASSET/TF``, the key of the prepared group the trial trains on.
        asset: the asset of ``group``.
        timeframe: the timeframe of ``group``.
        seed: the training seed (weights, shuffling, dropout).
        family: model family (a key of ``trainables.models.families.MODELS``).
        model: the family's hyperparameters.
        lookback: window length in candles.
        columns: feature columns, in the order the model sees them.
        indicators: the indicator subset the columns come from (pool member names).
        indicator_params: searched indicator parameters (``ind.rsi.period``: 14, ...).
        max_epochs: the epoch budget (ASHA's ``max_t`` too).
        patience: epochs without a better validation RMSE before stopping; 0 = never.
        batch_size: samples per gradient step.
        learning_rate: optimiser step size.
        weight_decay: decoupled weight decay, applied by every optimizer; 0 = none.
        loss: ``mse``, ``mae`` or ``huber``.
        optimizer: ``adam``, ``adamw``, ``sgd`` or ``rmsprop``.
        jit_compile: XLA-compile the train step.
        steps_per_execution: train steps per traced call (fewer Python round trips).
        threads: TensorFlow intra/inter-op threads (the CPUs the trial reserved).
    """

    group: str
    asset: str
    timeframe: str
    seed: int
    family: str
    lookback: int
    columns: tuple[str, ...]
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    indicators: tuple[str, ...] = ()
    indicator_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    max_epochs: int = 30
    # 3, not 5: replaying 400 measured daily-return learning curves (benchmarks/asha_replay.py,
    # 1,200 random orders of 12 sweeps), patience 3 ran 86 % of patience 5's epochs and ended on
    # the same best config in every replayed sweep; patience 2 lost it in 12 % (20-config sweeps).
    patience: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "mse"
    optimizer: str = "adam"
    jit_compile: bool = False
    steps_per_execution: int = 16
    threads: int = 1

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TrialConfig:
        """The typed config of a trial's config dict (as Ray Tune passes it).

        Raises:
            RunError: a required key is missing or a key is unknown.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names - BOOKKEEPING_KEYS)
        if unknown:
            raise RunError(f"trial config: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in config and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise RunError(f"trial config: missing key(s) {', '.join(missing)}")
        kw = {k: v for k, v in config.items() if k in names}
        for k in ("columns", "indicators"):
            if k in kw:
                kw[k] = tuple(str(c) for c in kw[k])
        for k in ("seed", "lookback", "max_epochs", "patience", "batch_size", "steps_per_execution", "threads"):
            if k in kw:
                kw[k] = int(kw[k])
        for k in ("learning_rate", "weight_decay"):
            if k in kw:
                kw[k] = float(kw[k])
        if "model" in kw:
            kw["model"] = dict(kw["model"] or {})
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples), as written to ``trial.json``."""
        out = dataclasses.asdict(self)
        out["columns"], out["indicators"] = list(self.columns), list(self.indicators)
        out["model"], out["indicator_params"] = dict(self.model), dict(self.indicator_params)
        return out


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(TrialConfig) if f.default is not dataclasses.MISSING}


#: Every field's default, for the spec language's training section.
DEFAULTS: Mapping[str, Any] = _defaults()

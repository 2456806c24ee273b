"""How trials train and how many run: the ``model``, ``training``, ``search``, ``scheduler`` and ``resources`` sections.

A model family's parameters are the ones it declares in
:data:`trainables.models.families.MODELS`, checked here (names, types, bounds, and the
cross-parameter rules the builders would otherwise enforce at trial time). The training
section's defaults are the trial's own (:data:`trainables.trial.config.DEFAULTS`), so a
spec that leaves a setting out trains exactly like a trial config without it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from search_spaces.distributions import Dist, DistError, check_dist, did_you_mean, fmt_value
from search_spaces.schema._base import Errors, Float, Int, Section, searchable
from trainables.models.families import MODELS, POS_ENCODINGS
from trainables.trial.config import DEFAULTS

#: Training losses a spec may name (``training.loss``).
LOSSES = ("mse", "mae", "huber")
#: Optimisers a spec may name (``training.optimizer``).
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def _family_space(fam: str, space: dict[Any, Any], err: Errors) -> dict[str, Dist]:
    params = MODELS[fam].params
    parsed: dict[str, Dist] = {}
    for k, pv in space.items():
        if k not in params:
            err.add((fam, str(k)), f"unknown parameter{did_you_mean(k, params)}; {fam} takes {', '.join(params)}",
                    pv)
            continue
        p = params[k]
        try:
            parsed[k] = check_dist(pv, kind=p.type, low=p.low, high=p.high)
        except DistError as e:
            err.add((fam, k), str(e))
    # Cross-parameter rules the builders enforce at trial time, checked here instead.
    if "heads" in params and "d_model" in params:
        heads = parsed.get("heads") or Dist("fixed", (params["heads"].default,))
        dm = parsed.get("d_model") or Dist("fixed", (params["d_model"].default,))
        hv, dv = heads.grid_values(10_000), dm.grid_values(10_000)
        if hv is not None and dv is not None and ("heads" in space or "d_model" in space):
            bad = sorted({h for h in hv for d in dv if d % h})
            if bad:
                key = "heads" if "heads" in space else "d_model"
                err.add((fam, key), f"heads must divide d_model (d_model: {dm.describe()}); heads that do not: "
                        f"{fmt_value(bad)}", space[key])
    if "pos_encoding" in parsed:
        kinds = POS_ENCODINGS
        for v in parsed["pos_encoding"].values:
            if v not in kinds:
                err.add((fam, "pos_encoding"), f"must be one of {', '.join(kinds)}{did_you_mean(v, kinds)}", v)
    return parsed


class ModelSection(Section):
    """Model families and their parameter spaces: ``families: {lstm: {units: ...}, mlp: {...}}``.

    A family's parameters are the ones it declares in ``trainables.models.families.MODELS``, so a
    conditional parameter (e.g. ``heads``) exists only for the families that have it.
    """

    families: dict[str, dict[str, Any]] = Field(min_length=1)

    @field_validator("families", mode="before")
    @classmethod
    def _families(cls, v: Any) -> dict[str, dict[str, Dist]]:
        if not isinstance(v, dict) or not v:
            raise PydanticCustomError("spec", "must map family names to parameter spaces, e.g. {lstm: {units: 32}}; "
                                      f"allowed families: {', '.join(MODELS)}; got {fmt_value(v)}")
        err = Errors()
        out: dict[str, dict[str, Dist]] = {}
        for fam, space in v.items():
            if not isinstance(fam, str) or fam not in MODELS:
                err.add((str(fam),), f"unknown model family{did_you_mean(fam, MODELS)}; allowed: {', '.join(MODELS)}",
                        fam)
                continue
            space = {} if space is None else space
            if not isinstance(space, dict):
                err.add((fam,), "must be a mapping of parameters (or empty for the defaults)", space)
                continue
            out[fam] = _family_space(fam, space, err)
        err.raise_if_any()
        return out


class TrainingSection(Section):
    """Optimisation: the epoch budget, plus searchable patience, batch size, lr, loss, optimiser.

    ``max_epochs`` is fixed: it is every trial's budget (and ASHA's ``max_t``).
    ``patience`` 0 means no early stopping.
    """

    max_epochs: Int = Field(default=DEFAULTS["max_epochs"], ge=1, le=100_000)
    patience: Any = DEFAULTS["patience"]
    batch_size: Any = DEFAULTS["batch_size"]
    learning_rate: Any = DEFAULTS["learning_rate"]
    weight_decay: Any = DEFAULTS["weight_decay"]
    loss: Any = DEFAULTS["loss"]
    optimizer: Any = DEFAULTS["optimizer"]
    jit_compile: bool = DEFAULTS["jit_compile"]
    steps_per_execution: Int = Field(default=DEFAULTS["steps_per_execution"], ge=1, le=100_000)

    @field_validator("patience", mode="before")
    @classmethod
    def _pat(cls, v: Any) -> Dist:
        return searchable(v, kind=int, low=0, high=100_000)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _bs(cls, v: Any) -> Dist:
        return searchable(v, kind=int, low=1, high=1 << 16)

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _lr(cls, v: Any) -> Dist:
        return searchable(v, kind=float, low=1e-12, high=10.0)

    @field_validator("weight_decay", mode="before")
    @classmethod
    def _wd(cls, v: Any) -> Dist:
        return searchable(v, kind=float, low=0.0, high=1.0)

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, v: Any) -> Dist:
        return searchable(v, kind=str, allowed=LOSSES)

    @field_validator("optimizer", mode="before")
    @classmethod
    def _opt(cls, v: Any) -> Dist:
        return searchable(v, kind=str, allowed=OPTIMIZERS)


class SearchSection(Section):
    """Search algorithm and budget. ``num_samples`` is per (asset, timeframe).

    Under ``grid`` it caps the grid (a seeded random subset of the points); without it
    the whole grid runs. ``points_to_evaluate`` are Optuna parameter dicts tried first
    (``family``, ``lookback``, ``lstm.units``, ``ind.rsi: true``, ``ind.size``, ...); a
    point without ``ind.size`` gets the smallest size that holds its switched-on members.
    """

    algorithm: Literal["optuna-tpe", "random", "grid"] = "optuna-tpe"
    num_samples: Int | None = Field(default=None, ge=1, le=10_000_000)
    seed: Int = Field(default=0, ge=0, le=1_000_000)
    max_concurrent: Int | None = Field(default=None, ge=1)
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    n_startup_trials: Int = Field(default=5, ge=0)
    #: Give every model family the same number of trials (round-robin by trial number) and
    #: let TPE search within each. Measured on 4 daily groups x 3 seeds x 60 configs
    #: (benchmarks/time_to_quality.py): without it TPE put 54-58 of 60 trials into one
    #: family in 10 of 12 cases, chosen from its first few noisy scores, and its final best
    #: missed random search's best +0.2 % in 5 of 12 cases (2 of 12 with it). A leaderboard
    #: that compares families needs every family tried, too.
    balance_families: bool = True


class SchedulerSection(Section):
    """Early stopping across trials: ASHA on the scale-free ``val_ratio_best``, or none.

    ``max_t`` (epochs; default ``training.max_epochs``) is where ASHA's rungs end and every
    trial stops; ``grace_period`` epochs run before a trial can be stopped; each rung keeps
    ``1 / reduction_factor`` of the trials.
    """

    kind: Literal["asha", "none"] = "asha"
    max_t: Int | None = Field(default=None, ge=1)
    # Grace 3, reduction 2: on 400 measured daily-return learning curves replayed as Ray's ASHA
    # decides (benchmarks/asha_replay.py) this spent 50 % of the epochs of no ASHA and ended
    # +0.01 % from its best; reduction 3 saved 5 points more and lost 0.04 %, grace 2 lost 0.07 %.
    grace_period: Int = Field(default=3, ge=1)
    reduction_factor: Float = Field(default=2.0, gt=1, le=1000)


class ResourcesSection(Section):
    """Per-trial resources; fractional GPUs (e.g. 0.125) pack several trials onto one GPU."""

    cpus: Float = Field(default=1.0, gt=0, le=1024)
    gpus: Float = Field(default=0.0, ge=0, le=64)
    max_failures: Int = Field(default=1, ge=0)

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise PydanticCustomError("spec_rule", "a GPU request above 1 must be a whole number of GPUs")
        return v

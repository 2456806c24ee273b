"""Shapes of the run-folder files a sweep writes and the reports, export and forecast read back.

One pydantic model per file (:class:`trainables.records.Record`: strict types, unknown
keys kept). Only the keys the readers rely on are named; a file that lacks one or holds
the wrong type there is refused in one line by :mod:`trainables.records`, naming the
dotted key. The writers are ``cluster.sweep`` (``groups.json``), Ray Tune
(``params.json``, ``result.json``) and ``trainables.trial`` (``scaler.json``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from trainables.records import Record, finite

Finite = Annotated[float, AfterValidator(finite)]
Span = Annotated[list[str], Field(min_length=2, max_length=2)]


class Spans(Record):
    """The chronological train/validation/test spans, ISO open times ``[first, last]``."""

    train: Span
    val: Span
    test: Span


class Group(Record):
    """One asset/timeframe of ``groups.json``."""

    asset: str
    timeframe: str
    target: str
    horizon: Annotated[int, Field(ge=1)]
    samples: dict[str, Annotated[int, Field(ge=0)]]
    spans: Spans
    persistence_rmse: dict[str, float | None]
    max_lookback: Annotated[int, Field(ge=1)] | None = None


class GroupsFile(Record):
    """``RUN_DIR/groups.json``."""

    groups: dict[str, Group]
    name: str | None = None


class TrialParams(Record):
    """``trial_<id>/params.json`` (the trial config Ray Tune wrote)."""

    group: str
    family: str
    lookback: Annotated[int, Field(ge=1)]
    columns: list[str]
    model: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    trial_number: int | None = None


class ConfirmParams(Record):
    """``trial_<id>/params.json`` of a confirmation trial: its row in ``plan.json``."""

    index: Annotated[int, Field(ge=0)]


class ResultRow(Record):
    """One line of ``trial_<id>/result.json`` (an epoch, or the final row with test scores)."""

    done: bool | None = None
    trial_id: str | None = None
    val_rmse_best: float | None = None
    test_rmse: float | None = None
    best_epoch: int | None = None
    timestamp: float | None = None
    time_total_s: float | None = None
    time_this_iter_s: float | None = None


class ScalerFile(Record):
    """``scaler.json`` of a checkpoint: feature means/stds and the label's mean/std."""

    mean: list[Finite]
    std: list[Annotated[float, AfterValidator(finite), Field(gt=0)]]
    y_mean: Finite
    y_std: Annotated[float, AfterValidator(finite), Field(gt=0)]

"""The ``tracking`` section: where each trial is also logged (MLflow, Weights & Biases, TensorBoard).

Every trial becomes one tracked run with its parameters (the trial config, ``group``
included), its per-epoch metrics and its final test scores, through Ray Tune's own logger
callbacks (:func:`cluster.ray_runtime.tracking_callbacks`). Trials are logged from the
driver, so only the machine that runs the sweep needs the tracking client.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from search_spaces.schema._base import Section

#: MLflow tracking URIs we accept: a local folder (plain path or ``file:``), an MLflow
#: server (``http(s)://``), a database (``sqlite:``, ``postgresql:``, ``mysql:``) or Databricks.
MLFLOW_SCHEMES = ("file", "http", "https", "sqlite", "postgresql", "mysql", "databricks")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class WandbSection(Section):
    """Weights & Biases: ``project``, ``mode`` (``offline`` writes under the run folder, no network)."""

    project: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    mode: Literal["online", "offline", "disabled"] = "offline"
    entity: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")


class TrackingSection(Section):
    """Experiment trackers every trial is logged to (all off by default but TensorBoard files).

    ``mlflow``: a tracking URI (``mlruns`` or ``file:///abs/mlruns`` for a local store,
    ``http://host:5000`` for a server). ``wandb``: ``{project, mode, entity}``.
    ``tensorboard``: Ray's TensorBoard event files in each trial folder (``tensorboard
    --logdir RUN_DIR``); ``false`` saves their bytes.
    """

    mlflow: str | None = Field(default=None, min_length=1, max_length=2000)
    wandb: WandbSection | None = None
    tensorboard: bool = True

    @field_validator("mlflow")
    @classmethod
    def _mlflow(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if _CONTROL.search(v):
            raise PydanticCustomError("spec_rule", "must be an MLflow tracking URI or folder (no newlines or other "
                                      "control characters)")
        scheme = v.split("://", 1)[0].lower() if "://" in v else ("file" if not v.startswith("databricks") else "")
        if v.startswith("databricks"):
            scheme = "databricks"
        if scheme not in MLFLOW_SCHEMES:
            raise PydanticCustomError("spec_rule", f"the tracking URI scheme {scheme!r} is not one of "
                                      f"{', '.join(MLFLOW_SCHEMES)} (or a plain folder)")
        return v

"""The ``report`` section: how the report judges the winners.

``alpha`` is the significance level of the report's tests: a winner is said to beat
persistence only when Hansen's SPA p-value over every finished config of its
asset/timeframe and the winner's Diebold–Mariano p-value are both below it (see
:mod:`reports.forecast_tests`).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from search_spaces.schema._base import Float, Section

#: Default significance level of the report's verdicts.
DEFAULT_ALPHA = 0.05


class ReportSection(Section):
    """Verdict settings: ``alpha`` in (0, 0.5] (default 0.05)."""

    alpha: Float = Field(default=DEFAULT_ALPHA, gt=0, le=0.5)


class ReportOnly(Section):
    """Just the ``report`` section of a spec (other sections ignored), for readers of a run's
    ``spec.yaml`` such as the report: its errors carry the full key (``report.alpha``)."""

    model_config = ConfigDict(extra="ignore")
    report: ReportSection = Field(default_factory=ReportSection)

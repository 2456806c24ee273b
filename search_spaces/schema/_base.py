"""Building blocks of every schema section: the error collector, strict scalar types, the base model.

A section validator reports all of its problems at once through :class:`Errors` (one
pydantic ``ValidationError`` whose items carry the exact key of each problem), so a user
fixes a spec in one pass instead of one error per run. Messages are rules ending in
``; got VALUE``; :func:`search_spaces.loader.format_errors` renders them one per line.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from search_spaces.distributions import Dist, DistError, check_dist, fmt_value


class Errors:
    """Collects ``(loc, message)`` problems and raises them as one pydantic ValidationError.

    Raised from inside a validator, pydantic prefixes each ``loc`` with the field's own
    location, so a section can report several problems at their exact keys.
    Messages end with ``; got VALUE`` (added here from ``value`` unless ``value`` is omitted).
    """

    _NONE = object()

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, loc: tuple[Any, ...] | str, msg: str, value: Any = _NONE) -> None:
        """Record one problem at ``loc`` (a tuple, or a dotted string like ``data.assets.0``)."""
        if isinstance(loc, str):
            loc = tuple(int(p) if p.isdigit() else p for p in loc.split(".")) if loc else ()
        if value is not Errors._NONE and "; got " not in msg:
            msg = f"{msg}; got {fmt_value(value)}"
        self.items.append({"type": PydanticCustomError("spec", msg),
                           "loc": loc, "input": None if value is Errors._NONE else value})

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, title: str = "Spec") -> None:
        """Raise every recorded problem as one ``ValidationError`` (nothing when there is none)."""
        if self.items:
            raise ValidationError.from_exception_data(title, self.items)  # type: ignore[arg-type]


def _strict_number(rule: str) -> Any:
    def check(v: Any) -> Any:
        # YAML gives real numbers; a quoted "3" or `true` where a number belongs is a mistake.
        if isinstance(v, (bool, str)):
            raise PydanticCustomError("spec_rule", rule)
        return v

    return BeforeValidator(check)


#: A whole number that refuses strings and booleans (pydantic would coerce ``"3"`` and ``true``).
Int = Annotated[int, _strict_number("must be a whole number")]
#: A number that refuses strings and booleans.
Float = Annotated[float, _strict_number("must be a number")]
_FIRST_DAY, _LAST_DAY = dt.date(1970, 1, 1), dt.date(2200, 12, 31)


def _day_range(v: dt.date) -> dt.date:
    if not _FIRST_DAY <= v <= _LAST_DAY:
        raise PydanticCustomError("spec_rule", f"must be between {_FIRST_DAY} and {_LAST_DAY}")
    return v


#: A calendar day in a range candles can have (catches typos such as year 20024).
Day = Annotated[dt.date, AfterValidator(_day_range)]


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_default=True,
                              allow_inf_nan=False)


def searchable(value: Any, **kw: Any) -> Dist:
    """Parse a searchable value with :func:`~search_spaces.distributions.check_dist` inside a validator.

    Args:
        value: the raw spec value (a scalar or a ``{type: ...}`` mapping).
        **kw: the parameter's constraints (``kind``, ``low``, ``high``, ``allowed``).

    Raises:
        PydanticCustomError: the rule and the bad value, reported at the field's key.
    """
    try:
        return check_dist(value, **kw)
    except DistError as e:
        raise PydanticCustomError("spec", str(e)) from None

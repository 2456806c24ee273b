"""``--json``: what each command prints for a script instead of a person.

One JSON document on stdout per command, strict JSON (NaN and infinities become null),
keys documented in the README ("Machine-readable output"); errors stay one line on
stderr with exit 2, as without ``--json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

import numpy as np
import pandas as pd


def add_json_option(p: argparse.ArgumentParser) -> None:
    """``--json`` on a command."""
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text (for scripts)")


def plain(v: Any) -> Any:
    """A value ``json.dumps`` writes as strict JSON, recursively (timestamps as ISO text)."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return plain({f.name: getattr(v, f.name) for f in dataclasses.fields(v)})
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [plain(x) for x in v]
    if isinstance(v, pd.Timestamp):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return str(v)


def emit(doc: dict[str, Any]) -> None:
    """Print one JSON document."""
    print(json.dumps(plain(doc), indent=1, allow_nan=False))

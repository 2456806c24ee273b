"""Summaries of a spec: ``tunefactory validate`` and ``tunefactory space`` (text, and data for ``--json``)."""

from __future__ import annotations

import math
from typing import Any

from search_spaces.distributions import Dist
from search_spaces.loader import LoadedSpec
from search_spaces.schema import Spec, grid_size
from search_spaces.space import epochs_per_trial, n_subsets, trials_per_group
from trainables.trial.config import TRAINING_KEYS


def _n(x: float) -> str:
    if not math.isfinite(x):
        return "continuous (infinite)"
    return f"{x:,.0f}" if x < 1e15 else f"{x:.3g}"


def _split(s: Spec) -> str:
    d = s.split.dates()
    if d is not None:
        return f"split by date (validation from {d[0]}, test from {d[1]})"
    return f"split {s.split.train:g} / {s.split.val:g} / {s.split.test:g}"


def _scheduler(s: Spec) -> str:
    if s.scheduler.kind == "none":
        return "no scheduler"
    return (f"ASHA (grace {s.scheduler.grace_period}, reduction {s.scheduler.reduction_factor:g}, "
            f"max_t {s.max_t})")


def _balanced(s: Spec) -> str:
    if s.search.balance_families and len(s.model.families) > 1 and s.search.algorithm != "grid":
        return f" (balanced: each gets 1 trial in {len(s.model.families)})"
    return ""


def summary(loaded: LoadedSpec) -> str:
    """One paragraph: what the sweep covers and costs."""
    s = loaded.spec
    per = trials_per_group(s)
    groups = len(s.groups)
    return (
        f"{loaded.path}: OK. Sweep '{loaded.name}' covers {len(s.data.assets)} asset(s) "
        f"({', '.join(s.data.assets)}) x {len(s.data.timeframes)} timeframe(s) ({', '.join(s.data.timeframes)}) "
        f"= {groups} group(s); target {s.target.kind} at horizon {s.target.horizon}; {_split(s)}; families "
        f"{', '.join(s.model.families)}{_balanced(s)}; lookback {s.window.lookback.describe()}; indicator pool of "
        f"{len(s.features.pool)} ({n_subsets(s):,} subsets of size {s.features.lower}..{s.features.upper}); "
        f"{s.search.algorithm} with {per:,} trial(s) per group = {per * groups:,} trials of up to "
        f"{s.max_t} epochs (patience {s.training.patience.describe()}, {_scheduler(s)}); "
        f"{s.resources.cpus:g} CPU / {s.resources.gpus:g} GPU per trial; results under {s.storage}/."
    )


def _patience(s: Spec) -> str:
    p = s.training.patience
    if p.fixed and p.values[0] == 0:
        return "no early stopping: every trial runs all its epochs"
    return f"fewer with patience {p.describe()}"


def _values(d: Dist) -> str:
    n = d.size()
    if d.fixed:
        return f"fixed {d.describe()}"
    if not math.isfinite(n):
        return f"continuous  {d.describe()}"
    return f"{_n(n)} value{'s' if n != 1 else ''}  {d.describe()}"


def space_table(loaded: LoadedSpec) -> str:
    """The size of the space and the expected compute."""
    s = loaded.spec
    per = trials_per_group(s)
    total = per * len(s.groups)
    rows: list[tuple[str, str]] = []
    for fam, space in s.model.families.items():
        dims = ", ".join(f"{k}={_n(d.size())}" for k, d in space.items()) or "family defaults"
        rows.append((f"family {fam}", dims))
    rows.append(("lookback", _values(s.window.lookback)))
    for k in TRAINING_KEYS:
        rows.append((k, _values(getattr(s.training, k))))
    f = s.features
    rows.append(("indicator subsets", f"{n_subsets(s):,} (pool {len(f.pool)}, size {f.lower}..{f.upper}, "
                 f"always {', '.join(f.always) or '-'})"))
    searched = [f"{m.key}.{p} ({len({dict(v)[p] for v in m.variants})})" for m in f.pool for p in m.searched]
    if searched:
        rows.append(("indicator parameters", ", ".join(searched)))
    rows.append(("grid points per group", _n(grid_size(s))))
    rows.append(("groups (asset x timeframe)", f"{len(s.groups)}"))
    rows.append(("trials", f"{total:,} ({per:,} per group, {s.search.algorithm})"))
    ub = total * s.max_t
    if s.scheduler.kind == "asha":
        est = total * epochs_per_trial(s)
        rows.append(("trial-epochs", f"<= {ub:,} (about {est:,.0f} with ASHA, fewer with patience)"))
    else:
        rows.append(("trial-epochs", f"<= {ub:,} ({_patience(s)})"))
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join([f"{loaded.path}: search space of '{loaded.name}'",
                      *(f"  {k:<{width}}{v}" for k, v in rows)])


def spec_facts(loaded: LoadedSpec) -> dict[str, Any]:
    """What :func:`summary` says, as data (``tunefactory validate --json``)."""
    s = loaded.spec
    per = trials_per_group(s)
    return {
        "spec": str(loaded.path), "name": loaded.name, "assets": list(s.data.assets),
        "timeframes": list(s.data.timeframes), "groups": [f"{a}/{tf}" for a, tf in s.groups],
        "target": s.target.kind, "horizon": s.target.horizon, "families": list(s.model.families),
        "pool": [m.key for m in s.features.pool], "subset_size": [s.features.lower, s.features.upper],
        "subsets": n_subsets(s), "algorithm": s.search.algorithm, "trials_per_group": per,
        "trials": per * len(s.groups), "max_epochs": s.max_t, "scheduler": s.scheduler.kind,
        "cpus_per_trial": s.resources.cpus, "gpus_per_trial": s.resources.gpus, "storage": s.storage,
    }


def space_facts(loaded: LoadedSpec) -> dict[str, Any]:
    """What :func:`space_table` says, as data (``tunefactory space --json``)."""
    s = loaded.spec
    per = trials_per_group(s)
    total = per * len(s.groups)
    grid = grid_size(s)
    return {
        "spec": str(loaded.path), "name": loaded.name, "groups": len(s.groups), "trials_per_group": per,
        "trials": total, "algorithm": s.search.algorithm,
        "grid_points_per_group": int(grid) if math.isfinite(grid) else None, "subsets": n_subsets(s),
        "dimensions": {**{f"{fam}.{k}": _size(d) for fam, space in s.model.families.items()
                          for k, d in space.items()},
                       "lookback": _size(s.window.lookback),
                       **{k: _size(getattr(s.training, k)) for k in TRAINING_KEYS}},
        "trial_epochs_max": total * s.max_t,
        "trial_epochs_expected": round(total * epochs_per_trial(s)) if s.scheduler.kind == "asha"
        else total * s.max_t,
    }


def _size(d: Dist) -> int | None:
    n = d.size()
    return int(n) if math.isfinite(n) else None

"""Human summaries of a spec: ``tunefactory validate`` and ``tunefactory space``."""

from __future__ import annotations

import math

from search_spaces.loader import LoadedSpec
from search_spaces.space import TRAINING_KEYS, asha_epochs, grid_size, n_subsets, trials_per_group


def _n(x: float) -> str:
    if not math.isfinite(x):
        return "continuous (infinite)"
    return f"{x:,.0f}" if x < 1e15 else f"{x:.3g}"


def summary(loaded: LoadedSpec) -> str:
    """One paragraph: what the sweep covers and costs."""
    s = loaded.spec
    per = trials_per_group(s)
    groups = len(s.groups)
    return (
        f"{loaded.path}: OK. Sweep '{loaded.name}' covers {len(s.data.assets)} asset(s) "
        f"({', '.join(s.data.assets)}) x {len(s.data.timeframes)} timeframe(s) ({', '.join(s.data.timeframes)}) "
        f"= {groups} group(s); target {s.target.kind} at horizon {s.target.horizon}; families "
        f"{', '.join(s.model.families)}; indicator pool of {len(s.features.pool)} "
        f"({n_subsets(s):,} subsets of size {max(s.features.min_size, 1)}..{s.features.upper}); "
        f"{s.search.algorithm} with {per} trial(s) per group = {per * groups} trials of up to "
        f"{s.training.max_epochs} epochs (patience {s.training.patience}, scheduler {s.scheduler.kind}); "
        f"{s.resources.cpus:g} CPU / {s.resources.gpus:g} GPU per trial; results under {s.storage}/."
    )


def space_table(loaded: LoadedSpec) -> str:
    """The size of the space and the expected compute."""
    s = loaded.spec
    per = trials_per_group(s)
    total = per * len(s.groups)
    lines = [f"{loaded.path}: search space of '{loaded.name}'"]
    for fam, space in s.model.families.items():
        dims = ", ".join(f"{k}={_n(d.size())}" for k, d in space.items()) or "no searched parameters"
        lines.append(f"  family {fam:<22} {dims}")
    lines.append(f"  lookback                      {_n(s.window.lookback.size())} values")
    for k in TRAINING_KEYS:
        lines.append(f"  {k:<29} {_n(getattr(s.training, k).size())} values")
    lines.append(f"  indicator subsets             {n_subsets(s):,} (pool {len(s.features.pool)}, "
                 f"size {max(s.features.min_size, 1)}..{s.features.upper}, always {s.features.always or '-'})")
    lines.append(f"  grid points per group         {_n(grid_size(s))}")
    lines.append(f"  groups (asset x timeframe)    {len(s.groups)}")
    lines.append(f"  trials                        {total:,} ({per:,} per group, {s.search.algorithm})")
    ub = total * s.training.max_epochs
    if s.scheduler.kind == "asha":
        est = total * asha_epochs(s.training.max_epochs, s.scheduler.grace_period, s.scheduler.reduction_factor)
        lines.append(f"  trial-epochs                  <= {ub:,} (about {est:,.0f} with ASHA, fewer with patience)")
    else:
        lines.append(f"  trial-epochs                  <= {ub:,} (fewer with patience {s.training.patience})")
    return "\n".join(lines)

"""What Optuna recorded vs what trained: indicator subsets of N configs per preset.

For each preset, N configs of one group are drawn through the real searcher
(:class:`cluster.searcher.GroupedSearcher`, the preset's own settings, ``search.algorithm``
as given) and each is told a deterministic synthetic value, so TPE has something to model.
For every trial the script decodes the subset from the study's parameters and compares it
with the subset the config trains (``indicators``); it prints the number of differences,
the histogram of subset sizes, chi-square statistics of the sizes against "every size
equally likely" and of per-member counts against "then every free member equally
likely" (0.999 quantiles: df 6 22.5, df 10 29.6, df 12 32.9, df 22 48.3), and, under TPE, how often the second
half of the study uses the two members the synthetic objective rewards.

It reads both parametrisations, so the same command measures the code before the change
(booleans ``ind.<member>`` + repair) and after it (``ind.size`` + one priority per member)::

    python benchmarks/indicator_subsets.py [--presets factory laptop liquidator] [--n 300]
        [--algorithm optuna-tpe|random|preset]

The synthetic objective: 1.0, minus 0.05 and 0.03 when the first and second free pool
members named in ``REWARDED`` are in (factory/laptop: ``rsi``, ``ema_ratio_20``;
liquidator: ``volume_change_5``, ``volume_change_2``), plus 0.002 per member and a small
hash-based noise: a searcher that learns picks both.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

REWARDED = ("rsi", "macd", "ema_ratio_20", "volume_change_5", "volume_change_2", "log_return_5")


def _decode(spec: Any, params: dict[str, Any]) -> list[str]:
    """The subset the study's parameters describe (new parametrisation, or the old booleans)."""
    try:
        from search_spaces.space import subset_from_params
    except ImportError:  # before the change: one boolean per free member, always-on members added
        f = spec.features
        chosen = set(f.always) | {m.key for m in f.pool if params.get(f"ind.{m.key}") is True}
        return [m.key for m in f.pool if m.key in chosen]
    return list(subset_from_params(spec, params))


def _value(indicators: list[str], rewarded: list[str], number: int) -> float:
    noise = int.from_bytes(hashlib.sha256(f"{number}|{','.join(indicators)}".encode()).digest()[:2], "little")
    v = 1.0 + 0.002 * len(indicators) + 0.01 * noise / 65535
    if rewarded[0] in indicators:
        v -= 0.05
    if rewarded[1] in indicators:
        v -= 0.03
    return v


def measure(preset: str, *, n: int, algorithm: str) -> dict[str, Any]:
    """Draw ``n`` configs of one group of ``preset`` and compare recorded with trained subsets."""
    from cluster.searcher import GroupedSearcher
    from search_spaces.loader import load_spec

    sets = [f"search.num_samples={n}", "search.max_concurrent=1"]
    if algorithm != "preset":
        sets.append(f"search.algorithm={algorithm}")
    spec = load_spec(ROOT / "search_spaces" / f"{preset}.yaml", sets).spec
    f = spec.features
    keys = [m.key for m in f.pool]
    rewarded = [k for k in REWARDED if k in keys and k not in f.always][:2]
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"assets": spec.data.assets[:1],
                                                                        "timeframes": spec.data.timeframes[:1]})})
    s = GroupedSearcher(spec)
    group = s.groups[0]
    t0 = time.perf_counter()
    configs = []
    for i in range(n):
        cfg = s.suggest(f"t{i}")
        configs.append(cfg)
        s.on_trial_complete(f"t{i}", {"val_ratio_best": _value(cfg["indicators"], rewarded, i)})
    seconds = time.perf_counter() - t0
    trials = s.studies[group].get_trials(deepcopy=False)
    diffs = sum(_decode(spec, t.params) != c["indicators"] for t, c in zip(trials, configs, strict=True))
    sizes = Counter(len(c["indicators"]) for c in configs)
    free = [k for k in keys if k not in f.always]
    counts = Counter(k for c in configs for k in c["indicators"] if k in free)
    # Against the design "size uniform in the bounds, then every free member equally likely"
    # (what tests/cluster/test_searcher_subsets.py bounds), not against the sizes drawn.
    lo, hi = f.lower, f.upper
    sizes_ok = range(max(lo, len(f.always)), hi + 1)
    expected = n * sum(k - len(f.always) for k in sizes_ok) / len(sizes_ok) / len(free)
    chi2 = sum((counts[k] - expected) ** 2 / expected for k in free)
    e_size = n / len(sizes_ok)
    chi2_sizes = sum((sizes[k] - e_size) ** 2 / e_size for k in sizes_ok)
    half = configs[n // 2:]
    use = {k: sum(k in c["indicators"] for c in half) / len(half) for k in rewarded}
    return {"preset": preset, "algorithm": spec.search.algorithm, "n": n, "diffs": diffs,
            "sizes": dict(sorted(sizes.items())), "bounds": (f.lower, f.upper), "free": len(free),
            "chi2": chi2, "chi2_sizes": chi2_sizes, "rewarded_second_half": use, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["factory", "laptop", "liquidator"])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--algorithm", default="preset", choices=["preset", "optuna-tpe", "random"])
    args = ap.parse_args(argv)
    for p in args.presets:
        r = measure(p, n=args.n, algorithm=args.algorithm)
        lo, hi = r["bounds"]
        hist = " ".join(f"{k}:{r['sizes'].get(k, 0)}" for k in range(lo, hi + 1))
        use = ", ".join(f"{k} {v:.0%}" for k, v in r["rewarded_second_half"].items())
        print(f"{r['preset']:<11} {r['algorithm']:<10} n={r['n']} differences={r['diffs']:<4} "
              f"sizes {lo}..{hi} [{hist}] size chi2={r['chi2_sizes']:.1f} (df {hi - lo}) "
              f"member chi2={r['chi2']:.1f} (df {r['free']}) "
              f"rewarded in 2nd half: {use} ({r['seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

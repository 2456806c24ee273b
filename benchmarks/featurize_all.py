"""Seconds to load and featurise every embedded 1h candle file with every candle indicator.

Each asset's ``<ASSET>_1h.csv.gz`` is read and validated (a fresh process, so nothing is
cached) and then every registered candle indicator (metric-derived ones excluded: they need
metric files) is computed at its default parameters with ``compute_features``, the same
call the trainable makes. Target: under 5 s for the six assets (~400k rows) together.

Usage::

    python benchmarks/featurize_all.py [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.data.candles import available, load_candles
from trainables.features.indicators import INDICATORS, compute_features, make_member
from trainables.features.table_indicators import METRIC_INDICATORS

TARGET_S = 5.0


def run() -> float:
    """Load and featurise every asset; print one line per asset and the total; return the total."""
    members = [make_member(name) for name in sorted(INDICATORS) if name not in METRIC_INDICATORS]
    assets = [a for a, tfs in sorted(available().items()) if "1h" in tfs]
    print(f"{len(members)} candle indicators at default parameters: {', '.join(m.key for m in members)}")
    print(f"{'asset':<10} {'rows':>7} {'load s':>7} {'features s':>10} {'total s':>8}")
    total_load = total_feat = 0.0
    rows = 0
    for asset in assets:
        t0 = time.perf_counter()
        frame = load_candles(asset, "1h").frame
        t1 = time.perf_counter()
        mat, names, warm = compute_features(frame, members)
        t2 = time.perf_counter()
        assert mat.shape == (len(frame), len(members)) and warm > 0, (mat.shape, names)
        total_load += t1 - t0
        total_feat += t2 - t1
        rows += len(frame)
        print(f"{asset:<10} {len(frame):>7} {t1 - t0:>7.3f} {t2 - t1:>10.3f} {t2 - t0:>8.3f}")
    total = total_load + total_feat
    verdict = "OK" if total < TARGET_S else "OVER TARGET"
    print(f"{'total':<10} {rows:>7} {total_load:>7.3f} {total_feat:>10.3f} {total:>8.3f}  "
          f"(target < {TARGET_S:g} s: {verdict})")
    return total


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="store_true", help="print the 15 most expensive calls")
    args = ap.parse_args()
    if not args.profile:
        run()
        return
    prof = cProfile.Profile()
    prof.runcall(run)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(15)


if __name__ == "__main__":
    main()

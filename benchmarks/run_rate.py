"""Trials per hour over a finished run, chunk by chunk, plus its size on disk.

    .venv/bin/python benchmarks/run_rate.py RUN_DIR [--chunk 500]

Reads the run folder only (``reports.collect``, no Ray): trials ordered by the time Tune
recorded for their last result, the rate of each chunk of ``--chunk`` trials (a flat rate
means the driver's per-trial cost does not grow with the trials already run), the run
folder's bytes per trial and the size of Tune's experiment state.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--chunk", type=int, default=500)
    a = ap.parse_args(argv)
    if a.chunk < 1:
        print(f"run_rate: --chunk must be >= 1; got {a.chunk}", file=sys.stderr)
        return 2

    from reports.collect import load_run
    from trainables.errors import TunefactoryError

    try:
        run = load_run(a.run_dir)
    except TunefactoryError as e:
        print(f"run_rate: {e}", file=sys.stderr)
        return 2
    ends = sorted(t.ended for t in run.trials if math.isfinite(t.ended))
    starts = [t.started for t in run.trials if math.isfinite(t.started)]
    if not ends or not starts:
        print(f"run_rate: {a.run_dir}: no trial has reported yet", file=sys.stderr)
        return 2
    t0 = min(starts)
    print(f"{len(ends)} trials ended over {ends[-1] - t0:.0f} s")
    rates = []
    for i in range(0, len(ends), a.chunk):
        seg = ends[i:i + a.chunk]
        dt = seg[-1] - (ends[i - 1] if i else t0)
        rates.append(len(seg) / dt * 3600 if dt > 0 else math.inf)
        print(f"trials {i + 1:>6}-{i + len(seg):>6}: {rates[-1]:>9,.0f} trials/h")
    if len(rates) > 1:
        print(f"last / first chunk: {rates[-1] / rates[0]:.2f}")
    size = sum(f.stat().st_size for f in a.run_dir.rglob("*") if f.is_file())
    print(f"run folder {size / 1e6:.1f} MB, {size / len(ends) / 1e3:.1f} KB per trial")
    states = sorted(a.run_dir.glob("experiment_state-*.json"))
    if states:
        print(f"experiment state {states[-1].stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

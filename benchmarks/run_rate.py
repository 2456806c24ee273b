"""Trials per hour over a finished run, chunk by chunk, plus its size on disk.

    .venv/bin/python benchmarks/run_rate.py RUN_DIR [--chunk 500]

Reads the run folder only (``reports.collect``, no Ray): trials ordered by the time Tune
recorded for their last result, the rate of each chunk of ``--chunk`` trials (a flat rate
means the driver's per-trial cost does not grow with the trials already run), the run
folder's bytes per trial, by file (``--by-file``), and the size of Tune's experiment state.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--by-file", action="store_true", help="bytes per trial of each kind of file")
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
    if a.by_file:
        print_by_file(a.run_dir, len(ends), size)
    return 0


def file_kind(rel: Path) -> str:
    """What a file of a run folder is, its per-trial parts generalised.

    ``trial_ab12/checkpoint_000000/model.keras`` → ``trial_*/checkpoint_*/model.keras``,
    TensorBoard's ``events.out.tfevents.<time>.<host>`` → ``events.out.tfevents.*``; a
    run-level file (``groups.json``, ``test_span/...``, ``report/...``) by its top folder.
    """
    parts = list(rel.parts)
    if not parts[0].startswith("trial_"):
        return parts[0] + ("/" if len(parts) > 1 else "")
    parts[0] = "trial_*"
    parts = [re.sub(r"^checkpoint_\d+$", "checkpoint_*", p) for p in parts]
    parts[-1] = re.sub(r"^events\.out\.tfevents\..*", "events.out.tfevents.*", parts[-1])
    return "/".join(parts)


def print_by_file(run_dir: Path, trials: int, total: int) -> None:
    """Bytes per trial of each kind of file, largest first, with its share of the folder."""
    sizes: dict[str, int] = defaultdict(int)
    for f in run_dir.rglob("*"):
        if f.is_file():
            sizes[file_kind(f.relative_to(run_dir))] += f.stat().st_size
    in_trials = sum(n for k, n in sizes.items() if k.startswith("trial_*"))
    print(f"trial folders {in_trials / trials:,.0f} bytes per trial; run-level files (report, state, "
          f"test spans) {(total - in_trials) / 1e6:.2f} MB")
    print(f"{'file':<44} {'bytes/trial':>12} {'share':>7}")
    for kind, n in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"{kind:<44} {n / trials:>12,.0f} {n / total:>7.1%}")


if __name__ == "__main__":
    raise SystemExit(main())

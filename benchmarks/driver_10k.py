"""Push N trials (default 10,000) through the real sweep driver and measure what grows with N.

Everything but the training is the sweep's own: the spec is loaded and its groups prepared
(BTC-USDT and ETH-USDT x 1d and 4h from the embedded candles), and
``cluster.sweep.build_tuner`` builds the Tuner with its grouped searcher (Optuna random by
default, one study per group, mirrored to ``optuna.journal``), per-group ASHA, the progress
callback, Tune's loggers, local storage and Tune's experiment-state snapshots, on a real
local Ray. Only the trial is a stand-in (``TUNEFACTORY_SYNTHETIC_EPOCHS``, see
``trainables.trial.synthetic``): it reports ``--epochs`` epochs with a real trial's metric
keys and final scores and writes a real trial's checkpoint files, without TensorFlow.

Prints, for every ``--chunk`` trials in finishing order, the rate (trials per hour, from
the moment Tune's driver loop processed each trial's end) and
the driver's resident memory then; the driver's peak RSS; the size of
``experiment_state-*.json`` and of the searcher's state; how many state snapshots Tune
took and the seconds spent taking them; and the bytes per trial in the run folder (by
file). Exit status 1 when the last chunk's rate is below ``--min-ratio`` of the first's.

Usage (2 cores: run it niced, one at a time)::

    nice -n 10 .venv/bin/python benchmarks/driver_10k.py --trials 2000 [--epochs 3] [--json out.json]

The run folder is deleted at the end unless ``--keep DIR`` names where to put it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

SPEC = """\
name: driver10k
data:
  assets: [BTC-USDT, ETH-USDT]
  timeframes: [1d, 4h]
  start: 2021-01-01
target: {{kind: multiplier, horizon: 1}}
window:
  lookback: {{type: choice, values: [4, 8, 16]}}
features:
  pool: [log_return, {{log_return: {{lag: 3}}}}, rsi, hl_spread, volume_change]
  min_size: 1
  max_size: 3
  always: [log_return_1]
model:
  families:
    mlp: {{units: {{type: choice, values: [8, 16, 32]}}}}
    gru: {{units: 8}}
training:
  max_epochs: {epochs}
  patience: {epochs}
  batch_size: 64
  learning_rate: {{type: loguniform, low: 1.0e-4, high: 1.0e-2}}
search: {{algorithm: {algorithm}, num_samples: {per_group}, seed: 7}}
scheduler: {{kind: asha, grace_period: 1, reduction_factor: 3}}
resources: {{cpus: {cpus_per_trial}}}
"""
GROUPS = 4


class Memory:
    """Samples this process's resident memory (MB) every ``period`` seconds on a thread."""

    def __init__(self, period: float = 1.0) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._period = period
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.samples.append((time.time(), self.rss_mb()))

    def at(self, t: float) -> float:
        """The last sample taken at or before ``t`` (NaN before the first)."""
        best = float("nan")
        for ts, mb in self.samples:
            if ts > t:
                break
            best = mb
        return best

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class StateWrites:
    """Times each experiment-state snapshot Tune takes (write + upload to the run folder).

    Wraps the private ``_ExperimentCheckpointManager.sync_up_experiment_state`` (Ray
    2.60), which is called on every step of Tune's loop and returns at once unless a
    snapshot is due; only the calls that took one (its ``_last_save_time`` moved) count.
    """

    def __init__(self) -> None:
        from ray.tune.execution import experiment_state

        self.count, self.seconds, self.longest = 0, 0.0, 0.0
        self.times: list[tuple[float, float]] = []  # (wall time at the end, seconds)
        cls: Any = experiment_state._ExperimentCheckpointManager
        original = cls.sync_up_experiment_state
        outer = self

        def timed(mgr: Any, *args: Any, **kwargs: Any) -> Any:
            before, t0 = mgr._last_save_time, time.perf_counter()
            out = original(mgr, *args, **kwargs)
            if mgr._last_save_time != before:
                dt = time.perf_counter() - t0
                outer.count += 1
                outer.seconds += dt
                outer.longest = max(outer.longest, dt)
                outer.times.append((time.time(), dt))
            return out

        cls.sync_up_experiment_state = timed


class TrialCopies:
    """Times the copies of single trial folders to storage (``cluster.ray_runtime.copy_trial_folder``).

    Wraps the module function the callback calls, not Ray's copy routine: Tune's syncer
    keeps its last command in every trial's pickled state, and a wrapper there would be
    pickled by value and inflate the state this benchmark measures.
    """

    def __init__(self) -> None:
        from cluster import ray_runtime

        self.count, self.seconds = 0, 0.0
        original = ray_runtime.copy_trial_folder
        outer = self

        def timed(trial: Any) -> None:
            t0 = time.perf_counter()
            original(trial)
            outer.count += 1
            outer.seconds += time.perf_counter() - t0

        ray_runtime.copy_trial_folder = timed  # type: ignore[assignment]


class Finishes:
    """When each trial ended, as the driver saw it: the sweep's progress callback is timed.

    ``cluster.progress.Progress.line`` is what Tune's ``on_trial_complete`` /
    ``on_trial_error`` call (through the sweep's own callback), so wrapping it records the
    moment Tune processed each trial's end, to the microsecond (``result.json``'s mtime
    is no good: Tune's logger buffers it and closes the file later).
    """

    def __init__(self) -> None:
        from cluster.progress import Progress

        self.times: list[float] = []
        self.cpu: list[float] = []  # the driver process's CPU seconds (all threads) at each end
        original = Progress.line
        outer = self

        def line(prog: Any, trial: Any, *, error: bool = False) -> None:
            outer.times.append(time.time())
            outer.cpu.append(time.process_time())
            original(prog, trial, error=error)

        Progress.line = line  # type: ignore[method-assign,assignment]


def chunk_rates(times: list[float], chunk: int) -> list[dict[str, float]]:
    """Trials per hour over each run of ``chunk`` consecutive finishes.

    A chunk's span runs from the previous chunk's last finish to its own last finish (the
    first chunk: from the first finish, so Ray's start-up is not counted against it).
    """
    rows = []
    for a in range(0, len(times), chunk):
        b = min(a + chunk, len(times))
        start = times[a - 1] if a else times[0]
        n = b - a if a else b - a - 1
        span = times[b - 1] - start
        rows.append({"first": a + 1, "last": b, "seconds": span,
                     "per_hour": n / span * 3600 if span > 0 and n > 0 else float("nan"), "end": times[b - 1]})
    return rows


def folder_bytes(run: Path) -> tuple[int, int, dict[str, int]]:
    """(bytes in trial folders, trials, bytes by file name with checkpoint_* collapsed)."""
    total, by = 0, defaultdict[str, int](int)
    trials = 0
    for d in run.glob("trial_*"):
        trials += 1
        for f in d.rglob("*"):
            if f.is_file():
                size = f.stat().st_size
                total += size
                rel = f.relative_to(d).parts
                key = "/".join(("checkpoint_*", *rel[1:]) if rel[0].startswith("checkpoint_") else rel)
                if key.startswith("events.out.tfevents"):
                    key = "events.out.tfevents.*"
                by[key] += size
    return total, trials, dict(by)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10_000, help="trials in all (split over 4 groups)")
    ap.add_argument("--epochs", type=int, default=3, help="synthetic epochs per trial")
    ap.add_argument("--chunk", type=int, default=1000, help="trials per rate row")
    ap.add_argument("--algorithm", default="random", choices=["random", "tpe"])
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--cpus-per-trial", type=float, default=1.0)
    ap.add_argument("--keep", type=Path, help="keep the run folder here (default: deleted)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--min-ratio", type=float, default=0.85, help="last/first chunk rate below this: exit 1")
    args = ap.parse_args(argv)

    os.environ["TUNEFACTORY_SYNTHETIC_EPOCHS"] = str(args.epochs)
    from cluster import ray_runtime as rt
    from cluster.console import tame_third_party
    from cluster.run_folder import write_run_header
    from cluster.sweep import build_tuner
    from search_spaces.loader import load_spec
    from search_spaces.recipes import prepare_groups

    work = Path(tempfile.mkdtemp(prefix="driver10k-"))
    spec_file = work / "driver10k.yaml"
    spec_file.write_text(SPEC.format(epochs=args.epochs, algorithm=args.algorithm,
                                     per_group=max(1, args.trials // GROUPS), cpus_per_trial=args.cpus_per_trial))
    storage = args.keep.resolve() if args.keep else work / "runs"
    run = storage / "driver10k"
    if run.exists():
        print(f"driver_10k: {run} exists; pass another --keep", file=sys.stderr)
        return 2
    loaded = load_spec(spec_file)
    datasets = prepare_groups(loaded.spec)
    rt.import_ray()
    tame_third_party()
    rt.init_ray(None, num_cpus=args.num_cpus)
    writes = StateWrites()
    copies = TrialCopies()
    write_run_header(str(run), loaded, datasets, prepare_seconds=0.0)
    ends = Finishes()  # before build_tuner: the progress callback binds Progress.line there
    tuner = build_tuner(loaded.spec, datasets, str(run))
    mem = Memory()
    t0 = time.time()
    tuner.fit()
    wall = time.time() - t0
    mem.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rt.shutdown_in_background().join()

    times = sorted(ends.times)
    rows = chunk_rates(times, args.chunk)
    state = sorted(run.glob("experiment_state-*.json"))
    searcher = sorted(run.glob("searcher-state-*"))
    total, trials, by = folder_bytes(run)
    print(f"\ndriver_10k: {len(times)} trials ended of {args.trials} in {wall:.0f}s "
          f"({len(times) / wall * 3600:.0f}/h overall), {args.epochs} synthetic epochs, {args.algorithm}")
    # Driver CPU per trial does not depend on what else the machine runs, unlike the rate.
    print(f"{'trials':>13} {'seconds':>8} {'per hour':>9} {'driver CPU ms/trial':>20} {'driver RSS MB':>14} "
          f"{'state writes s':>15}")
    prev = t0
    for r in rows:
        in_chunk = sum(dt for ts, dt in writes.times if prev < ts <= r["end"])
        prev = r["end"]
        a, b = int(r["first"]) - 1, int(r["last"]) - 1
        cpu_ms = (ends.cpu[b] - (ends.cpu[a - 1] if a else ends.cpu[0])) / max(b - a + (1 if a else 0), 1) * 1000
        r["driver_cpu_ms_per_trial"] = cpu_ms
        print(f"{r['first']:>6}-{r['last']:<6} {r['seconds']:8.1f} {r['per_hour']:9.0f} {cpu_ms:20.1f} "
              f"{mem.at(r['end']):14.0f} {in_chunk:15.1f}")
    load = os.getloadavg()[0]
    ratio = rows[-1]["per_hour"] / rows[0]["per_hour"] if len(rows) > 1 else float("nan")
    state_bytes = state[-1].stat().st_size if state else 0
    print(f"last/first chunk rate: {ratio:.2f} (load average {load:.1f} on {os.cpu_count()} CPUs at the end)")
    print(f"driver peak RSS: {peak_mb:.0f} MB")
    print(f"experiment_state: {state_bytes / 1e6:.2f} MB ({state_bytes / max(trials, 1) / 1e3:.1f} KB/trial); "
          f"searcher state: {sum(p.stat().st_size for p in searcher) / 1e6:.2f} MB")
    print(f"state snapshots: {writes.count}, {writes.seconds:.1f}s in all ({writes.seconds / wall * 100:.1f}% of the "
          f"sweep), longest {writes.longest:.2f}s")
    print(f"trial folders copied to storage one by one: {copies.count}, {copies.seconds:.1f}s in all")
    print(f"run folder: {total / max(trials, 1) / 1e3:.1f} KB per trial in trial folders; by file (KB/trial): "
          + ", ".join(f"{k} {v / max(trials, 1) / 1e3:.1f}" for k, v in sorted(by.items(), key=lambda kv: -kv[1])))
    out = {"trials": args.trials, "ended": len(times), "epochs": args.epochs, "algorithm": args.algorithm,
           "wall_s": wall, "chunks": rows, "load_average": load, "last_first_ratio": ratio, "driver_peak_rss_mb": peak_mb,
           "experiment_state_bytes": state_bytes, "state_snapshots": writes.count,
           "state_write_s": writes.seconds, "state_write_longest_s": writes.longest,
           "trial_copies": copies.count, "trial_copy_s": copies.seconds,
           "bytes_per_trial": total / max(trials, 1), "bytes_per_trial_by_file": {k: v / max(trials, 1)
                                                                                  for k, v in by.items()}}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if ratio == ratio and ratio < args.min_ratio else 0


if __name__ == "__main__":
    sys.exit(main())

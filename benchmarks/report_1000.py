"""Time ``build_report`` on a synthetic 1,000-trial (or 10,000-trial) run directory.

Targets: 1,000 trials under 30 s, 10,000 trials under 60 s (``--trials 10000``; issue 16).

The run directory is synthesised from a real small run: its trial folders are copied
(checkpoint files hard-linked) and mutated — new ids, trial numbers, families, lookbacks,
learning rates, indicator subsets, 2..25 epochs of history with plausible validation
curves, some trials stopped early and some failed — and spread over ``--groups``
asset/timeframe groups (1 = the worst case for fANOVA: 1,000 trials in one study).

Usage::

    python benchmarks/report_1000.py [--source RUN_DIR] [--trials 1000|10000] [--groups 1] [--keep DIR]

Without ``--source`` a tiny real sweep (4 trials, about a minute on 2 cores) is run first.
Prints the seconds ``build_report`` took (in a fresh process, imports included), wall and
CPU (user + system, every thread: what a shared machine's load does not inflate), with the
1-minute load average, and exits 1 when the wall time exceeds ``--limit`` (default 30 s up
to 1,000 trials, 60 s above).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

POOL = ["log_return_1", "log_return_3", "rsi_14", "hl_spread", "volume_change_1"]
GROUPS = ["BTC-USDT/1d", "ETH-USDT/1d", "BTC-USDT/4h", "ETH-USDT/4h", "SOL-USDT/1d", "SOL-USDT/4h"]


def make_source(workdir: Path) -> Path:
    """Run the tests' tiny spec (a real 4-trial sweep) and return its run directory."""
    # Lazy: these import Ray (seconds), which a run with --source never needs; and every
    # import of the project must follow the sys.path line above.
    from cluster.ray_runtime import init_ray
    from cluster.sweep import run_sweep
    from search_spaces.loader import load_spec
    from tests.conftest import TINY_SPEC

    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    init_ray(None, num_cpus=2)
    return run_sweep(load_spec(spec), name="tiny", storage=str(workdir))


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)


def synthesise(source: Path, dst: Path, *, trials: int, groups: int, seed: int = 0) -> Path:
    """Write a ``trials``-trial run directory at ``dst`` from the real run ``source``."""
    rng = random.Random(seed)
    dst.mkdir(parents=True)
    shutil.copy2(source / "spec.yaml", dst / "spec.yaml")
    meta = json.loads((source / "groups.json").read_text())
    (info,) = meta["groups"].values()
    names = GROUPS[:groups]
    meta["groups"] = {g: {**info, "asset": g.split("/")[0], "timeframe": g.split("/")[1]} for g in names}
    meta["name"] = f"synthetic-{trials}"
    (dst / "groups.json").write_text(json.dumps(meta, indent=1))
    if (source / "test_span").is_dir():  # the checkpoints' compact forecasts align to these rows
        shutil.copytree(source / "test_span", dst / "test_span")
    real = [d for d in sorted(source.glob("trial_*")) if (d / "result.json").is_file()]
    pv = info["persistence_rmse"]["val"]
    t0 = 1.79e9
    for i in range(trials):
        src = real[i % len(real)]
        group = names[i % groups]
        tid = f"{i:08x}"
        d = dst / f"trial_{tid}"
        d.mkdir()
        cfg = json.loads((src / "params.json").read_text())
        ind = ["log_return_1", *sorted(rng.sample(POOL[1:], rng.randint(0, 2)))]
        fam = rng.choice(["gru", "mlp", "lstm"])
        cfg.update({"group": group, "asset": group.split("/")[0], "timeframe": group.split("/")[1],
                    "trial_number": i // groups, "family": fam, "lookback": rng.choice([4, 8]),
                    "learning_rate": 10 ** rng.uniform(-3, -2), "batch_size": rng.choice([64, 128]),
                    "model": {"units": rng.choice([8, 16, 32])}, "indicators": ind, "columns": ind,
                    "indicator_params": {}, "seed": rng.getrandbits(31)})
        (d / "params.json").write_text(json.dumps(cfg, indent=1))
        rows = [json.loads(x) for x in (src / "result.json").read_text().splitlines() if x.strip()]
        final = dict(rows[-1])
        kind = rng.random()
        epochs = rng.randint(2, 25)
        level = pv * rng.uniform(0.99, 1.2) * (1.0 + 0.01 * cfg["lookback"] / 8)
        start = t0 + i * 7.0
        out, best = [], float("inf")
        n_ep = epochs if kind > 0.05 else rng.randint(1, 3)
        for e in range(1, n_ep + 1):
            val = level * (1 + 0.3 / e) * rng.uniform(0.995, 1.005)
            best = min(best, val)
            out.append({**rows[0], "epoch": e, "val_rmse": val, "val_rmse_best": best, "val_ratio_best": best / pv,
                        "best_epoch": e, "train_seconds": 0.4 * e, "trial_id": tid, "config": cfg,
                        "timestamp": int(start + 0.4 * e), "time_this_iter_s": 0.4, "time_total_s": 0.4 * e,
                        "training_iteration": e, "done": False})
        if kind < 0.05:  # failed mid-training
            (d / "error.txt").write_text("Traceback (most recent call last):\n  ...\nTrialDiverged: training "
                                         f"loss became nan at epoch {n_ep}; lower the learning rate\n")
        elif kind < 0.25:  # stopped by ASHA: epochs only, no final row
            pass
        else:
            skill = rng.gauss(-0.02, 0.02)
            final.update({"val_rmse_best": best, "val_ratio_best": best / pv, "epochs": n_ep, "best_epoch": n_ep,
                          "test_skill": skill, "test_rmse": info["persistence_rmse"]["test"] * (1 - skill),
                          "trial_id": tid, "config": cfg, "train_seconds": 0.4 * n_ep + 1,
                          "timestamp": int(start + 0.4 * n_ep + 1), "time_total_s": 0.4 * n_ep + 1})
            out.append(final)
            for ck in src.glob("checkpoint_*"):
                _link_tree(ck, d / ck.name)
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in out))
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, help="a real run directory to copy trials from")
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--groups", type=int, default=1, choices=range(1, len(GROUPS) + 1))
    p.add_argument("--limit", type=float, help="fail above this many seconds (default 30, 60 above 1,000 trials)")
    p.add_argument("--keep", type=Path, help="write the synthetic run here and keep it")
    a = p.parse_args(argv)
    limit = a.limit if a.limit is not None else (30.0 if a.trials <= 1000 else 60.0)
    with tempfile.TemporaryDirectory(prefix="report1000-") as tmp:
        work = Path(tmp)
        source = a.source or make_source(work / "src")
        run = synthesise(source, a.keep or work / "synthetic", trials=a.trials, groups=a.groups)
        # A fresh interpreter, so the time includes importing plotly, optuna and scikit-learn.
        code = ("import time; t = time.perf_counter(); from reports.build import build_report; "
                f"build_report({str(run)!r}); print(time.perf_counter() - t)")
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 2
        secs = float(r.stdout.strip().splitlines()[-1])
        size = (run / "report" / "index.html").stat().st_size / 1e6
        print(f"build_report: {a.trials} trials in {a.groups} group(s): {secs:.2f} s (limit {limit:g} s), "
              f"process CPU {cpu:.1f} s, load average {load:.1f} on {os.cpu_count()} CPUs; index.html {size:.1f} MB")
        return 0 if secs <= limit else 1


if __name__ == "__main__":
    t = time.perf_counter()
    sys.exit(main())

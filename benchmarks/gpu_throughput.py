"""Benchmark: trials/hour with 1, 4, 8, 16 and 32 trials sharing one GPU (fractional GPUs).

    .venv/bin/python benchmarks/gpu_throughput.py                      # on a GPU machine (~25 min)
    .venv/bin/python benchmarks/gpu_throughput.py --shares 1 4 --minutes 2 --workloads laptop
    .venv/bin/python benchmarks/gpu_throughput.py --dry-run            # print the plan, run nothing
    .venv/bin/python benchmarks/gpu_throughput.py --cpu-smoke          # the plumbing on a CPU box

For each workload and each share ``k`` it runs a real ``tunefactory run`` (fresh process,
local Ray, the sweep's own Tuner/searcher/scheduler) with ``resources.gpus = 1/k`` so that
``k`` trials share the card, random search without ASHA (every trial the same amount of
work, so trials/hour compare), for a fixed wall-time budget (``tunefactory`` is stopped
with SIGINT at the budget, which ends it cleanly; trials finished by then are counted).
While it runs, ``nvidia-smi`` is polled every 0.5 s for the memory of each compute process
(one process per trial worker): the peak per trial and for the whole card are printed.
Out-of-memory failures are counted from the trials' ``error.txt``.

Workloads (the shapes users run):
  laptop       the laptop preset's space (LSTM/GRU/MLP, lookback 8-32) on BTC-USDT 1h
  transformer  the Synthesizer-paper transformer family (d_model 64, 1-8 layers, 2-8 heads)
               on BTC-USDT 1h, lookback 32

Each trial asks for ``cpus = cores / k`` CPUs (fractional above ``k = cores``, so all ``k``
trials run at once; each still needs some CPU time to feed the GPU, which is where
trials/hour stops growing). The raw numbers go to ``--out`` (JSON).

Bad input (a share < 1, a budget < 1 minute, no GPU without ``--cpu-smoke``) is one line,
exit 2, before anything starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKLOADS: dict[str, list[str]] = {
    "laptop": [
        "search_spaces/laptop.yaml",
        "data.assets=[BTC-USDT]", "data.timeframes=[1h]", "data.start=2022-01-01",
        "training.max_epochs=5", "training.patience=5",
    ],
    "transformer": [
        "search_spaces/laptop.yaml",
        "data.assets=[BTC-USDT]", "data.timeframes=[1h]", "data.start=2022-01-01",
        "window.lookback=32",
        "model.families={transformer: {layers: {type: choice, values: [1, 2, 4, 8]}, "
        "heads: {type: choice, values: [2, 4, 8]}, dropout: 0.1, d_model: 64}}",
        "training.max_epochs=5", "training.patience=5",
    ],
}


def _fail(msg: str) -> None:
    print(f"gpu_throughput: {msg}", file=sys.stderr)
    raise SystemExit(2)


class GpuPoller(threading.Thread):
    """Peak memory (MiB) per compute process and in total, from ``nvidia-smi`` every 0.5 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop_event = threading.Event()
        self.per_pid: dict[str, float] = {}
        self.total_peak = 0.0
        self.smi = shutil.which("nvidia-smi")

    def run(self) -> None:
        while self.smi and not self.stop_event.wait(0.5):
            try:
                out = subprocess.run([self.smi, "--query-compute-apps=pid,used_memory",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                     timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            total = 0.0
            for line in out.strip().splitlines():
                pid, _, mib = line.partition(",")
                try:
                    m = float(mib)
                except ValueError:
                    continue
                total += m
                self.per_pid[pid.strip()] = max(self.per_pid.get(pid.strip(), 0.0), m)
            self.total_peak = max(self.total_peak, total)


def _count(run_dir: Path) -> dict[str, int]:
    """Trials finished, failed, and failed out of GPU memory, read back from the run folder."""
    from reports.collect import load_run

    run = load_run(run_dir)
    oom = 0
    for t in run.trials:
        err = (t.path / "error.txt")
        if t.status == "failed" and err.is_file() and any(
                s in err.read_text(errors="replace") for s in ("RESOURCE_EXHAUSTED", "out of memory", "OOM")):
            oom += 1
    return {"finished": sum(t.status == "finished" for t in run.trials),
            "failed": sum(t.status == "failed" for t in run.trials), "oom": oom}


def one(workload: str, share: int, *, minutes: float, cores: int, gpu: bool, storage: Path) -> dict[str, Any]:
    """One sweep of ``workload`` with ``share`` trials per GPU for ``minutes``; its numbers."""
    spec, *sets = WORKLOADS[workload]
    if not gpu:  # the CPU smoke test: daily candles and 2 epochs, so a few trials end in a minute
        sets = [*sets, "data.timeframes=[1d]", "training.max_epochs=2", "training.patience=2"]
    cpus = round(cores / share, 3)
    name = f"{workload}-k{share}"
    overrides = [*sets, "search.algorithm=random", "scheduler.kind=none", "search.num_samples=100000",
                 f"search.max_concurrent={share}", f"resources.cpus={cpus}",
                 f"resources.gpus={1 / share if gpu else 0}"]
    cmd = [sys.executable, "-m", "cluster.cli", "run", spec, "--storage", str(storage), "--name", name, "-q"]
    for o in overrides:
        cmd += ["--set", o]
    poller = GpuPoller()
    poller.start()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        proc.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # a clean stop: trials stopped, state saved (exit 130)
        proc.wait(timeout=300)
    wall = time.monotonic() - t0
    poller.stop_event.set()
    poller.join(timeout=5)
    counts = _count(storage / name)
    per_trial = sorted(poller.per_pid.values())
    return {"workload": workload, "share": share, "cpus_per_trial": cpus, "wall_s": round(wall, 1),
            **counts, "trials_per_hour": round(counts["finished"] / wall * 3600, 1),
            "peak_mib_per_trial": per_trial[-1] if per_trial else None,
            "median_peak_mib_per_trial": per_trial[len(per_trial) // 2] if per_trial else None,
            "peak_mib_card": poller.total_peak or None, "exit_code": proc.returncode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--shares", nargs="+", type=int, default=[1, 4, 8, 16, 32],
                    help="trials sharing one GPU (resources.gpus = 1/k)")
    ap.add_argument("--minutes", type=float, default=2.5, help="wall-time budget per sweep (default 2.5)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_throughput.json")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="no GPU: run the plumbing with resources.gpus=0 (numbers mean nothing)")
    a = ap.parse_args()
    if any(k < 1 for k in a.shares):
        _fail(f"--shares: every share must be >= 1 trial per GPU; got {a.shares}")
    if a.minutes < 1 and not a.cpu_smoke:
        _fail(f"--minutes: a budget under 1 minute measures Ray's start-up, not throughput; got {a.minutes}")
    gpu = shutil.which("nvidia-smi") is not None
    if not gpu and not a.cpu_smoke and not a.dry_run:
        _fail("no GPU here (nvidia-smi not found); run on a GPU machine, or pass --cpu-smoke to test the plumbing")
    cores = os.cpu_count() or 1
    plan = [(w, k) for w in a.workloads for k in a.shares]
    total = len(plan) * a.minutes
    print(f"gpu_throughput: {len(plan)} sweeps x {a.minutes:g} min = ~{total:.0f} min (+ start-up); "
          f"{cores} cores; GPU: {'yes' if gpu else 'no'}")
    if a.dry_run:
        for w, k in plan:
            print(f"  {w:<12} {k:>2} trials/GPU  gpus={1 / k:.4g}  cpus={round(cores / k, 3):g}")
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="tf-gpu-") as tmp:
        for w, k in plan:
            r = one(w, k, minutes=a.minutes, cores=cores, gpu=gpu, storage=Path(tmp))
            rows.append(r)
            print(f"{w:<12} k={k:>2}  {r['trials_per_hour']:>8.1f} trials/h  finished {r['finished']:>4}  "
                  f"failed {r['failed']} (OOM {r['oom']})  peak/trial {r['peak_mib_per_trial']} MiB  "
                  f"card {r['peak_mib_card']} MiB", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"cores": cores, "gpu": gpu, "minutes": a.minutes, "rows": rows}, indent=1))
    print(f"gpu_throughput: raw numbers in {a.out}")


if __name__ == "__main__":
    main()

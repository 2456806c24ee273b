"""Replay early-stopping settings on full learning curves: what ASHA and patience would cost.

    .venv/bin/python benchmarks/asha_replay.py /tmp/ttq/reference-s0 /tmp/ttq/reference-s1 \\
        --grace 1 2 3 4 6 --rf 2 3 4 --patience 2 3 4 5 --orders 200

Input: run folders of random search **without** a scheduler (the ``reference-s*`` folders
of ``benchmarks/time_to_quality.py``): every config ran to its own end (patience or
``max_epochs``), so its whole validation curve is known. For every setting (ASHA grace
period x reduction factor x in-trial patience, plus "no ASHA") and ``--orders`` random
orders of each group's configs, it replays the sweep exactly as Ray 2.60's
``AsyncHyperBandScheduler`` would decide it (the same rungs, the same
``nanpercentile(recorded, (1 - 1/rf) * 100)`` cutoff on the running best
``val_rmse_best``, ``max_t = max_epochs + 1`` as ``cluster.sweep`` sets it), with
``--concurrency`` trials running at once and one time unit per epoch; patience stops a
trial ``patience`` epochs after its best, as ``trainables.trial`` does.

It prints, per setting: trial-epochs spent (share of the full curves), how often the
sweep's best ends within ``--tolerance`` of the best config's (the target of
``time_to_quality.py``), the trial-epochs it took to get there (share of the full
curves' total, the issue's ratio), and the mean final gap. No training runs: thousands of
sweeps replay in seconds, which is what lets the defaults be chosen from data rather than
from one or two real sweeps. What it cannot show is TPE: the order here is random search's.

Bad input (a folder with ASHA-cut trials, a patience above the one the curves ran with, a
group with fewer than two configs) is refused in one line before anything is replayed.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package


@dataclass(frozen=True)
class Setting:
    """One early-stopping configuration; ``grace == 0`` means no ASHA."""

    grace: int
    rf: int
    patience: int

    def label(self) -> str:
        asha = f"ASHA grace {self.grace} rf {self.rf}" if self.grace else "no ASHA"
        return f"{asha}, patience {self.patience}"


def rungs(grace: int, rf: int, max_t: int) -> list[int]:
    """Ray's rung milestones, highest first (``_Bracket.__init__`` with ``s = 0``)."""
    n = int(np.log(max_t / grace) / np.log(rf) + 1)
    return [grace * rf ** k for k in reversed(range(n))]


class Rungs:
    """Ray 2.60's ``_Bracket`` (one bracket, ``s = 0``, ``stop_last_trials``) on a minimised metric."""

    def __init__(self, grace: int, rf: int, max_t: int) -> None:
        self.rf = rf
        self.recorded: list[tuple[int, dict[int, float]]] = [(m, {}) for m in rungs(grace, rf, max_t)]

    def stop(self, trial: int, epoch: int, value: float) -> bool:
        """Whether ASHA stops ``trial`` on this result (its running best ``value`` at ``epoch``)."""
        for milestone, rec in self.recorded:  # highest first: the first rung reached and not yet recorded
            if epoch < milestone or trial in rec:
                continue
            # Ray maximises -value; its cutoff is the (1 - 1/rf) percentile of the recorded rewards.
            cut = bool(rec) and -value < np.nanpercentile([-x for x in rec.values()], (1 - 1 / self.rf) * 100)
            rec[trial] = value
            return bool(cut)
        return False


def replay(curves: list[list[float]], order: list[int], s: Setting, *, max_epochs: int,
           concurrency: int) -> tuple[list[tuple[int, float]], int]:
    """Replay one sweep; returns ((cumulative epochs, best so far) per ended trial, total epochs).

    Args:
        curves: validation RMSE per epoch of every config, as the reference ran it.
        order: the order configs are started in.
        s: the setting.
        max_epochs: the sweep's ``training.max_epochs`` (ASHA's ``max_t`` is one more).
        concurrency: trials running at once.
    """
    asha = Rungs(s.grace, s.rf, max_epochs + 1) if s.grace else None
    queue = list(reversed(order))
    # (time the next epoch ends, tie-break, config, epoch about to end, running best, best epoch)
    running: list[tuple[int, int, int, int, float, int]] = []
    tie = itertools.count()
    now = spent = 0
    best = math.inf
    points: list[tuple[int, float]] = []

    def start(t: int) -> None:
        if queue:
            heapq.heappush(running, (t + 1, next(tie), queue.pop(), 1, math.inf, 0))

    for _ in range(concurrency):
        start(0)
    while running:
        now, _, c, e, run_best, best_ep = heapq.heappop(running)
        spent += 1
        v = curves[c][e - 1]
        if v < run_best:
            run_best, best_ep = v, e
        # ASHA sees every result, also the one on which patience ends the trial.
        cut = asha is not None and asha.stop(c, e, run_best)
        if cut or e >= len(curves[c]) or e - best_ep >= s.patience:
            best = min(best, run_best)
            points.append((spent, best))
            start(now)
        else:
            heapq.heappush(running, (now + 1, next(tie), c, e + 1, run_best, best_ep))
    return points, spent


def load_curves(run_dir: Path) -> tuple[dict[str, list[list[float]]], int, int]:
    """Per group, the validation curve of every config; with the run's max_epochs and patience."""
    from reports.collect import load_run

    run = load_run(run_dir)
    if any(t.status == "stopped" for t in run.trials):
        raise SystemExit(f"asha_replay: {run_dir}: some trials were cut by a scheduler; replay needs full "
                         "curves (a run with scheduler.kind=none, e.g. time_to_quality.py's reference-s*)")
    out: dict[str, list[list[float]]] = {}
    max_epochs = patience = 0
    for t in run.trials:
        vals = [float(r["val_rmse"]) for r in t.history if math.isfinite(float(r.get("val_rmse", math.nan)))]
        if not vals:
            continue
        cfg = t.history[0].get("config", {})
        max_epochs = max(max_epochs, int(cfg.get("max_epochs", len(vals))))
        patience = max(patience, int(cfg.get("patience", len(vals))))
        out.setdefault(t.group, []).append(vals)
    return out, max_epochs, patience


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders of random search without a scheduler")
    ap.add_argument("--grace", type=int, nargs="+", default=None, help="default: 1 2 3 4 6 up to max_epochs")
    ap.add_argument("--rf", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--patience", type=int, nargs="+", default=None, help="default: 2 .. the curves' own")
    ap.add_argument("--orders", type=int, default=200, help="random draws (orders) per group (default 200)")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.002)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=0, metavar="N",
                    help="pool each group's curves over the runs and compare two disjoint random searches of N "
                         "configs (reference without ASHA vs the setting): the sampling luck time_to_quality.py "
                         "meets, not only the pruning loss")
    ap.add_argument("--top", type=int, default=12, help="settings of the Pareto front to print, cheapest first")
    a = ap.parse_args(argv)
    groups: list[tuple[str, list[list[float]]]] = []
    max_epochs, patience = 0, 10**9
    for r in a.runs:
        if not (r / "groups.json").is_file():
            print(f"asha_replay: {r}: not a run folder (no groups.json)", file=sys.stderr)
            return 2
        g, me, p = load_curves(r)
        groups += [(f"{r.name}:{k}", v) for k, v in sorted(g.items())]
        max_epochs, patience = max(max_epochs, me), min(patience, p)
    pats = a.patience or list(range(2, patience + 1))
    if bad := [p for p in pats if not 1 <= p <= patience]:
        print(f"asha_replay: --patience {bad[0]}: the curves ran with patience {patience}; "
              f"only 1..{patience} can be replayed", file=sys.stderr)
        return 2
    if bad_g := [n for n, c in groups if len(c) < 2]:
        print(f"asha_replay: group {bad_g[0]} has fewer than 2 configs", file=sys.stderr)
        return 2
    graces = a.grace or [g for g in (1, 2, 3, 4, 6) if g <= max_epochs]
    if bad := [g for g in graces if not 1 <= g <= max_epochs]:
        print(f"asha_replay: --grace {bad[0]}: the curves ran at most {max_epochs} epochs; only 1..{max_epochs} "
              "can be replayed", file=sys.stderr)
        return 2
    if any(f < 2 for f in a.rf) or a.orders < 1 or a.concurrency < 1:
        print("asha_replay: --rf must be >= 2, --orders and --concurrency >= 1", file=sys.stderr)
        return 2
    settings = [Setting(0, 0, p) for p in pats] + [Setting(g, f, p) for g in graces for f in a.rf for p in pats]
    rng = np.random.default_rng(a.seed)
    # A case: (group, the candidate's curves in start order, target, reference's epochs, reference's best).
    cases: list[tuple[str, list[list[float]], float, int, float]] = []
    if a.draws:
        pooled: dict[str, list[list[float]]] = {}
        for n, c in groups:
            pooled.setdefault(n.split(":", 1)[1], []).extend(c)
        if short := [g for g, c in pooled.items() if len(c) < 2 * a.draws]:
            print(f"asha_replay: --draws {a.draws}: group {short[0]} has {len(pooled[short[0]])} configs in all; "
                  f"two disjoint searches need {2 * a.draws}", file=sys.stderr)
            return 2
        groups = sorted(pooled.items())
        for name, c in groups:
            for _ in range(a.orders):
                perm = rng.permutation(len(c))
                ref, cand = [c[i] for i in perm[:a.draws]], [c[i] for i in perm[a.draws:2 * a.draws]]
                rb = min(min(x) for x in ref)
                cases.append((name, cand, rb * (1 + a.tolerance), sum(len(x) for x in ref), rb))
        what = (f"two disjoint random searches of {a.draws} configs per group drawn from the pooled curves: "
                f"the reference runs every config to its end, the candidate runs under the setting")
    else:
        for n, c in groups:
            b = min(min(x) for x in c)
            for _ in range(a.orders):
                perm = rng.permutation(len(c))
                cases.append((n, [c[i] for i in perm], b * (1 + a.tolerance), sum(len(x) for x in c), b))
        what = "each group's own configs in random orders under the setting (pruning loss only)"
    print(f"{len(groups)} groups ({', '.join(n for n, _ in groups)}), {sum(len(c) for _, c in groups)} configs, "
          f"max_epochs {max_epochs}, curves' patience {patience}; {a.orders} draws each, "
          f"concurrency {a.concurrency}; {what}; target: the reference's best + {100 * a.tolerance:.1f} %")
    rows = []
    for s in settings:
        spent, reach, gaps = [], [], []
        hits: dict[str, list[bool]] = {}
        for name, cand, target, ref_total, ref_best in cases:
            pts, total = replay(cand, list(range(len(cand))), s, max_epochs=max_epochs, concurrency=a.concurrency)
            spent.append(total / ref_total)
            gaps.append(100 * (pts[-1][1] / ref_best - 1))
            first = next((ep for ep, b in pts if b <= target), None)
            hits.setdefault(name, []).append(first is not None)
            if first is not None:
                reach.append(first / ref_total)
        flat = [h for v in hits.values() for h in v]
        rows.append((s, float(np.mean(spent)), float(np.mean(flat)), float(np.median(reach)) if reach else math.nan,
                     float(np.mean(gaps)), min(float(np.mean(v)) for v in hits.values()),
                     float(np.mean([r <= 1 / 3 for r in reach])) * float(np.mean(flat)) if reach else 0.0))
    print(f"\n{'setting':<32} {'epochs':>7} {'reached':>8} {'worst grp':>9} {'to target':>9} {'<= 1/3':>7} "
          f"{'final gap':>9}")
    print(f"{'':<32} {'(share)':>7} {'(share)':>8} {'(share)':>9} {'(median)':>9} {'(share)':>7} {'(mean %)':>9}")
    base = [r for r in rows if r[0].grace == 0 and r[0].patience == patience]
    # The Pareto front: no other setting spends fewer epochs AND reaches the target as often
    # AND ends as close; cheapest first.
    front = [r for r in rows if not any(o[1] <= r[1] and o[2] >= r[2] and o[4] <= r[4] and o != r
                                         and (o[1], -o[2], o[4]) != (r[1], -r[2], r[4]) for o in rows)]
    for r in base + sorted((r for r in front if r not in base), key=lambda r: r[1])[:a.top]:
        s, sp, rc, rh, gp, worst, third = r
        print(f"{s.label():<32} {sp:>7.2f} {rc:>8.2f} {worst:>9.2f} {rh:>9.2f} {third:>7.2f} {gp:>+9.2f}")
    print("\nepochs: trial-epochs spent / the full curves' total; reached: share of (group, order) whose best "
          "came within the target; worst grp: the lowest per-group share; to target: trial-epochs when it "
          "first did / the reference's total (median over those that did); <= 1/3: share that reached it within a third "
          "of the reference's epochs (the issue's goal); final gap: the sweep's final best vs the reference's best")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

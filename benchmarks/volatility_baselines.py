"""Test-span RMSE of every baseline (persistence, drift, AR, GARCH(1,1), HAR-RV) for a spec's groups.

    .venv/bin/python benchmarks/volatility_baselines.py [--spec search_spaces/synthesizer_paper.yaml]
        [--set target.kind=volatility_q]

No training: the same baselines the report shows, fitted on each group's training span and
scored on its test span (``trainables.evaluation.baselines``). On the paper's task (BTC-USDT
1d realised volatility) this is the bar a volatility model must clear: HAR-RV (Corsi 2009),
not GARCH, which is worse than persistence there.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "search_spaces" / "synthesizer_paper.yaml"))
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)

    from search_spaces.loader import load_spec
    from search_spaces.recipes import prepare_groups
    from trainables.errors import TunefactoryError
    from trainables.evaluation.baselines import baselines

    warnings.filterwarnings("ignore")  # arch's convergence chatter; the numbers are what matter here
    try:
        spec = load_spec(a.spec, a.sets).spec
        groups = prepare_groups(spec)
    except TunefactoryError as e:
        print(f"volatility_baselines: {e}", file=sys.stderr)
        return 2
    print(f"{'group':<14} {'baseline':<12} {'test RMSE':>10} {'skill':>8}")
    for name, prepared in groups.items():
        for base, scores in baselines(prepared).items():
            rmse, skill = scores.get("test_rmse"), scores.get("test_skill")
            if rmse is None:
                print(f"{name:<14} {base:<12} {'-':>10} {'-':>8}")
                continue
            print(f"{name:<14} {base:<12} {rmse:>10.4f} {100 * (skill or 0.0):>+7.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

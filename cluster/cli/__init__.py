"""``tunefactory`` command line.

Every user error (bad spec, bad data, bad run directory) prints one line per problem on
stderr and exits 2, without a traceback; nothing is written under ``runs/`` before the
spec and the data have been validated.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tune snapshots its state after every trial checkpoint (that is what makes resume exact);
# its warning about snapshotting "too often" is noise here.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

from cluster.cli.data import register as register_data
from cluster.cli.json_output import add_json_option, emit
from cluster.cli.options import add_run_options, check_options
from cluster.cli.remote import register as register_remote
from cluster.cli.results import register as register_reports
from cluster.console import NORMAL, QUIET, VERBOSE, set_verbosity
from search_spaces.loader import load_spec
from search_spaces.summary import space_facts, space_table, spec_facts, summary
from trainables.errors import TunefactoryError

# The commands that run sweeps or read results import their modules when they run:
# `cluster.sweep` brings in Ray Tune (~1.5 s) and `reports` plotly and Optuna, and
# `tunefactory validate` takes 0.85 s without them (measured on 2 cores).


def _cmd_run(a: argparse.Namespace) -> int:
    from cluster.sweep import run_sweep
    loaded = load_spec(a.spec, a.overrides)
    run_sweep(loaded, name=a.name, storage=a.storage, address=a.address, num_cpus=a.num_cpus)
    return 0


def _cmd_resume(a: argparse.Namespace) -> int:
    from cluster.sweep import resume_sweep

    resume_sweep(a.run_dir, address=a.address, num_cpus=a.num_cpus, retry_failed=a.retry_failed,
                 trust_run_dir=a.trust_run_dir)
    return 0


def _cmd_validate(a: argparse.Namespace) -> int:
    loaded = load_spec(a.spec, a.overrides)
    if a.json:
        emit({"ok": True, **spec_facts(loaded)})
    else:
        print(summary(loaded))
    return 0


def _cmd_space(a: argparse.Namespace) -> int:
    loaded = load_spec(a.spec, a.overrides)
    if a.json:
        emit(space_facts(loaded))
    else:
        print(space_table(loaded))
    return 0


def version() -> str:
    """``tunefactory X.Y.Z`` from the installed package's metadata (``unknown`` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _dist_version

    try:
        v = _dist_version("tunefactory")
    except PackageNotFoundError:
        v = "unknown"
    return f"tunefactory {v} (Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (public so the README and tests can list the commands)."""
    p = argparse.ArgumentParser(prog="tunefactory", description="Hyperparameter and indicator-subset "
                                "search for crypto forecasting models on Ray Tune + Keras.",
                                epilog="Example: tunefactory run search_spaces/laptop.yaml")
    p.add_argument("--version", action="version", version=version())
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a sweep and write its leaderboard")
    add_run_options(r)
    r.add_argument("--address", help="Ray cluster address ('auto' inside a cluster); default: local Ray")
    r.add_argument("--num-cpus", type=int, help="CPUs for the local Ray instance (default: all)")
    r.set_defaults(fn=_cmd_run)

    rs = sub.add_parser("resume", help="continue an interrupted sweep (finished trials are kept)")
    rs.add_argument("run_dir", help="the run folder (or s3:// / gs:// URI) that `tunefactory run` printed")
    rs.add_argument("--address", help="Ray cluster address ('auto' inside a cluster); default: local Ray")
    rs.add_argument("--num-cpus", type=int, help="CPUs for the local Ray instance (default: all)")
    rs.add_argument("--retry-failed", action="store_true",
                    help="also run again the trials that failed (they already had max_failures retries)")
    rs.add_argument("--trust-run-dir", action="store_true",
                    help="skip the check that the run's pickled state (tuner.pkl, searcher state) was signed by "
                    "this user's or team's key; RISK: a crafted file in the folder runs code as you")
    rs.set_defaults(fn=_cmd_resume)

    v = sub.add_parser("validate", help="check a spec and summarise it (exit 2 on errors)")
    v.add_argument("spec", type=Path, help="sweep spec (YAML), e.g. search_spaces/laptop.yaml")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, parsed as YAML: --set training.max_epochs=3")
    add_json_option(v)
    v.set_defaults(fn=_cmd_validate)

    s = sub.add_parser("space", help="size of the search space, trials and trial-epochs")
    s.add_argument("spec", type=Path, help="sweep spec (YAML), e.g. search_spaces/factory.yaml")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, parsed as YAML: --set search.num_samples=100")
    add_json_option(s)
    s.set_defaults(fn=_cmd_space)

    # One module per command group: results (report/export/forecast/confirm), data, remote.
    register_reports(sub)
    register_data(sub)
    register_remote(sub)
    for command in _leaf_parsers(p):
        add_verbosity_options(command)
        name = command.prog.removeprefix("tunefactory ")
        command.epilog = "example:\n  " + "\n  ".join(EXAMPLES[name])
        command.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example's lines
    return p


#: One or two ready-to-run lines per command, shown under its ``--help`` (a test checks
#: every command has one and that each names its command).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": ("tunefactory run search_spaces/laptop.yaml",
            "tunefactory run search_spaces/laptop.yaml --set search.num_samples=4 --storage /scratch/runs"),
    "resume": ("tunefactory resume runs/laptop",),
    "validate": ("tunefactory validate search_spaces/factory.yaml --set 'data.assets=[BTC-USDT]'",),
    "space": ("tunefactory space search_spaces/factory.yaml --json",),
    "report": ("tunefactory report runs/laptop",),
    "export": ("tunefactory export runs/laptop --registry winners/",),
    "refit": ("tunefactory refit winners/ --asset BTC-USDT --timeframe 1d --data data/user",),
    "forecast": ("tunefactory forecast --asset BTC-USDT --timeframe 1d --registry winners/",),
    "confirm": ("tunefactory confirm runs/laptop --top-k 3 --seeds 5 --folds 3",),
    "data fetch": ("tunefactory data fetch --asset BTC-USDT --timeframe 1h --since 2024-01-01 --out data/user",),
    "data list": ("tunefactory data list data/user",),
    "data check": ("tunefactory data check data/user/BTC-USDT_1h.csv",),
    "submit": ("tunefactory submit search_spaces/laptop.yaml --address http://127.0.0.1:8265 --wait",),
    "jobs": ("tunefactory jobs list --address http://127.0.0.1:8265",
             "tunefactory jobs logs JOB_ID --follow --address http://127.0.0.1:8265"),
    "slurm": ("tunefactory slurm search_spaces/factory.yaml --nodes 2 --gpus-per-node 4 --time 04:00:00 --dry-run",),
}


def _leaf_parsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                out.extend(_leaf_parsers(sp) or [sp])
    return out


def add_verbosity_options(p: argparse.ArgumentParser) -> None:
    """``-q`` / ``-v`` (see :mod:`cluster.console`)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true",
                   help="only result lines and errors (no per-trial progress)")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also Ray's, Tune's, Optuna's and TensorFlow's own log lines (always kept in the run "
                        "folder's tunefactory.log)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tunefactory`` console script."""
    args = build_parser().parse_args(argv)
    set_verbosity(QUIET if getattr(args, "quiet", False) else VERBOSE if getattr(args, "verbose", False) else NORMAL)
    try:
        check_options(args)
        return int(args.fn(args) or 0)
    except TunefactoryError as e:
        for line in str(e).splitlines():
            print(line, file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # `tunefactory ... | head`: the reader left; say nothing more (and let Python not complain at exit).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("tunefactory: interrupted; continue with `tunefactory resume RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Options shared by every command that starts a sweep (``run``, ``submit``, ``slurm``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STORAGE_HELP = ("root folder or URI for runs: a path, NFS mount, s3://BUCKET/PATH or gs://BUCKET/PATH "
                "(default: the spec's storage, 'runs')")


def tracker_override(value: str) -> str:
    """``--tracker KIND=VALUE`` as the ``--set`` override it stands for."""
    kind, sep, arg = value.partition("=")
    if kind == "mlflow" and sep and arg:
        return f"tracking.mlflow={json.dumps(arg)}"
    if kind == "wandb" and sep and arg:
        project, _, mode = arg.partition(":")
        return f"tracking.wandb={json.dumps({'project': project, 'mode': mode or 'offline'})}"
    if kind == "tensorboard" and arg in ("on", "off"):
        return f"tracking.tensorboard={'true' if arg == 'on' else 'false'}"
    raise argparse.ArgumentTypeError(f"{value!r}: use mlflow=URI_OR_FOLDER, wandb=PROJECT[:offline|online] or "
                                     "tensorboard=on|off")


def add_run_options(p: argparse.ArgumentParser, *, storage_help: str = STORAGE_HELP) -> None:
    """The options every sweep-starting command shares: SPEC, --name, --storage, --set."""
    p.add_argument("spec", type=Path, help="sweep spec (YAML), e.g. search_spaces/laptop.yaml")
    p.add_argument("--name", help="run name (default: the spec's name; never overwrites a run)")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, parsed as YAML: --set 'data.assets=[BTC-USDT]'")
    p.add_argument("--tracker", dest="overrides", action="append", type=tracker_override, metavar="KIND=VALUE",
                   help="log every trial to a tracker too (the spec's `tracking:`): mlflow=URI_OR_FOLDER, "
                        "wandb=PROJECT[:offline|online], tensorboard=off")

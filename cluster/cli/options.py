"""Options shared by every command that starts a sweep (``run``, ``submit``, ``slurm``)."""

from __future__ import annotations

import argparse
from pathlib import Path

STORAGE_HELP = ("root folder or URI for runs: a path, NFS mount, s3://BUCKET/PATH or gs://BUCKET/PATH "
                "(default: the spec's storage, 'runs')")


def add_run_options(p: argparse.ArgumentParser, *, storage_help: str = STORAGE_HELP) -> None:
    """The options every sweep-starting command shares: SPEC, --name, --storage, --set."""
    p.add_argument("spec", type=Path, help="sweep spec (YAML), e.g. search_spaces/laptop.yaml")
    p.add_argument("--name", help="run name (default: the spec's name; never overwrites a run)")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, parsed as YAML: --set 'data.assets=[BTC-USDT]'")

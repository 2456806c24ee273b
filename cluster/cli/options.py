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


def check_options(a: argparse.Namespace) -> None:
    """Refuse option values that cannot work, before anything starts or is written.

    argparse's own errors print the usage too (two lines); these are ours, one line, exit 2.

    Raises:
        UsageError: ``--num-cpus`` below 1, ``--storage`` naming a file, or a Jobs API
            ``--address`` that is not an http(s) URL.
    """
    from urllib.parse import urlsplit

    from trainables.errors import UsageError
    from trainables.records import excerpt

    cpus = getattr(a, "num_cpus", None)
    if cpus is not None and cpus < 1:
        raise UsageError(f"--num-cpus: must be >= 1; got {cpus}")
    storage = getattr(a, "storage", None)
    if storage and "://" not in storage and Path(storage).exists() and not Path(storage).is_dir():
        raise UsageError(f"--storage {excerpt(storage, 120)}: is a file, not a folder; pass a folder (created when "
                         "missing) or an s3:// / gs:// URI")
    address = getattr(a, "address", None)
    if a.command in ("submit", "jobs") and address is not None:
        # HOST:PORT alone is fine (the Jobs client adds http://); another scheme is not.
        u = urlsplit(address if "://" in address else f"http://{address}")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise UsageError(f"--address {excerpt(address, 120)}: expected the Ray dashboard's http(s) URL, "
                             "e.g. http://HOST:8265 or HOST:8265")


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

"""The command line's conventions: --version and help text on every argument."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from cluster.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_version_prints_the_project_version_and_exits_0() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "--version"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(f"tunefactory {declared} (Python "), out.stdout


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                out[name] = sp
                out.update({f"{name} {k}": v for k, v in _subparsers(sp).items()})
    return out


@pytest.mark.parametrize("command", sorted(_subparsers(build_parser())))
def test_every_argument_of_every_command_has_help_text(command: str) -> None:
    sp = _subparsers(build_parser())[command]
    if any(isinstance(a, argparse._SubParsersAction) for a in sp._actions):
        return  # a command group: its subcommands are checked one by one
    missing = [a.dest for a in sp._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, f"`tunefactory {command}`: arguments without help text: {missing}"

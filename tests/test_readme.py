"""The README's command lines and sample messages are what the tool really accepts and prints.

Every ``tunefactory`` line of the README's CLI block is parsed by the real parser (each
bracketed option must exist on that command); the cheap ones (validate, space, data list,
data check, --version) are run for real; the two sample error lines are reproduced
byte for byte from files that contain the errors they describe.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cluster.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

#: Placeholders of the README's synopsis lines and a concrete value for each.
PLACEHOLDERS = {
    "SPEC": "search_spaces/laptop.yaml", "RUN_DIR": "runs/laptop", "REGISTRY": "winners", "FILE": "x.csv",
    "DIR": "data", "N": "2", "A": "BTC-USDT", "T": "1d", "TIME": "2025-01-01", "DATE": "2024-01-01",
    "JOB": "raysubmit_1", "HOST": "127.0.0.1", "G": "1", "HH:MM:SS": "01:00:00", "key=value": "search.seed=1",
}


def _cli_block() -> list[str]:
    block = README.split("## CLI", 1)[1].split("```", 2)[1]
    return [ln for ln in block.splitlines() if ln.startswith("tunefactory ")]


def _concrete(line: str) -> tuple[list[str], list[str]]:
    """(the required part as argv, the bracketed options) of one synopsis line."""
    line = line.split("  #", 1)[0].strip()
    optional = re.findall(r"\[(--[\w-]+)", line)
    required = re.sub(r"\[[^\[\]]*(\[[^\]]*\])?[^\[\]]*\]", "", line)
    words = [PLACEHOLDERS.get(w, w) for w in shlex.split(required)[1:]]
    words = [w.replace("HOST", "127.0.0.1") for w in words]
    if words[:1] == ["jobs"]:  # `jobs status|logs|stop|list [JOB]`: the first action stands for all
        words[1] = words[1].split("|")[0]
        words.insert(2, "raysubmit_1")
    return words, optional


def test_the_cli_block_lists_every_command_and_each_line_parses() -> None:
    lines = _cli_block()
    assert len(lines) >= 15
    parser = build_parser()
    seen = set()
    for line in lines:
        argv, optional = _concrete(line)
        ns = parser.parse_args(argv)  # argparse exits 2 (SystemExit) on a stale line
        seen.add(argv[0] if argv[0] not in ("data", "jobs") else " ".join(argv[:2]))
        sub = next(a for a in parser._subparsers._group_actions if a.dest)  # type: ignore[union-attr]
        leaf = sub.choices[argv[0]]
        if argv[0] in ("data",):
            leaf = next(a for a in leaf._subparsers._group_actions).choices[argv[1]]  # type: ignore[union-attr]
        known = {s for a in leaf._actions for s in a.option_strings}
        assert set(optional) <= known, (line, set(optional) - known)
        assert ns is not None
    assert {"run", "resume", "validate", "space", "report", "export", "refit", "confirm", "forecast",
            "data fetch", "data list", "data check", "submit", "jobs status", "slurm"} <= seen


@pytest.mark.parametrize("argv", [
    ["--version"],
    ["validate", "search_spaces/laptop.yaml"],
    ["space", "search_spaces/laptop.yaml"],
    ["data", "list"],
    ["data", "check", "trainables/data/embedded/ohlcv/BTC-USDT_1d.csv"],
], ids=lambda a: " ".join(a))
def test_the_cheap_readme_commands_run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(argv)
    except SystemExit as e:  # --version exits through argparse
        rc = int(e.code or 0)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert out.out.strip() and "Traceback" not in out.err


def _sample_errors() -> list[str]:
    block = README.split("Every user error", 1)[1].split("```", 2)[1]
    return [ln for ln in block.splitlines() if ln.strip()]


def test_the_readme_sample_errors_are_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    spec_line, data_line = _sample_errors()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "search_spaces").mkdir()
    spec = (ROOT / "search_spaces" / "laptop.yaml").read_text()
    spec = spec.replace("learning_rate: {type: loguniform, low: 3.0e-4, high: 3.0e-3}",
                        "learning_rate: {type: loguniform, low: 0.1, high: 0.01}")
    (tmp_path / "search_spaces" / "x.yaml").write_text(spec)
    assert main(["validate", "search_spaces/x.yaml"]) == 2
    assert capsys.readouterr().err.strip() == spec_line

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "BTC-USDT_1d.csv").write_text(
        "timestamp,open,high,low,close,volume\n"
        "2023-01-01T00:00:00Z,1,2,0.5,1.5,10\n"
        "2023-01-03T00:00:00Z,1,2,0.5,1.5,10\n"
        "2023-01-02T00:00:00Z,1,2,0.5,1.5,10\n")
    assert main(["data", "check", "data/BTC-USDT_1d.csv"]) == 2
    assert capsys.readouterr().err.strip() == data_line

"""What a sweep prints: progress with ETA and "stopped by ASHA" by default, three lines with -q,
third-party log lines only in the run folder's log file (real sweeps in a subprocess)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# One trial at a time and a grace period of one epoch: from the second trial on, a trial
# worse than the median of those before it at epoch 1 is stopped there (fixed seed, so the
# same trials are stopped every time).
ASHA_SPEC = """\
name: asha
data: {assets: [BTC-USDT], timeframes: [1d], start: 2021-01-01}
window: {lookback: 4}
features: {pool: [log_return, rsi, hl_spread], min_size: 1, always: [log_return_1]}
model:
  families:
    mlp: {units: {type: choice, values: [4, 32]}}
training: {max_epochs: 3, patience: 3, batch_size: 64, learning_rate: {type: loguniform, low: 1.0e-4, high: 3.0e-2}}
search: {algorithm: random, num_samples: 6, seed: 3, max_concurrent: 1}
scheduler: {kind: asha, grace_period: 1, reduction_factor: 2}
resources: {cpus: 1}
"""

THIRD_PARTY = re.compile(r"(INFO|WARNING) \w+\.py:\d+ --|ExperimentalWarning|tensorflow|oneDNN|TensorBoard|"
                         r"Configuration for experiment|View detailed results", re.IGNORECASE)


def _run(tmp_path: Path, spec_text: str, *args: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-m", "cluster.cli", "run", str(spec), "--storage", str(tmp_path / "runs"),
                           "--num-cpus", "2", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_default_output_has_eta_best_so_far_and_asha_stops_and_no_library_lines(tmp_path: Path) -> None:
    out = _run(tmp_path, ASHA_SPEC)
    assert out.returncode == 0, out.stderr[-3000:]
    trial_lines = [ln for ln in out.stdout.splitlines() if ln.startswith("[")]
    assert len(trial_lines) == 6, out.stdout
    for i, ln in enumerate(trial_lines, 1):
        assert re.match(rf"\[\s*{i}/6\]\s+\d+s ETA\s+(\d+s|\d+m\d\ds)\s+BTC-USDT/1d\s+mlp\s+val_rmse_best=", ln), ln
        assert re.search(r" best [+-]\d+\.\d\d%$", ln), ln
    stopped = [ln for ln in trial_lines if "(stopped by ASHA)" in ln]
    assert stopped, "\n".join(trial_lines)
    # max_epochs 3, grace 1, reduction factor 2: the rungs are at epochs 1 and 2, so a
    # stopped trial ends at one of them, never at the last epoch.
    assert all(re.search(r"epochs=[12] \(stopped by ASHA\)", ln) for ln in stopped), "\n".join(stopped)
    assert not THIRD_PARTY.search(out.stdout + out.stderr), out.stdout + out.stderr
    log = (tmp_path / "runs" / "asha" / "tunefactory.log").read_text()
    assert "Started a local Ray instance" in log  # Ray's own lines are kept, in the run folder
    assert sum("(stopped by ASHA)" in ln for ln in log.splitlines()) == len(stopped)


def test_quiet_prints_three_result_lines_and_nothing_else(tmp_path: Path) -> None:
    spec = ASHA_SPEC.replace("num_samples: 6", "num_samples: 2").replace("max_epochs: 3", "max_epochs: 1")
    out = _run(tmp_path, spec, "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stdout
    assert lines[0].startswith("tunefactory: 1 asset/timeframe groups prepared")
    assert lines[1] == f"tunefactory: leaderboard {tmp_path / 'runs' / 'asha' / 'report' / 'index.html'}"
    assert re.fullmatch(r"tunefactory: trials (\d+ finished)?(, )?(\d+ stopped)?", lines[2]), lines[2]
    assert out.stderr == "", out.stderr


@pytest.mark.parametrize("flags", [["-q", "-v"], ["--quiet", "--verbose"]])
def test_quiet_and_verbose_exclude_each_other(flags: list[str], tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "validate", "search_spaces/laptop.yaml", *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "not allowed with argument" in out.stderr

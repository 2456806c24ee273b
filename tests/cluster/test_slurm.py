"""`tunefactory slurm`: the rendered batch script is valid bash (bash -n, shellcheck), and it runs for real."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cluster.cli import main
from cluster.remote.slurm import SlurmError, SlurmJob, render
from tests.cluster.helpers import BIN, ROOT, SlurmCluster

VARIANTS = [
    {"nodes": 1, "gpus_per_node": 0},
    {"nodes": 4, "gpus_per_node": 8, "cpus_per_node": 32, "partition": "gpu", "account": "ml-team", "exclusive": True},
    {"nodes": 2, "gpus_per_node": 1, "name": "my run", "overrides": ["search.num_samples=3", "data.assets=[BTC-USDT]"]},
]


def _job(tmp_path: Path, **kw: object) -> SlurmJob:
    base: dict[str, object] = {"spec": tmp_path / "spec with space.yaml", "nodes": 1, "gpus_per_node": 0,
                               "time": "00:30:00", "storage": str(tmp_path / "runs")}
    base.update(kw)
    return SlurmJob(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", VARIANTS, ids=["1-node-cpu", "4-node-8-gpu", "2-node-overrides"])
def test_rendered_script_passes_bash_n_and_shellcheck(tmp_path: Path, kw: dict[str, object]) -> None:
    text = render(_job(tmp_path, **kw))
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    assert text.startswith("#!/bin/bash\n")
    assert f"#SBATCH --nodes={kw['nodes']}" in text
    assert ("#SBATCH --gpus-per-node=" in text) == bool(kw["gpus_per_node"])
    assert "srun --overlap" in text and "--block" in text  # Ray stays inside the job's steps
    assert "RAY_AUTH_MODE=token" in text and "--dashboard-host=127.0.0.1" in text
    assert "SLURM_GPUS_ON_NODE" in text  # GPUs per node from the allocation
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (cluster/scripts/install_test_deps.sh installs it)")
    res = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stdout


def test_project_shell_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (cluster/scripts/install_test_deps.sh installs it)")
    scripts = sorted((ROOT / "cluster" / "scripts").glob("*.sh"))
    assert scripts
    res = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stdout


@pytest.mark.parametrize(("kw", "match"), [
    ({"nodes": 0}, r"--nodes must be >= 1; got 0"),
    ({"gpus_per_node": -1}, r"--gpus-per-node must be >= 0; got -1"),
    ({"time": "two hours"}, r"--time must be a Slurm time such as 02:00:00.*got 'two hours'"),
    ({"partition": "gpu; rm -rf /"}, r"--partition may hold letters, digits"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, kw: dict[str, object], match: str) -> None:
    with pytest.raises(SlurmError, match=match):
        render(_job(tmp_path, **kw))


def test_dry_run_prints_the_script_and_submits_nothing(tiny_spec: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["slurm", str(tiny_spec), "--nodes", "2", "--gpus-per-node", "4", "--time", "01:00:00",
               "--storage", str(tmp_path / "runs"), "--set", "search.num_samples=2", "--dry-run"])
    out = capsys.readouterr()
    assert rc == 0
    assert "#SBATCH --nodes=2" in out.out and "#SBATCH --gpus-per-node=4" in out.out
    assert f"--storage {tmp_path / 'runs'}" in out.out and "--set search.num_samples=2" in out.out
    assert not (tmp_path / "runs").exists()


def test_bad_spec_fails_before_anything_is_queued(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {assets: [BTC-USDT], timeframes: [1d]}\n")
    rc = main(["slurm", str(bad), "--nodes", "1", "--time", "10", "--storage", str(tmp_path / "runs")])
    assert rc == 2 and capsys.readouterr().err.strip()
    assert not (tmp_path / "runs").exists()


def test_tunefactory_slurm_runs_a_sweep_on_a_real_slurm(slurm_cluster: SlurmCluster, tmp_path: Path,
                                                        tiny_spec_text: str) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text)
    storage = tmp_path / "runs"
    res = subprocess.run(
        [str(BIN / "tunefactory"), "slurm", str(spec), "--nodes", "1", "--gpus-per-node", "0",
         "--cpus-per-node", "2", "--time", "00:20:00", "--name", "sl", "--storage", str(storage),
         "--set", "search.num_samples=3", "--wait"],
        cwd=ROOT, env=slurm_cluster.env, capture_output=True, text=True, timeout=600, check=False)
    logs = sorted((storage / "slurm").glob("sl-*.out"))
    log_text = logs[0].read_text() if logs else "(no job log)"
    for log in logs:  # Ray's session files of the job (the script keeps them for debugging)
        shutil.rmtree(f"/tmp/tf-ray-{log.stem.rsplit('-', 1)[1]}", ignore_errors=True)
    assert res.returncode == 0, res.stdout + res.stderr + log_text[-5000:]
    job_id = res.stdout.splitlines()[0]
    assert job_id.isdigit()
    assert "Ray cluster of 1 node(s) up" in log_text
    board = pd.read_csv(storage / "sl" / "report" / "leaderboard.csv")
    assert len(board) == 3 and set(board["status"]) == {"finished"}
    scripts = list((storage / "slurm").glob("sl-*.sbatch"))
    assert len(scripts) == 1
    subprocess.run(["bash", "-n", str(scripts[0])], check=True)

"""`tunefactory slurm`: the rendered batch script is valid bash (bash -n, shellcheck), and it runs for real."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cluster.cli import main
from cluster.remote.slurm import SlurmError, SlurmJob, render
from search_spaces.schema.spec import RUN_NAME_ALLOWED
from tests.cluster.helpers import BIN, ROOT, SlurmCluster

VARIANTS = [
    {"nodes": 1, "gpus_per_node": 0},
    {"nodes": 4, "gpus_per_node": 8, "cpus_per_node": 32, "partition": "gpu", "account": "ml-team", "exclusive": True},
    {"nodes": 2, "gpus_per_node": 1, "name": "my_run-2.v1", "overrides": ["search.num_samples=3", "data.assets=[BTC-USDT]"]},
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


# ----------------------------------------------------------------------------- hostile values (issue 14, item 2)
#: Storage roots that try to run `touch MARKER` from the batch script ({m}: the marker path).
HOSTILE_STORAGE = [
    "runs\ntouch {m}",              # a newline after `#SBATCH --output=` would start a command
    "runs\rtouch {m}",
    "runs\x0btouch{m}",
    "$(touch {m})",
    "$(touch${{IFS}}{m})",
    "`touch${{IFS}}{m}`",
    "runs;touch${{IFS}}{m}",
    "runs&&touch${{IFS}}{m}",
    "runs'\"$(touch${{IFS}}{m})\"'",
    "runs\\'touch${{IFS}}{m}",
    "runs|touch${{IFS}}{m}>x",
]
HOSTILE_NAMES = ["../evil", "a/b", "/abs", "a..b", "..", "x\ntouch M", "$(touch M)", "`touch M`", "a;b",
                 "my run", "it's", "x" * 101, "", "caf\u00e9"]


def _argv_of_run_line(text: str, cwd: Path) -> list[str]:
    """The arguments bash would pass to `tunefactory run` on the script's last line (printed, not run)."""
    line = text.rstrip("\n").splitlines()[-1]
    prefix = '"$PYTHON" -m cluster.cli run '
    assert line.startswith(prefix), line
    res = subprocess.run(["bash", "-c", "printf '%s\\0' " + line.removeprefix(prefix)], cwd=cwd,
                         env={"PATH": "/usr/bin:/bin", "HEAD_IP": "h", "PORT": "1"}, capture_output=True,
                         check=True)
    return res.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize("hostile", HOSTILE_STORAGE, ids=[f"storage{i}" for i in range(len(HOSTILE_STORAGE))])
def test_hostile_storage_is_refused_or_quoted(tmp_path: Path, hostile: str) -> None:
    marker = tmp_path / "MARKER"
    storage = f"{tmp_path}/{hostile.format(m=marker)}"
    baseline = render(_job(tmp_path)).splitlines()
    try:
        text = render(_job(tmp_path, storage=storage, name="ok-run"))
    except SlurmError as e:
        lines = str(e).splitlines()
        assert len(lines) == 1 and lines[0].startswith("--storage: "), str(e)
        assert "#SBATCH --output=" in lines[0] or "control character" in lines[0], lines[0]
        return
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)
    lines = text.splitlines()
    # Same shape as a benign script: the same directives, nothing else at the start of a line.
    assert [ln.split("=")[0] for ln in lines if ln.startswith("#SBATCH")] == \
        [ln.split("=")[0] for ln in baseline if ln.startswith("#SBATCH")]
    assert len(lines) == len(baseline), "a value spilled onto a line of its own"
    assert not any(ln.lstrip().startswith(("touch", "$(", "`")) for ln in lines)
    argv = _argv_of_run_line(text, tmp_path)
    assert argv[argv.index("--storage") + 1] == storage and argv[argv.index("--name") + 1] == "ok-run"
    assert not marker.exists()
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (cluster/scripts/install_test_deps.sh installs it)")
    # SC2016 ("expressions don't expand in single quotes") is the point here: the value stays literal.
    res = subprocess.run(["shellcheck", "--severity=style", "--exclude=SC2016", str(script)], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stdout


def test_hostile_spec_path_and_overrides_are_quoted(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    spec = tmp_path / f"s$(touch {marker});`touch {marker}`|touch {marker}&& touch '{marker}'.yaml"
    overrides = [f"name=$(touch {marker})", f"x='; touch {marker}; '", f'y="`touch {marker}`"']
    text = render(_job(tmp_path, spec=spec, overrides=overrides))
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert not any(ln.lstrip().startswith("touch") for ln in text.splitlines())
    argv = _argv_of_run_line(text, tmp_path)
    assert argv[0] == str(spec)
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--set"] == overrides
    assert not marker.exists()


@pytest.mark.parametrize(("kw", "key"), [
    ({"spec": Path("/x/s\ntouch M.yaml")}, "SPEC"),
    ({"overrides": ["y=\ntouch M"]}, "--set"),
    ({"python": "/usr/bin/python3\ntouch M"}, "--python"),
])
def test_values_with_newlines_are_refused(tmp_path: Path, kw: dict[str, object], key: str) -> None:
    with pytest.raises(SlurmError) as e:
        render(_job(tmp_path, **kw))
    lines = str(e.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{key}: ") and "control character" in lines[0], lines


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[f"name{i}" for i in range(len(HOSTILE_NAMES))])
def test_hostile_names_are_refused_everywhere(tmp_path: Path, tiny_spec: Path, name: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SlurmError, match=r"^--name must be 1-100 characters"):
        render(_job(tmp_path, name=name))
    for cmd in (["slurm", str(tiny_spec), "--nodes", "1", "--time", "10", "--dry-run"],
                ["submit", str(tiny_spec), "--address", "http://127.0.0.1:9"],
                ["run", str(tiny_spec)]):
        rc = main([*cmd, "--name", name, "--storage", str(tmp_path / "runs")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, (cmd[0], err)
        assert err[0] == f"--name must be {RUN_NAME_ALLOWED}; got {name!r}", err[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["a..b", "../x", "a/b", "x y"])
def test_spec_name_is_validated(tmp_path: Path, tiny_spec: Path, name: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["validate", str(tiny_spec), "--set", f"name={name}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"name: must be {RUN_NAME_ALLOWED}" in err[0], err


def test_spec_storage_with_a_newline_is_refused(tiny_spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["slurm", str(tiny_spec), "--nodes", "1", "--time", "10", "--dry-run",
               "--set", 'storage="runs\\ntouch /tmp/x"'])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "storage: must be a folder" in err[0] and "control characters" in err[0]

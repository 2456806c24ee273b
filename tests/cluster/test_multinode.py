"""A real two-node Ray cluster with token auth: `tunefactory submit` through the Jobs API, then `jobs`.

The head (127.0.0.2) and the worker (127.0.0.3) have one CPU each and distinct resources,
so a sweep of one-CPU trials must use both; Ray records each trial's node in its result
rows (``node_ip``).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.cluster.helpers import BIN, ROOT, RayCluster


def _tf(cluster: RayCluster, *args: str, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "tunefactory"), *args], cwd=ROOT, env=env or cluster.env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_submit_runs_sweep_on_both_nodes(two_node_cluster: RayCluster, tmp_path: Path, tiny_spec_text: str) -> None:
    c = two_node_cluster
    assert {n["node_ip"] for n in c.nodes()} == {"127.0.0.2", "127.0.0.3"}
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text)
    storage = tmp_path / "runs"
    # --no-install: this cluster runs from the project's own venv (a pip runtime env would
    # clone it); what `submit` installs by default is checked in test_submit_unit.py.
    res = _tf(c, "submit", str(spec), "--address", c.dashboard, "--name", "mn", "--storage", str(storage),
              "--set", "search.num_samples=4", "--no-install", "--wait")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    job_id = res.stdout.splitlines()[0]
    assert re.fullmatch(r"tunefactory-mn-\d{8}-\d{6}-[0-9a-f]{4}", job_id), job_id
    assert "SUCCEEDED" in out
    assert "node-local filesystem" in out  # two nodes, /tmp storage: the warning says why and what instead

    run = storage / "mn"
    trials = sorted(run.glob("trial_*"))
    assert len(trials) == 4
    nodes = set()
    for d in trials:
        rows = [json.loads(ln) for ln in (d / "result.json").read_text().splitlines() if ln.strip()]
        nodes |= {r["node_ip"] for r in rows}
    assert nodes == {"127.0.0.2", "127.0.0.3"}, f"trials ran on {nodes}"
    board = pd.read_csv(run / "report" / "leaderboard.csv")
    assert len(board) == 4 and set(board["status"]) == {"finished"}
    assert (run / "report" / "index.html").is_file()
    spec_on_cluster = yaml.safe_load((run / "spec.yaml").read_text())
    assert spec_on_cluster["search"]["num_samples"] == 4  # --set was applied before shipping

    status = _tf(c, "jobs", "status", job_id, "--address", c.dashboard)
    assert status.returncode == 0 and status.stdout.startswith(f"{job_id} SUCCEEDED"), status.stdout + status.stderr
    logs = _tf(c, "jobs", "logs", job_id, "--address", c.dashboard)
    assert logs.returncode == 0 and "tunefactory: leaderboard" in logs.stdout
    stop = _tf(c, "jobs", "stop", job_id, "--address", c.dashboard)
    assert stop.returncode == 0 and "already ended" in stop.stdout
    listed = _tf(c, "jobs", "list", "--address", c.dashboard)
    assert job_id in listed.stdout


@pytest.mark.parametrize(("token", "expect"), [
    ("not-the-cluster-token", "rejected the authentication token from RAY_AUTH_TOKEN (HTTP 403)"),
    (None, "requires token authentication and no token was sent"),
], ids=["wrong-token", "no-token"])
def test_cluster_rejecting_the_token_is_one_clear_line(two_node_cluster: RayCluster, tiny_spec: Path,
                                                       tmp_path: Path, token: str | None, expect: str) -> None:
    c = two_node_cluster
    env = {k: v for k, v in c.env.items() if not k.startswith("RAY_AUTH")}
    if token is None:
        env["RAY_AUTH_MODE"] = "disabled"
    else:
        env["RAY_AUTH_TOKEN"] = token
    res = _tf(c, "submit", str(tiny_spec), "--address", c.dashboard, "--storage", str(tmp_path), "--no-install",
              env=env, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    # TensorFlow's C++ start-up lines may come first (importing the spec schema loads it).
    assert expect in res.stderr.strip().splitlines()[-1], res.stderr
    assert res.stdout == ""


def test_run_against_the_cluster_with_a_wrong_token_says_so_and_writes_nothing(
        two_node_cluster: RayCluster, tiny_spec: Path, tmp_path: Path) -> None:
    c = two_node_cluster
    env = {k: v for k, v in c.env.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_TOKEN"] = "not-the-cluster-token"
    res = _tf(c, "run", str(tiny_spec), "--address", c.gcs, "--storage", str(tmp_path / "runs"), env=env,
              timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last == (f"{c.gcs}: the cluster rejected the authentication token from RAY_AUTH_TOKEN; use the "
                    "cluster's own token (`ray get-auth-token` on its head node)")
    assert not (tmp_path / "runs").exists()


def test_submit_with_default_settings_runs_sweep(two_node_cluster: RayCluster, tmp_path: Path,
                                                 tiny_spec_text: str) -> None:
    # What a cloud user runs first: no --no-install. A probe job asks the cluster which
    # pinned dependencies it lacks; this cluster runs from the project's venv, so the
    # sweep job gets no pip environment (before: Ray cloned the 2.7 GB venv on each node).
    c = two_node_cluster
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text)
    storage = tmp_path / "runs"
    t0 = time.monotonic()
    res = _tf(c, "submit", str(spec), "--address", c.dashboard, "--name", "dflt", "--storage", str(storage),
              "--set", "search.num_samples=2", "--wait")
    took = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert "the cluster has every pinned dependency; nothing to install" in res.stderr
    assert "SUCCEEDED" in out
    board = pd.read_csv(storage / "dflt" / "report" / "leaderboard.csv")
    assert len(board) == 2 and set(board["status"]) == {"finished"}
    job_id = res.stdout.splitlines()[0]
    listed = _tf(c, "jobs", "list", "--address", c.dashboard).stdout
    assert f"{job_id} SUCCEEDED" in listed and f"{job_id}-probe SUCCEEDED" in listed
    print(f"submit with default settings, nothing to install: {took:.0f}s")


def test_submit_installs_what_the_cluster_lacks(two_node_cluster: RayCluster, tmp_path: Path, tiny_spec_text: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The install path, end to end: one pinned package the cluster lacks (a 47 kB wheel
    # from the package index) is installed by the job's pip runtime env on every node
    # that runs a trial, and only that one; the sweep then completes.
    from cluster.remote import submit as sub

    c = two_node_cluster
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.setenv(k, c.env[k])
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    real = sub.worker_requirements
    monkeypatch.setattr(sub, "worker_requirements",
                        lambda *, gpu, root=ROOT: [*real(gpu=gpu, root=root), "pyjokes==0.8.3"])
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text)
    out = io.StringIO()
    t0 = time.monotonic()
    sub.submit(spec, address=c.dashboard, name="inst", storage=str(tmp_path / "runs"),
               overrides=["search.num_samples=2"], wait=True, out=out, timeout=900)
    took = time.monotonic() - t0
    assert "SUCCEEDED" in out.getvalue()
    board = pd.read_csv(tmp_path / "runs" / "inst" / "report" / "leaderboard.csv")
    assert len(board) == 2 and set(board["status"]) == {"finished"}
    setup_logs = "".join(p.read_text(errors="replace") for p in c.logs[0].parent.glob("*/session_latest/logs/"
                                                                                  "runtime_env_setup-*.log"))
    assert "Successfully installed pyjokes-0.8.3" in setup_logs
    print(f"submit installing one missing package: {took:.0f}s")


def test_probe_without_an_answer_means_install_everything(two_node_cluster: RayCluster, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A probe job that fails (here: a line it cannot parse as a requirement) gives no
    # answer: None, so submit installs every pin (and says so) instead of guessing "none".
    from cluster.remote.jobs import client
    from cluster.remote.submit import cluster_lacks, stage_project

    c = two_node_cluster
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.setenv(k, c.env[k])
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    stage_project(tmp_path / "stage", spec_raw={}, spec_name="probe")
    jc, addr, token = client(c.dashboard)
    assert cluster_lacks(jc, addr, token, tmp_path / "stage", ["pyyaml==0.1", "not a requirement ==="],
                         probe_id="tf-probe-bad", timeout=120) is None
    assert str(getattr(s := jc.get_job_status("tf-probe-bad"), "value", s)) == "FAILED"
    # The same probe with valid lines answers, from the cluster's own Python.
    assert cluster_lacks(jc, addr, token, tmp_path / "stage", ["pyyaml==0.1", "pyyaml>=5"], probe_id="tf-probe-ok",
                         timeout=120) == ["pyyaml==0.1"]

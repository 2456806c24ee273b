"""Fixtures for the cluster tests: real Ray nodes and a real Slurm, all on loopback.

Every process a fixture starts is recorded by PID (each in its own session), and the
teardown stops exactly those and their descendants, even when the test failed: no
``ray stop`` (it would kill every Ray on the machine), no ``pkill``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.helpers import BIN, SCRIPTS, RayCluster, SlurmCluster, free_port, ray_env, stop_tree


def _start(cmd: list[str], env: dict[str, str], log: Path) -> int:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=log.parent)
    return proc.pid


def _wait_for(cond, *, timeout: float, what: str, logs: list[Path]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A head (127.0.0.2, resource ``head_node``) and a worker (127.0.0.3, ``worker_node``), 1 CPU each.

    Token auth is on (a token made for this cluster, in a file); the dashboard and Jobs API
    listen on 127.0.0.1 only. Both nodes run ``ray start --block`` in their own session, so
    the teardown can stop them by PID.
    """
    import secrets

    if shutil.which("ray", path=str(BIN)) is None:
        pytest.skip(f"no `ray` CLI in {BIN}")
    try:
        import aiohttp_cors  # noqa: F401  (the dashboard, hence the Jobs API, needs ray[default])
    except ImportError:
        pytest.skip("the Ray Jobs API needs the dashboard: pip install 'ray[default]==2.60.0'")
    d = Path(f"/tmp/tf-rc-{secrets.token_hex(3)}")  # short: Ray's socket paths must stay < 108 chars
    d.mkdir()
    token = d / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = ray_env(token)
    port, dash = free_port(), free_port()
    ray_bin = str(BIN / "ray")
    head_log, worker_log = d / "head.log", d / "worker.log"
    cluster = RayCluster(f"http://127.0.0.1:{dash}", f"127.0.0.2:{port}", token, env, [head_log, worker_log],
                         ["127.0.0.2", "127.0.0.3"])
    try:
        cluster.pids.append(_start(
            [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.2", "--port", str(port),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
             "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
             "--num-cpus", "1", "--resources", '{"head_node": 1}', "--temp-dir", str(d / "h")],
            env, head_log))
        _wait_for(lambda: "Ray runtime started" in head_log.read_text(), timeout=90, what="the Ray head",
                  logs=cluster.logs)
        # Its own temp dir: two nodes sharing one would unpack job packages over each other.
        cluster.pids.append(_start(
            [ray_bin, "start", "--block", "--address", cluster.gcs, "--node-ip-address", "127.0.0.3",
             "--dashboard-agent-listen-port", str(free_port()), "--num-cpus", "1",
             "--resources", '{"worker_node": 1}', "--temp-dir", str(d / "w")],
            env, worker_log))
        _wait_for(lambda: sum(n["state"] == "ALIVE" for n in cluster.nodes()) == 2, timeout=90,
                  what="both Ray nodes", logs=cluster.logs)
        yield cluster
    finally:
        stop_tree(cluster.pids)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node Slurm (own munged, slurmctld, slurmd) for this module; stopped by PID afterwards."""
    import secrets

    missing = [b for b in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun") if not shutil.which(b)]
    if missing:
        pytest.skip(f"Slurm test needs {', '.join(missing)}: run cluster/scripts/install_test_deps.sh as root")
    if os.geteuid() != 0:
        pytest.skip("a one-node Slurm needs root (slurmd)")
    d = Path(f"/tmp/tf-slurm-{secrets.token_hex(3)}")
    up = subprocess.run(["bash", str(SCRIPTS / "slurm_one_node.sh"), "up", str(d)], capture_output=True,
                        text=True, timeout=120, check=False)
    try:
        assert up.returncode == 0, f"slurm_one_node.sh up failed:\n{up.stdout}\n{up.stderr}"
        env = ray_env(None)
        env.pop("RAY_AUTH_MODE", None)
        env["SLURM_CONF"] = str(d / "etc" / "slurm.conf")
        yield SlurmCluster(d, env)
    finally:
        subprocess.run(["bash", str(SCRIPTS / "slurm_one_node.sh"), "down", str(d)], capture_output=True,
                       timeout=120, check=False)
        shutil.rmtree(d, ignore_errors=True)

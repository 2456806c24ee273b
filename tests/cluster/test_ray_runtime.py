"""The driver's Ray seam: a local sweep's Ray is local whatever the environment names,
and listens on loopback only."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.cluster.helpers import descendants, is_loopback, listening_sockets, process_title, stop_tree

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import ray
from cluster.ray_runtime import init_ray
started = init_ray(None, num_cpus=1)
print("started", started, "nodes", len(ray.nodes()))
ray.shutdown()
"""


def test_local_ray_ignores_ray_address_and_a_stale_cluster_file(tmp_path: Path) -> None:
    # An unreachable RAY_ADDRESS (as on a cluster node whose head is gone) and a stale
    # address file of a past `ray start` in Ray's temp dir: plain ray.init() would try to
    # join them; a local sweep must start its own instance and say it ignored the variable.
    ray_tmp = Path("/tmp/ray")
    ray_tmp.mkdir(exist_ok=True)
    stale = ray_tmp / "ray_current_cluster"
    had = stale.read_text() if stale.exists() else None
    stale.write_text("127.0.0.1:1")
    try:
        env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1", "RAY_USAGE_STATS_ENABLED": "0"}
        res = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=180)
    finally:
        if had is None:
            stale.unlink(missing_ok=True)
        else:
            stale.write_text(had)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "started True nodes 1" in res.stdout
    assert "ignoring RAY_ADDRESS=127.0.0.1:1" in res.stderr


def test_socket_probe_sees_wildcard_and_loopback_listeners() -> None:
    # The probe the sweep test relies on must see what it is meant to catch: a TCP
    # listener and an unconnected UDP socket on all interfaces, told apart from loopback.
    with socket.socket() as wild, socket.socket() as lo, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
        wild.bind(("0.0.0.0", 0))
        wild.listen()
        lo.bind(("127.0.0.1", 0))
        lo.listen()
        udp.bind(("::", 0))
        rows = {(proto, addr) for _, _, proto, addr in listening_sockets([os.getpid()])}
        wild_addr = f"0.0.0.0:{wild.getsockname()[1]}"
        lo_addr = f"127.0.0.1:{lo.getsockname()[1]}"
        udp_addr = f"[::]:{udp.getsockname()[1]}"
    assert {("tcp", wild_addr), ("tcp", lo_addr), ("udp", udp_addr)} <= rows
    assert not is_loopback(wild_addr) and not is_loopback(udp_addr) and not is_loopback("192.0.2.2:52365")
    assert is_loopback(lo_addr) and is_loopback("[::ffff:127.0.0.1]:6379") and is_loopback("[::1]:1")


def test_loopback_only_is_undone_after_start() -> None:
    # The switch that keeps a local node on loopback must not outlive the local start: a
    # later ray.init(address=...) in the same process must report its routable address.
    from ray._private import ray_constants

    from cluster.ray_runtime import LOCAL_RAY_ENV, loopback_only

    before_env = {k: os.environ.get(k) for k in LOCAL_RAY_ENV}
    before = ray_constants.ENABLE_RAY_CLUSTER
    with loopback_only():
        assert ray_constants.ENABLE_RAY_CLUSTER is False
        assert all(os.environ[k] == v for k, v in LOCAL_RAY_ENV.items())
    restored = ray_constants.ENABLE_RAY_CLUSTER
    assert restored == before
    assert {k: os.environ.get(k) for k in LOCAL_RAY_ENV} == before_env


def test_local_sweep_listens_on_loopback_only(tmp_path: Path, tiny_spec: Path) -> None:
    # A real `tunefactory run`: every socket that accepts traffic in its whole process
    # tree (driver, GCS, raylet, dashboard agent, runtime-env agent, autoscaler monitor,
    # dashboard in metrics-only mode, trial workers), sampled while the trials run, must
    # be on loopback. Ray 2.60 without tunefactory's settings opened 15 of 16 on
    # 0.0.0.0, :: or the machine's routable address.
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "run", str(tiny_spec), "--storage", str(tmp_path / "runs"),
         "--num-cpus", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen: set[tuple[str, str, str]] = set()
    titles: set[str] = set()
    try:
        deadline = time.monotonic() + 400
        while proc.poll() is None and time.monotonic() < deadline:
            tree = [proc.pid, *descendants(proc.pid)]
            for pid in tree:
                with contextlib.suppress(OSError):  # gone meanwhile
                    titles.add(process_title(pid))
            seen |= {(title, proto, addr) for title, _, proto, addr in listening_sockets(tree)}
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            stop_tree([proc.pid])
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert proc.returncode == 0, out[-3000:]
    assert "trials 4 finished" in out
    # The probe saw Ray's services and a trial running, not just the driver starting up.
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= {t for t, _, _ in seen}
    assert any(t.startswith("ray::ImplicitFunc") for t in titles), sorted(titles)
    exposed = sorted(row for row in seen if not is_loopback(row[2]))
    assert not exposed, "listening beyond loopback:\n" + "\n".join(" ".join(r) for r in exposed)

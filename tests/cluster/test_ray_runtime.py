"""The driver's Ray seam: a local sweep's Ray is local whatever the environment names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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

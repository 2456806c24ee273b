"""Process helpers for the cluster tests: free ports, process trees, environments."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPTS = ROOT / "cluster" / "scripts"


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_tree(pids: list[int], *, grace: float = 20.0) -> None:
    """SIGTERM ``pids`` (and everything they started), wait, then SIGKILL what is left."""
    tree: list[int] = []
    for p in pids:
        if _alive(p):
            tree += [p, *descendants(p)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.3)
    for p in tree:
        if _alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def ray_env(token_file: Path | None) -> dict[str, str]:
    """Environment for Ray processes and clients of a test cluster (venv first on PATH)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_API_SERVER_ADDRESS")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    if token_file is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    return env


@dataclass
class RayCluster:
    """A real multi-node Ray cluster on this machine (one node per loopback address)."""

    dashboard: str
    gcs: str
    token_file: Path
    env: dict[str, str]
    logs: list[Path]
    node_ips: list[str]
    pids: list[int] = field(default_factory=list)

    def nodes(self) -> list[dict[str, object]]:
        req = urllib.request.Request(f"{self.dashboard}/api/v0/nodes",
                                     headers={"Authorization": f"Bearer {self.token_file.read_text().strip()}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return list(json.load(r)["data"]["result"]["result"])


@dataclass
class SlurmCluster:
    """A real one-node Slurm started by ``cluster/scripts/slurm_one_node.sh``."""

    dir: Path
    env: dict[str, str]

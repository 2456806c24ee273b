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


def _proc_net_address(hex_addr: str) -> str:
    """``0100007F:1F90`` (from /proc/net/tcp) -> ``127.0.0.1:8080``; IPv6 in brackets."""
    import ipaddress

    host, port = hex_addr.split(":")
    # The kernel prints the address as 32-bit words in host byte order (little-endian here).
    raw = b"".join(bytes.fromhex(host[i:i + 8])[::-1] for i in range(0, len(host), 8))
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"[::ffff:{ip.ipv4_mapped}]:{int(port, 16)}"
    return f"{ip}:{int(port, 16)}" if ip.version == 4 else f"[{ip}]:{int(port, 16)}"


def is_loopback(address: str) -> bool:
    """Whether ``HOST:PORT`` (IPv6 in brackets, IPv4-mapped IPv6 too) is on a loopback address."""
    import ipaddress

    ip = ipaddress.ip_address(address.rpartition(":")[0].strip("[]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listening_sockets(pids: list[int]) -> set[tuple[str, int, str, str]]:
    """The sockets of ``pids`` that accept traffic: TCP in LISTEN, UDP bound and unconnected.

    Read from /proc (no psutil: the venv has only Ray's private copy of it): each
    process's socket inodes from ``/proc/PID/fd``, their addresses from ``/proc/net/*``.

    Returns:
        ``(process title, pid, "tcp"|"udp", "HOST:PORT")`` rows.
    """
    wanted = {"tcp": "0A", "tcp6": "0A", "udp": "07", "udp6": "07"}  # LISTEN / UNCONN (kernel tcp_states.h)
    by_inode: dict[str, tuple[str, str]] = {}
    for table, state in wanted.items():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == state:
                    by_inode[cols[9]] = (table.rstrip("6"), _proc_net_address(cols[1]))
    rows = set()
    for pid in pids:
        try:
            title = process_title(pid)
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # gone meanwhile
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in by_inode:
                    proto, addr = by_inode[target[8:-1]]
                    rows.add((title, pid, proto, addr))
    return rows


def process_title(pid: int) -> str:
    """A short name for ``pid``: ``raylet``, ``ray::DashboardAgent``, ``python monitor.py``.

    Raises:
        OSError: the process is gone.
    """
    argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    if not argv:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    name = argv[0].split()[0] if argv[0].startswith("ray::") else Path(argv[0]).name
    if name.startswith("python"):
        script = next((Path(a).name for a in argv[1:] if a.endswith(".py")), None)
        module = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m"), None)
        name = f"{name} {script or ('-m ' + module if module else '')}".strip()
    return name

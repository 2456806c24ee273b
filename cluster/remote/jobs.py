"""Ray Jobs API client: job status, logs and stop, with token auth and one-line errors.

Every call goes to the cluster's dashboard address (``http://HOST:8265``; through the SSH
tunnel that ``ray dashboard CLUSTER.yaml`` opens for the shipped cloud configs).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from cluster.auth import ClusterError, Token, auth_headers, find_token, rejection_message

T = TypeVar("T")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class JobFailed(ClusterError):
    """A submitted job ended FAILED or STOPPED (exit code 1: the request itself was fine)."""

    exit_code = 1


@dataclass(frozen=True)
class JobInfo:
    """What ``tunefactory jobs status`` shows."""

    job_id: str
    status: str
    message: str
    entrypoint: str
    start_time: float | None
    end_time: float | None

    def line(self) -> str:
        took = ""
        if self.start_time and self.end_time:
            took = f" after {(self.end_time - self.start_time) / 1000:.0f}s"
        msg = f": {self.message.splitlines()[0]}" if self.message else ""
        return f"{self.job_id} {self.status}{took}{msg}"


def normalize_address(address: str | None) -> str:
    """``HOST:PORT`` → ``http://HOST:PORT``; None → ``RAY_API_SERVER_ADDRESS``/``RAY_ADDRESS``.

    Raises:
        ClusterError: no address anywhere.
    """
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ClusterError("no cluster address; pass --address http://HOST:8265 (the Ray dashboard, e.g. the "
                           "local end of `ray dashboard CLUSTER.yaml`)")
    if "://" not in address:
        address = f"http://{address}"
    if address.startswith("ray://"):
        raise ClusterError(f"{address}: job submission talks to the dashboard (http://HOST:8265), not to the "
                           "Ray client port")
    return address.rstrip("/")


def _call(address: str, token: Token | None, fn: Callable[[], T]) -> T:
    """Run a Jobs API call, turning auth and connection failures into one-line errors."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        return fn()
    except AuthenticationError as e:
        status = 401 if str(e).startswith("Authentication required") else 403
        raise ClusterError(rejection_message(address, status, token)) from None
    except (ConnectionError, requests.exceptions.ConnectionError):
        raise ClusterError(f"{address}: cannot reach the Ray dashboard; is the cluster up and, for a cloud "
                           "cluster, the tunnel (`ray dashboard CLUSTER.yaml`) running?") from None
    except requests.exceptions.Timeout:
        raise ClusterError(f"{address}: the Ray dashboard did not answer in time") from None


def client(address: str | None) -> tuple[Any, str, Token | None]:
    """A connected ``JobSubmissionClient`` with our token: ``(client, address, token)``."""
    from ray.job_submission import JobSubmissionClient

    addr = normalize_address(address)
    token = find_token()
    c = _call(addr, token, lambda: JobSubmissionClient(addr, headers=auth_headers(token)))
    return c, addr, token


def _unknown(addr: str, job_id: str, e: Exception) -> ClusterError:
    text = str(e)
    if "404" in text or "does not exist" in text or "not found" in text.lower():
        return ClusterError(f"{job_id}: no such job on {addr} (`tunefactory jobs list --address {addr}`)")
    return ClusterError(f"{addr}: {text.splitlines()[0] if text else type(e).__name__}")


def job_info(address: str | None, job_id: str) -> JobInfo:
    """Status of one job.

    Raises:
        ClusterError: unreachable cluster, rejected token or unknown job.
    """
    c, addr, token = client(address)
    try:
        d = _call(addr, token, lambda: c.get_job_info(job_id))
    except RuntimeError as e:
        raise _unknown(addr, job_id, e) from None
    return JobInfo(job_id, str(getattr(d.status, "value", d.status)), d.message or "", d.entrypoint,
                   d.start_time, d.end_time)


def list_jobs(address: str | None) -> list[JobInfo]:
    """Every job the cluster knows, oldest first."""
    c, addr, token = client(address)
    out = []
    for d in _call(addr, token, c.list_jobs):
        jid = d.submission_id or d.job_id or "?"
        out.append(JobInfo(jid, str(getattr(d.status, "value", d.status)), d.message or "", d.entrypoint,
                           d.start_time, d.end_time))
    return sorted(out, key=lambda j: j.start_time or 0)


def job_logs(address: str | None, job_id: str) -> str:
    """The whole log of a job so far."""
    c, addr, token = client(address)
    try:
        return str(_call(addr, token, lambda: c.get_job_logs(job_id)))
    except RuntimeError as e:
        raise _unknown(addr, job_id, e) from None


def stop_job(address: str | None, job_id: str) -> bool:
    """Ask the cluster to stop a job; False when it had already ended."""
    c, addr, token = client(address)
    try:
        return bool(_call(addr, token, lambda: c.stop_job(job_id)))
    except RuntimeError as e:
        raise _unknown(addr, job_id, e) from None


def follow(address: str | None, job_id: str, *, out: IO[str] = sys.stdout, poll: float = 2.0,
           timeout: float | None = None) -> JobInfo:
    """Print a job's log as it grows until the job ends; return its final status.

    Raises:
        JobFailed: the job ended FAILED or STOPPED.
        ClusterError: the cluster went away, or ``timeout`` passed.
    """
    c, addr, token = client(address)
    printed = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            status = str(getattr(s := _call(addr, token, lambda: c.get_job_status(job_id)), "value", s))
            logs = str(_call(addr, token, lambda: c.get_job_logs(job_id)))
        except RuntimeError as e:
            raise _unknown(addr, job_id, e) from None
        if len(logs) > printed:
            out.write(logs[printed:])
            out.flush()
            printed = len(logs)
        if status in TERMINAL:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise ClusterError(f"{job_id}: still {status} after {timeout:.0f}s; it keeps running "
                               f"(`tunefactory jobs status {job_id} --address {addr}`)")
        time.sleep(poll)
    info = job_info(addr, job_id)
    if info.status != "SUCCEEDED":
        raise JobFailed(f"job {info.line()}; full log: tunefactory jobs logs {job_id} --address {addr}")
    return info

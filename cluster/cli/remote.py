"""CLI commands for remote clusters: job submission, job control and Slurm (registered by ``cluster.cli``).

    tunefactory submit SPEC --address http://HOST:8265 [--wait] [--name N] [--storage S] [--set K=V]
    tunefactory jobs status|logs|stop JOB --address http://HOST:8265
    tunefactory jobs list --address http://HOST:8265
    tunefactory slurm SPEC --nodes N --gpus-per-node G --time HH:MM:SS [--dry-run]
"""

from __future__ import annotations

import argparse
from typing import Any

from cluster.auth import ClusterError
from cluster.cli.json_output import add_json_option, emit, plain
from cluster.cli.options import add_run_options
from cluster.remote import jobs, slurm
from cluster.remote.submit import submit

_ADDRESS_HELP = ("the cluster's Ray dashboard, http://HOST:8265 (default: $RAY_API_SERVER_ADDRESS); for the "
                 "shipped cloud configs the local end of `ray dashboard CLUSTER.yaml`")


def _run_options(p: argparse.ArgumentParser) -> None:
    add_run_options(p, storage_help="runs root as the cluster sees it: an absolute path on shared storage, "
                    "s3://BUCKET/PATH or gs://BUCKET/PATH (default: the spec's storage)")


def _cmd_submit(a: argparse.Namespace) -> int:
    submit(a.spec, address=a.address, name=a.name, storage=a.storage, overrides=a.overrides,
           install=not a.no_install, wait=a.wait, timeout=a.timeout)
    return 0


def _cmd_jobs(a: argparse.Namespace) -> int:
    if a.action == "list":
        listed = jobs.list_jobs(a.address)
        if a.json:
            emit({"jobs": [plain(j) for j in listed]})
        for j in [] if a.json else listed:
            print(j.line())
        return 0
    if not a.job:
        raise ClusterError(f"tunefactory jobs {a.action}: give the job id that `tunefactory submit` printed")
    if a.action == "status":
        info = jobs.job_info(a.address, a.job)
        if a.json:
            emit(plain(info))
        else:
            print(info.line())
        return 0 if info.status in ("SUCCEEDED", "PENDING", "RUNNING") else 1
    if a.action == "logs":
        if a.follow:
            jobs.follow(a.address, a.job)
        else:
            print(jobs.job_logs(a.address, a.job), end="")
        return 0
    stopped = jobs.stop_job(a.address, a.job)
    print(f"{a.job}: {'stop requested' if stopped else 'already ended'}")
    return 0


def _cmd_slurm(a: argparse.Namespace) -> int:
    job = slurm.prepare(a.spec, nodes=a.nodes, gpus_per_node=a.gpus_per_node, time_limit=a.time, name=a.name,
                        storage=a.storage, overrides=a.overrides, cpus_per_node=a.cpus_per_node,
                        partition=a.partition, account=a.account, exclusive=a.exclusive, python=a.python)
    if a.dry_run:
        print(slurm.render(job), end="")
        return 0
    job_id, script = slurm.submit(job, wait=a.wait)
    print(job_id, flush=True)
    print(f"tunefactory: script {script}; log {job.log_file(job_id)}", flush=True)
    if a.wait:
        print(f"tunefactory: Slurm job {job_id} finished; runs under {job.storage}", flush=True)
    return 0


def register(sub: Any) -> None:
    """Add the cluster commands to the ``tunefactory`` subcommands."""
    s = sub.add_parser("submit", help="run a sweep on a Ray cluster through the Jobs API; prints the job id")
    _run_options(s)
    s.add_argument("--address", help=_ADDRESS_HELP)
    s.add_argument("--wait", action="store_true", help="follow the job's log until it ends (exit 1 if it fails)")
    s.add_argument("--timeout", type=float, help="with --wait: stop following after this many seconds")
    s.add_argument("--no-install", action="store_true",
                   help="do not check which pinned dependencies the cluster lacks (a probe job) nor pip-install "
                   "them in the job's runtime env (the cluster image has them, as the shipped cluster configs do)")
    s.set_defaults(fn=_cmd_submit)

    j = sub.add_parser("jobs", help="status, logs or stop of a submitted job (or list them)")
    j.add_argument("action", choices=["status", "logs", "stop", "list"],
                   help="status/logs/stop of one job, or list every job")
    j.add_argument("job", nargs="?", help="the job id `tunefactory submit` printed")
    j.add_argument("--address", help=_ADDRESS_HELP)
    j.add_argument("--follow", "-f", action="store_true", help="logs: keep printing until the job ends")
    add_json_option(j)  # status and list
    j.set_defaults(fn=_cmd_jobs)

    sl = sub.add_parser("slurm", help="run a sweep on a Slurm allocation (Ray head + workers via srun)")
    _run_options(sl)
    sl.add_argument("--nodes", type=int, required=True, help="nodes to allocate")
    sl.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (default 0)")
    sl.add_argument("--time", required=True, help="wall time limit, e.g. 02:00:00")
    sl.add_argument("--cpus-per-node", type=int, help="CPUs per node (default: Slurm's default)")
    sl.add_argument("--partition", help="Slurm partition")
    sl.add_argument("--account", help="Slurm account")
    sl.add_argument("--exclusive", action="store_true", help="allocate whole nodes")
    sl.add_argument("--python", help="python with tunefactory installed, as compute nodes see it "
                    "(default: this interpreter)")
    sl.add_argument("--dry-run", action="store_true", help="print the batch script; submit nothing")
    sl.add_argument("--wait", action="store_true", help="return when the job has ended (sbatch --wait)")
    sl.set_defaults(fn=_cmd_slurm)

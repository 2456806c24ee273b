"""Run a sweep on a Slurm allocation: render ``templates/slurm.sbatch.j2`` and ``sbatch`` it.

The batch script starts a Ray head on the first node and a worker on every other node
(``srun --overlap ... ray start --block &``: a daemonising ``ray start`` would escape the
job and outlive it), waits until every node has joined, then runs ``tunefactory run``
against that cluster. CPUs and GPUs per node come from the allocation (``SLURM_CPUS_ON_NODE``,
``SLURM_GPUS_ON_NODE`` inside each step). Token auth is on, with a token made for the job.

``python -m cluster.remote.slurm wait --address HOST:PORT --nodes N`` is the helper the script
uses to wait for the nodes.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from cluster import storage as st
from cluster.ray_runtime import wait_for_nodes
from search_spaces.loader import load_spec
from search_spaces.schema.spec import control_characters, run_name_problem
from trainables.errors import TunefactoryError

ROOT = Path(__file__).resolve().parents[2]
TIME_PATTERN = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")
#: What an ``#SBATCH`` directive value may not hold: a directive line cannot be quoted for
#: bash (a newline ends the comment and starts a command) and sbatch itself splits values at
#: whitespace and treats quotes and backslashes specially.
_DIRECTIVE_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\"'\\]")


class SlurmError(TunefactoryError):
    """Bad Slurm options, or ``sbatch`` is missing or refused the job."""


@dataclass
class SlurmJob:
    """What one ``tunefactory slurm`` call submits.

    Attributes:
        spec: the spec file (absolute path; compute nodes must see it).
        nodes: nodes in the allocation.
        gpus_per_node: GPUs per node (0: none requested).
        time: wall time limit in a Slurm format (``HH:MM:SS``, ``D-HH:MM``, minutes).
        storage: runs folder (absolute, shared across nodes) or URI.
        name: run name (None: the spec's name, suffixed if it exists).
        overrides: ``--set`` overrides, passed on to ``tunefactory run``.
        cpus_per_node: CPUs per node (``--cpus-per-task``; None: Slurm's default).
        partition, account: Slurm partition and account (None: the defaults).
        exclusive: ask for whole nodes.
        python: interpreter with tunefactory installed on the compute nodes.
        start_timeout: seconds to wait for the Ray nodes to join.
    """

    spec: Path
    nodes: int
    gpus_per_node: int
    time: str
    storage: str
    name: str | None = None
    overrides: list[str] = field(default_factory=list)
    cpus_per_node: int | None = None
    partition: str | None = None
    account: str | None = None
    exclusive: bool = False
    python: str = sys.executable
    start_timeout: int = 300

    @property
    def slug(self) -> str:
        """Run label safe for file and job names."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name or self.spec.stem)[:40]

    def log_file(self, job_id: str = "%j") -> Path:
        """The job's output file (``%j`` is Slurm's job id placeholder)."""
        return self.job_dir() / f"{self.slug}-{job_id}.out"

    def job_dir(self) -> Path:
        """Where the rendered script and the job's log go: ``<storage>/slurm`` (or ``./slurm`` for URIs)."""
        base = Path("slurm") if st.is_uri(self.storage) else Path(self.storage) / "slurm"
        return base.resolve()


def _check(job: SlurmJob) -> None:
    problems = []
    if job.nodes < 1:
        problems.append(f"--nodes must be >= 1; got {job.nodes}")
    if job.gpus_per_node < 0:
        problems.append(f"--gpus-per-node must be >= 0; got {job.gpus_per_node}")
    if job.cpus_per_node is not None and job.cpus_per_node < 1:
        problems.append(f"--cpus-per-node must be >= 1; got {job.cpus_per_node}")
    if not TIME_PATTERN.match(job.time):
        problems.append(f"--time must be a Slurm time such as 02:00:00, 90 or 1-12:00; got {job.time!r}")
    for opt, val in (("--partition", job.partition), ("--account", job.account)):
        if val is not None and not re.match(r"^[A-Za-z0-9_.,-]+$", val):
            problems.append(f"{opt} may hold letters, digits and _ . , - only; got {val!r}")
    name_problem = None if job.name is None else run_name_problem(job.name)
    if name_problem:
        problems.append(f"--name {name_problem}; got {job.name!r}")
    # Shell lines quote every value (shlex.quote), but a quoted newline still puts text at the
    # start of a line of the script: values with control characters are refused outright.
    rendered = [("SPEC", str(job.spec)), ("--storage", job.storage), ("--python", job.python),
                *(("--set", o) for o in job.overrides)]
    bad = [(opt, val) for opt, val in rendered if control_characters(val)]
    for opt, val in bad:
        problems.append(f"{opt}: {val!r} holds a newline or another control character; it cannot go into the "
                        "batch script")
    log = str(job.log_file())
    if not any(opt == "--storage" for opt, _ in bad) and _DIRECTIVE_UNSAFE.search(log):
        where = f"storage {job.storage!r}" if not st.is_uri(job.storage) else f"the current directory {os.getcwd()!r}"
        problems.append(f"--storage: {where} cannot go into the script's '#SBATCH --output=' line (no newlines, "
                        "control characters, spaces, quotes or backslashes there); choose a plain path")
    if problems:
        raise SlurmError("\n".join(problems))


def render(job: SlurmJob) -> str:
    """The batch script for ``job`` (nothing is written or submitted).

    Raises:
        SlurmError: an option is out of range.
    """
    _check(job)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parents[1] / "templates")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, autoescape=False,
                             comment_start_string="[#", comment_end_string="#]")  # bash has {#
    env.filters["q"] = lambda v: shlex.quote(str(v))
    run_args = [str(job.spec), "--storage", job.storage]
    if job.name:
        run_args += ["--name", job.name]
    for o in job.overrides:
        run_args += ["--set", o]
    return env.get_template("slurm.sbatch.j2").render(
        run_label=job.slug, job_name=f"tunefactory-{job.slug}", nodes=job.nodes, gpus_per_node=job.gpus_per_node,
        cpus_per_node=job.cpus_per_node, exclusive=job.exclusive, time=job.time,
        log_file=str(job.log_file()), partition=job.partition, account=job.account,
        python=job.python, ray=str(Path(job.python).parent / "ray"), project=str(ROOT),
        run_args=shlex.join(run_args), start_timeout=int(job.start_timeout))


def prepare(spec: Path, *, nodes: int, gpus_per_node: int, time_limit: str, name: str | None = None,
            storage: str | None = None, overrides: Sequence[str] = (), cpus_per_node: int | None = None,
            partition: str | None = None, account: str | None = None, exclusive: bool = False,
            python: str | None = None) -> SlurmJob:
    """Validate the spec here (one-line errors before anything is queued) and build the job.

    A relative storage path is made absolute against the current directory, since the
    batch script runs elsewhere.
    """
    loaded = load_spec(spec, list(overrides))
    root = storage or loaded.spec.storage
    if not st.is_uri(root):
        root = str(Path(root).expanduser().resolve())
        msg = st.node_local_warning(root, nodes=nodes)
        if msg:
            print(msg, file=sys.stderr)
    gpus_spec = loaded.spec.resources.gpus
    if gpus_spec > 0 and gpus_per_node == 0:
        print(f"tunefactory: WARNING: the spec asks {gpus_spec:g} GPU per trial but --gpus-per-node is 0; "
              "no trial can start", file=sys.stderr)
    return SlurmJob(spec=Path(spec).resolve(), nodes=nodes, gpus_per_node=gpus_per_node, time=time_limit,
                    storage=root, name=name, overrides=list(overrides), cpus_per_node=cpus_per_node,
                    partition=partition, account=account, exclusive=exclusive,
                    python=python or sys.executable)


def submit(job: SlurmJob, *, wait: bool = False) -> tuple[str, Path]:
    """Write the script into the job folder and ``sbatch`` it; return ``(job id, script path)``.

    With ``wait`` the call returns when the job has ended (``sbatch --wait``).

    Raises:
        SlurmError: no ``sbatch`` on PATH, or Slurm refused the job, or (``wait``) it failed.
    """
    text = render(job)
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise SlurmError("sbatch not found on PATH; run `tunefactory slurm` on a Slurm login node "
                         "(or print the script with --dry-run)")
    d = job.job_dir()
    d.mkdir(parents=True, exist_ok=True)
    script = d / f"{job.slug}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    script.write_text(text, encoding="utf-8")
    script.chmod(0o755)
    cmd = [sbatch, "--parsable", *(["--wait"] if wait else []), str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    job_id = proc.stdout.strip().split(";")[0]
    if proc.returncode != 0 and not (wait and job_id.isdigit()):
        err = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise SlurmError(f"sbatch refused {script}: {err}")
    if wait and proc.returncode != 0:
        raise SlurmError(f"Slurm job {job_id} failed (exit {proc.returncode}); log: {job.log_file(job_id)}")
    return job_id, script


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cluster.remote.slurm wait --address HOST:PORT --nodes N [--timeout S]``."""
    p = argparse.ArgumentParser(prog="python -m cluster.remote.slurm")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait", help="wait until N Ray nodes have joined the cluster")
    w.add_argument("--address", required=True)
    w.add_argument("--nodes", type=int, required=True)
    w.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        n = wait_for_nodes(a.address, a.nodes, timeout=a.timeout)
    except TunefactoryError as e:
        print(f"tunefactory: {e}", file=sys.stderr)
        return 1
    print(f"tunefactory: {n} Ray node(s) alive at {a.address}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``tunefactory submit``: send the project and a spec to a Ray cluster as a job.

The job's working directory is a staged copy of the project (code and embedded data;
never ``runs/``, virtual environments, caches or ``.git``) plus the spec, already merged
with its ``base:`` files and ``--set`` overrides and validated here, so a bad spec fails on
the laptop in one line instead of on the cluster. Unless ``--no-install`` says the image
has them, the job's runtime environment installs the project's pinned dependencies
(without Ray, which the cluster has; with the CUDA build of TensorFlow when the spec asks
for GPUs) that the cluster lacks: a probe job asks the cluster's own Python first
(:mod:`cluster.remote.requirements`), and when nothing is missing the job gets no pip
environment at all. Installing every pin regardless made Ray clone the cluster's whole
virtualenv (2.7 GB, about a minute per node here) or layer a second copy of packages over
the ones Ray itself imports. The entrypoint is ``python -m cluster.cli run SPEC --address auto``, so the
sweep driver runs inside the cluster and writes to ``--storage``.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from cluster import storage as st
from cluster.auth import ClusterError
from cluster.ray_runtime import ray_version, server_ray_version
from cluster.remote.jobs import TERMINAL, JobInfo, _call, client, follow
from cluster.remote.requirements import RESULT_PREFIX
from search_spaces.loader import load_spec

ROOT = Path(__file__).resolve().parents[2]
JOB_SPEC_DIR = ".tunefactory-job"
# Never uploaded (gitignore-style patterns, also given to Ray as runtime_env excludes).
EXCLUDES = [
    "runs/", "winners/", ".venv/", "venv/", "env/", ".git/", "__pycache__/", "*.pyc", ".pytest_cache/",
    ".mypy_cache/", ".ruff_cache/", ".hypothesis/", "*.egg-info/", "build/", "dist/", ".tf_cache/",
    "slurm/", ".ipynb_checkpoints/", "node_modules/", ".tox/", ".DS_Store",
]
_EXCLUDE_NAMES = {p.rstrip("/") for p in EXCLUDES if "*" not in p}


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _EXCLUDE_NAMES or n.endswith((".pyc", ".egg-info"))}


def stage_project(dest: Path, *, spec_raw: dict[str, Any], spec_name: str, root: Path = ROOT) -> str:
    """Copy the project into ``dest`` (without :data:`EXCLUDES`) and add the spec.

    Returns:
        The spec's path relative to ``dest``.
    """
    shutil.copytree(root, dest, ignore=_ignore, symlinks=False, dirs_exist_ok=True)
    rel = f"{JOB_SPEC_DIR}/{re.sub(r'[^A-Za-z0-9_.-]+', '-', spec_name)}.yaml"
    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    raw = dict(spec_raw)
    raw.setdefault("name", spec_name)  # the file's stem must not rename the run
    (dest / rel).write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return rel


def _project_dependencies(root: Path = ROOT) -> tuple[list[str], dict[str, list[str]]]:
    """``(dependencies, optional-dependencies)`` from pyproject.toml (installed metadata as fallback)."""
    py = root / "pyproject.toml"
    if py.is_file():
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            tomllib = None  # type: ignore[assignment]
        if tomllib is not None:
            project = tomllib.loads(py.read_text(encoding="utf-8")).get("project", {})
            return list(project.get("dependencies", [])), dict(project.get("optional-dependencies", {}))
    import importlib.metadata as md

    deps: list[str] = []
    extras: dict[str, list[str]] = {}
    for r in md.requires("tunefactory") or []:
        m = re.search(r"""extra\s*==\s*["']([^"']+)["']""", r)
        if m:
            extras.setdefault(m.group(1), []).append(re.sub(r";.*$", "", r).strip())
        else:
            deps.append(r)
    return deps, extras


#: Packages the cluster's Ray imports at its own level: the job keeps the cluster's version
#: whatever we pin. A second pyarrow layered over the one Ray was started with in a pip
#: runtime environment is a classic source of half-visible modules (``No module named
#: 'pyarrow.parquet'`` when the driver imports ``ray.tune``); we only use ``pyarrow.fs``.
KEEP_CLUSTERS = frozenset({"pyarrow"})


def worker_requirements(*, gpu: bool, root: Path = ROOT) -> list[str]:
    """pip requirements the workers need on top of the cluster's Ray.

    Ray itself is left out (the cluster image has it, in the version the jobs API checks);
    with ``gpu`` the CUDA build of TensorFlow replaces the CPU wheel.
    """
    deps, extras = _project_dependencies(root)
    out = []
    for d in deps:
        name = re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower()
        if name == "ray" or (gpu and name in ("tensorflow", "tensorflow-cpu")):
            continue
        if name in KEEP_CLUSTERS:
            out.append(name)  # any installed version will do (see KEEP_CLUSTERS)
            continue
        out.append(d)
    if gpu:
        out += [d for d in extras.get("gpu", []) if d.lower().startswith("tensorflow")]
    return out


def build_runtime_env(working_dir: Path, *, packages: Sequence[str] = ()) -> dict[str, Any]:
    """The job's ``runtime_env``: working dir, excludes and, if any, the pip ``packages`` to install.

    pip keeps its download cache (Ray's default passes ``--no-cache-dir``), so a second
    job, or a second node of the same machine, does not download the wheels again. No
    ``env_vars`` here: the driver adds its own when it connects, and Ray refuses to merge
    a job and a driver that set the same variable.
    """
    env: dict[str, Any] = {"working_dir": str(working_dir), "excludes": list(EXCLUDES)}
    if packages:
        env["pip"] = {"packages": list(packages), "pip_check": False,
                      "pip_install_options": ["--disable-pip-version-check"]}
    return env


def cluster_lacks(job_client: Any, addr: str, token: Any, working_dir: Path, requirements: Sequence[str], *,
                  probe_id: str, timeout: float = 180.0) -> list[str] | None:
    """Which of ``requirements`` the cluster's Python lacks, asked by a short probe job.

    The probe uploads ``working_dir`` (the real job then reuses the upload) and runs
    :mod:`cluster.remote.requirements` with no runtime environment on the head node; the
    other nodes are assumed to run the same image. The probe stays in the job list
    (``JOB-probe``): deleting it right after it ended raced with Ray's job manager, which
    then listed it as FAILED ("Job supervisor actor died").

    Returns:
        The missing requirements, or None when the probe gave no answer in ``timeout``
        seconds (the caller then installs everything).
    """
    cmd = shlex.join(["python", "-m", "cluster.remote.requirements", json.dumps(list(requirements))])
    try:
        _call(addr, token, lambda: job_client.submit_job(
            entrypoint=cmd, submission_id=probe_id, metadata={"tunefactory_probe": "requirements"},
            runtime_env={"working_dir": str(working_dir), "excludes": list(EXCLUDES)}))
        deadline = time.monotonic() + timeout
        while True:
            s = _call(addr, token, lambda: job_client.get_job_status(probe_id))
            if str(getattr(s, "value", s)) in TERMINAL:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(Exception):
                    job_client.stop_job(probe_id)
                return None
            time.sleep(0.5)
        logs = str(_call(addr, token, lambda: job_client.get_job_logs(probe_id)))
    except RuntimeError:
        return None
    for line in reversed(logs.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return [str(r) for r in json.loads(line[len(RESULT_PREFIX):])["missing"]]
    return None


def entrypoint(spec_rel: str, *, storage: str, name: str | None) -> str:
    """The job's command line: the sweep driver, connecting to the cluster it runs in."""
    args = ["python", "-m", "cluster.cli", "run", spec_rel, "--address", "auto", "--storage", storage]
    if name:
        args += ["--name", name]
    return shlex.join(args)


def check_storage(storage: str) -> str:
    """A storage root usable from a cluster job: a URI or an absolute path.

    Raises:
        StorageError: a relative path (it would land in the job's temporary working
            directory, which Ray deletes).
    """
    if st.is_uri(storage):
        return storage
    p = Path(storage).expanduser()
    if not p.is_absolute():
        raise st.StorageError(
            f"storage {storage!r} is relative: on the cluster it would land inside the job's temporary working "
            "directory, which Ray deletes; pass --storage /shared/path (a folder every node mounts) or "
            "--storage s3://BUCKET/runs (or gs://BUCKET/runs)")
    return str(p)


def submit(spec: Path, *, address: str | None, name: str | None = None, storage: str | None = None,
           overrides: Sequence[str] = (), install: bool = True, wait: bool = False,
           out: IO[str] = sys.stdout, timeout: float | None = None) -> str:
    """Submit a sweep as a Ray job and return its id (printed first, so scripts can read it).

    Args:
        spec: the spec file (validated here, with ``overrides``).
        address: the cluster's dashboard, ``http://HOST:8265``.
        name: run name (default: the spec's name, suffixed on the cluster if it exists).
        storage: runs root on the cluster (absolute path or URI; default: the spec's).
        overrides: ``--set`` values.
        install: let the runtime env pip-install the project's dependencies the cluster lacks.
        wait: follow the job's log until it ends.
        out: where the job id and (``wait``) the log go.
        timeout: with ``wait``, give up following after this many seconds.

    Raises:
        SpecError: the spec is invalid.
        StorageError: the storage would not survive the job.
        ClusterError: the cluster is unreachable or rejects the token.
        JobFailed: (``wait``) the job ended FAILED or STOPPED.
    """
    st.check_run_name(name)
    loaded = load_spec(spec, list(overrides))
    root = check_storage(storage or loaded.spec.storage)
    c, addr, token = client(address)
    server, here = server_ray_version(c), ray_version()
    if server and server != here:
        print(f"tunefactory: WARNING: the cluster runs Ray {server}, this machine Ray {here}; "
              f"the project pins {here}", file=sys.stderr)
    gpu = loaded.spec.resources.gpus > 0
    run_label = re.sub(r"[^A-Za-z0-9_-]+", "-", name or loaded.name)[:40]
    job_id = f"tunefactory-{run_label}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    with tempfile.TemporaryDirectory(prefix="tunefactory-job-") as tmp:
        spec_rel = stage_project(Path(tmp), spec_raw=loaded.raw, spec_name=loaded.name)
        packages = worker_requirements(gpu=gpu) if install else []
        if packages:
            lacking = cluster_lacks(c, addr, token, Path(tmp), packages, probe_id=f"{job_id}-probe")
            if lacking is None:
                print(f"tunefactory: could not ask the cluster which dependencies it has; the job installs all "
                      f"{len(packages)} pinned packages", file=sys.stderr, flush=True)
            elif lacking:
                print(f"tunefactory: the cluster lacks {len(lacking)} pinned package(s); the job installs "
                      f"{', '.join(lacking)}", file=sys.stderr, flush=True)
            else:
                print("tunefactory: the cluster has every pinned dependency; nothing to install",
                      file=sys.stderr, flush=True)
            packages = packages if lacking is None else lacking
        runtime_env = build_runtime_env(Path(tmp), packages=packages)

        def _submit() -> str:
            return str(c.submit_job(
                entrypoint=entrypoint(spec_rel, storage=root, name=name), submission_id=job_id,
                runtime_env=runtime_env,
                metadata={"tunefactory_spec": loaded.name, "tunefactory_storage": root}))

        try:
            job_id = _call(addr, token, _submit)
        except RuntimeError as e:
            raise ClusterError(f"{addr}: the cluster refused the job: {str(e).splitlines()[0]}") from None
    print(job_id, file=out, flush=True)
    if wait:
        info: JobInfo = follow(addr, job_id, out=out, timeout=timeout)
        print(f"tunefactory: job {info.line()}", file=out, flush=True)
    return job_id

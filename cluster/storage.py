"""Where runs are stored: a local folder, a shared mount (NFS, Lustre, ...) or an object store.

A run lives at ``<storage>/<name>/``. ``storage`` is a path (local or a shared mount) or a
URI (``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///abs/path``). Ray Tune writes
trial folders straight to the storage from whichever node runs the trial; our own files
(``spec.yaml``, ``groups.json``, ``report/``) go through :mod:`pyarrow.fs` for URIs.

On a cluster with more than one node a *node-local* path (``/tmp``, a local disk) loses
results: each node writes its trials to its own disk, the driver only sees its own, and a
resume on another node finds nothing. :func:`node_local_warning` says so before a sweep
starts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from search_spaces.schema.spec import run_name_problem
from trainables.errors import RunError, TunefactoryError

# Filesystems whose files every node of a cluster sees (fstype from /proc/mounts).
SHARED_FS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs", "glusterfs",
    "fuse.glusterfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.mountpoint-s3", "fuse.sshfs", "fuse.juicefs",
    "fuse.cephfs", "fuse.beegfs", "fuse.lustre", "pvfs2", "orangefs", "wekafs", "9p", "virtiofs", "afs",
    "efs", "fuse.efs", "panfs", "fuse.alluxio", "fuse.rclone", "fuse.blobfuse", "fuse.blobfuse2",
}


class StorageError(TunefactoryError):
    """The storage location cannot be used (bad URI, unreachable bucket, relative path on a cluster)."""


def check_run_name(name: str | None, *, option: str = "--name") -> str | None:
    """``name`` when it may name a run folder (see :func:`search_spaces.schema.spec.run_name_problem`).

    Raises:
        RunError: one line naming the value and the allowed characters.
    """
    problem = None if name is None else run_name_problem(name)
    if problem:
        raise RunError(f"{option} {problem}; got {name!r}")
    return name


def is_uri(storage: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` locations (s3, gs, file, ...), False for plain paths."""
    return "://" in str(storage)


def join(root: str, *parts: str) -> str:
    """Join a URI or a path with more parts using ``/``."""
    out = str(root).rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def _fs(uri: str) -> tuple[Any, str]:
    """``(pyarrow filesystem, path inside it)`` for a URI."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError with long texts
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StorageError(f"{uri}: cannot open storage ({first}); use a local path, s3://BUCKET/PATH or "
                           "gs://BUCKET/PATH with credentials for that bucket") from None


def exists_nonempty(location: str) -> bool:
    """True when a run folder (path or URI) exists and holds something."""
    if not is_uri(location):
        p = Path(location)
        return p.exists() and any(p.iterdir())
    import pyarrow.fs as pafs

    fs, path = _fs(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return False
    return bool(fs.get_file_info(pafs.FileSelector(path, recursive=False)))


def write_text(location: str, text: str) -> None:
    """Write a text file at a URI (for paths use :func:`cluster.sweep.atomic_write`)."""
    fs, path = _fs(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(text.encode("utf-8"))


def read_text(location: str) -> str | None:
    """Read a text file at a path or URI; None when it does not exist."""
    if not is_uri(location):
        p = Path(location)
        return p.read_text(encoding="utf-8") if p.is_file() else None
    import pyarrow.fs as pafs

    fs, path = _fs(location)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as fh:
        return bytes(fh.read()).decode("utf-8")


def download(location: str, local: Path, *, skip_checkpoints: bool = True) -> Path:
    """Copy a run folder from a URI into ``local`` (replacing it) and return ``local``.

    Checkpoints (the saved models) are left in storage unless ``skip_checkpoints`` is False:
    reports need results, not weights.
    """
    import pyarrow.fs as pafs

    fs, root = _fs(location)
    if local.exists():
        shutil.rmtree(local)
    local.mkdir(parents=True)
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(root):].lstrip("/")
        if skip_checkpoints and "/checkpoint_" in f"/{rel}":
            continue
        dest = local / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(info.path) as src, open(dest, "wb") as out:
            out.write(bytes(src.read()))
    return local


def upload(local: Path, location: str) -> None:
    """Copy the files under ``local`` to the folder ``location`` (a URI)."""
    fs, root = _fs(location)
    for f in sorted(local.rglob("*")):
        if f.is_file():
            rel = f.relative_to(local).as_posix()
            fs.create_dir(join(root, rel).rsplit("/", 1)[0], recursive=True)
            with open(f, "rb") as src, fs.open_output_stream(join(root, rel)) as out:
                out.write(src.read())


def local_mirror(location: str) -> Path:
    """Local folder where the report of a run stored at a URI is built."""
    base = Path(os.environ.get("TUNEFACTORY_CACHE", Path.home() / ".cache" / "tunefactory"))
    scheme, _, rest = location.partition("://")
    return base / "runs" / scheme / rest.strip("/")


def filesystem_type(path: Path) -> tuple[str, str]:
    """``(fstype, mount point)`` of the mount holding ``path`` (Linux; ``("unknown", "")`` elsewhere)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    best = ("unknown", "")
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (str(p) == mnt or str(p).startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1]):
            best = (parts[2], mnt)
    return best


def node_local_warning(storage: str | Path, *, nodes: int) -> str | None:
    """A warning when a sweep over ``nodes`` nodes stores results on a node-local path.

    Returns None for URIs, shared filesystems and single-node clusters.
    """
    if nodes <= 1 or is_uri(storage):
        return None
    fstype, mount = filesystem_type(Path(storage))
    if fstype in SHARED_FS or fstype.startswith("nfs"):
        return None
    return (f"tunefactory: WARNING: storage {storage} is on a node-local filesystem ({fstype} mounted at "
            f"{mount or '?'}) but the cluster has {nodes} nodes: trials on other nodes write their results and "
            "checkpoints to their own disks, so the leaderboard can miss them and a resume can lose them. "
            "Use a folder on shared storage mounted at the same path on every node (NFS, Lustre, EFS, "
            "Filestore) or an object store: --storage s3://BUCKET/runs or --storage gs://BUCKET/runs.")

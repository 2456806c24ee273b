"""Small file helpers shared by the data fetcher, the reports and the sweep driver (no heavy imports)."""

from __future__ import annotations

import contextlib
import gzip
import os
from pathlib import Path


def atomic_write(path: Path, data: str | bytes, *, compress: bool = False) -> None:
    """Replace ``path`` so a reader sees the old or the new content, never a torn one.

    The content goes to a temporary file in the same folder, is fsync'ed, takes the mode of
    the file it replaces (a new file gets the usual ``0o666 & ~umask``) and is renamed over
    ``path``; the folder is fsync'ed too, so the rename itself survives a crash. On any
    failure the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write; missing parent folders are created.
        data: text (written as UTF-8) or bytes.
        compress: gzip the bytes first (``mtime=0``, so the same data gives the same file).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if compress:
        raw = gzip.compress(raw, compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name: several threads or processes may write the same file at once, and a
    # leading dot plus ".tmp" keeps it out of globs such as "*.csv".
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        # O_EXCL: never write through a file (or link) that is already there; 0o666 lets
        # the umask decide a new file's mode, as open() would.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; not every platform lets us open a directory."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    finally:
        os.close(dfd)

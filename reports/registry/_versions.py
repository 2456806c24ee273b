"""The registry's version folders: durable writes, crash recovery, the atomic link swap.

Private to :mod:`reports.registry` (``winners`` publishes through it). A version is written
in a hidden temporary folder, flushed, renamed to its final name, and only then published
by atomically replacing the ``<ASSET>_<TF>`` symlink (``os.replace`` of a link is one
rename(2)); :func:`recover` repairs what a crash at any point leaves behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

VERSIONS = ".versions"


def fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    # Not trainables.files.atomic_write: every file goes into a hidden temporary folder
    # whose rename is the commit, so a per-file rename would add nothing but renames.
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def is_version(p: Path) -> bool:
    return p.is_dir() and not p.name.startswith(".")


def recover(registry: Path, name: str) -> None:
    """Repair what a crash can leave behind for one folder, keeping the published winner.

    * ``<name>`` is a plain folder (written by an older tunefactory): it becomes version
      ``0-legacy`` and the link points at it.
    * ``<name>`` is missing but versions exist (a crash while migrating a plain folder):
      the link goes back to ``0-legacy``, i.e. the previous winner.
    * hidden temporary folders and links of interrupted exports are removed.
    """
    vdir = registry / VERSIONS / name
    dst = registry / name
    if dst.is_dir() and not dst.is_symlink():
        vdir.mkdir(parents=True, exist_ok=True)
        legacy = vdir / "0-legacy"
        os.replace(dst, legacy)  # crash here: dst missing, handled by the branch below next time
        publish(registry, name, legacy)
    elif not dst.exists() and not dst.is_symlink() and (vdir / "0-legacy").is_dir():
        publish(registry, name, vdir / "0-legacy")
    for p in list(registry.glob(f".{name}.link-*")):
        p.unlink(missing_ok=True)
    if vdir.is_dir():
        for p in vdir.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


def publish(registry: Path, name: str, version: Path) -> None:
    """Point ``registry/name`` at ``version`` with one atomic rename of a new symlink."""
    link = registry / f".{name}.link-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(version, registry), link)
    os.replace(link, registry / name)
    fsync_dir(registry)


def prune(registry: Path, name: str, keep: int = 2) -> None:
    """Drop all but the newest ``keep`` versions (the current one and the one before it).

    The previous version stays so that a reader who resolved the old link a moment ago
    can still finish reading it.
    """
    vdir = registry / VERSIONS / name
    current = (registry / name).resolve()
    versions = sorted((p for p in vdir.iterdir() if is_version(p)), key=lambda p: p.name)  # names start with a UTC stamp
    for p in versions[:-keep]:
        if p.resolve() != current:
            shutil.rmtree(p, ignore_errors=True)


def history_line(reg: Path, entry: dict[str, Any]) -> None:
    """Append one replacement record to ``history.jsonl``, flushed to disk."""
    with open(reg / "history.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())

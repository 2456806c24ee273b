"""Authenticate the pickled state of a run folder before anything unpickles it.

``tunefactory resume RUN_DIR`` hands the run folder to Ray's ``Tuner.restore``, which
unpickles ``tuner.pkl`` (which holds our searcher and scheduler objects), the searcher
state (``searcher-state-*.pkl``: JSON written by
:meth:`~cluster.searcher.GroupedSearcher.save`, but a pickle for any other searcher or an
older run, and Ray picks the newest such file by name), the search generator's state
(``search_gen_state-*.json``, a cloudpickle despite its name) and the cloudpickle blobs
embedded in ``experiment_state-*.json``. Unpickling runs code, so a crafted file in a
shared run folder would run as whoever resumes it.

While a sweep runs, every such file is signed with HMAC-SHA256 under a per-user key, and
the signatures go to ``RUN_DIR/.integrity.json``; ``resume`` verifies every state file
against it before Ray sees the folder, and refuses (one line, exit 2) a file that is not
signed or was altered. ``--trust-run-dir`` skips the check (and says what that risks).

The key: ``TUNEFACTORY_RUN_KEY`` (a team key shared by everyone who resumes each other's
runs) or ``~/.config/tunefactory/run-key``, 32 random bytes created on first use, mode 0600.

Signing happens where the files are written: Tune's state snapshot (hooked in
:mod:`cluster.ray_runtime`, from the driver's staging copy before it is synced to the run
folder), ``tuner.pkl`` when a Tuner is built or restored, and the whole folder at the end of
``fit``. Each name keeps its last few signatures, so a driver killed between a snapshot and
its upload still finds the previous, uploaded content accepted.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cluster import storage as st
from trainables.errors import RunError

MANIFEST = ".integrity.json"
KEY_ENV = "TUNEFACTORY_RUN_KEY"
#: Files of a run folder's top level that Tune unpickles (fully or in part) on restore.
STATE_PATTERNS = ("*.pkl", "experiment_state-*.json", "search_gen_state-*.json", "basic-variant-state-*.json")
_KEEP = 4  # signatures kept per file name (the current content and a few before it)

TRUST_HINT = ("if you trust everyone who can write to this folder, resume with --trust-run-dir "
              "(it unpickles the files unchecked: a crafted file runs code as you)")


def key_file() -> Path:
    """The per-user key file (``~/.config/tunefactory/run-key``)."""
    return Path.home() / ".config" / "tunefactory" / "run-key"


def run_key() -> bytes:
    """The signing key: ``TUNEFACTORY_RUN_KEY`` or the per-user key file (created on first use, 0600)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode("utf-8")
    path = key_file()
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def is_state_file(name: str) -> bool:
    """Whether a top-level file of a run folder is state that Tune unpickles on restore."""
    return any(fnmatch.fnmatchcase(name, p) for p in STATE_PATTERNS)


def digest(data: bytes, key: bytes | None = None) -> str:
    """HMAC-SHA256 of ``data`` (hex)."""
    return hmac.new(run_key() if key is None else key, data, hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------- file access (folder or URI)
def _fs(location: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if st.is_uri(location):
        fs, root = pafs.FileSystem.from_uri(location)
        return fs, str(root)
    return pafs.LocalFileSystem(), str(Path(location).resolve())


def _read(fs: Any, path: str) -> bytes | None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as fh:
        return bytes(fh.read())


def _state_names(fs: Any, root: str) -> list[str]:
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and is_state_file(i.base_name))


def _load_manifest(fs: Any, root: str) -> dict[str, list[str]] | None:
    data = _read(fs, f"{root}/{MANIFEST}")
    if data is None:
        return None
    try:
        raw = json.loads(data.decode("utf-8"))
        files = raw["files"]
        return {str(k): [str(x) for x in v] for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_manifest(fs: Any, root: str, files: Mapping[str, list[str]]) -> None:
    text = json.dumps({"algorithm": "HMAC-SHA256", "files": dict(sorted(files.items()))}, indent=1)
    tmp = f"{root}/{MANIFEST}.{secrets.token_hex(4)}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write(text.encode("utf-8"))
    fs.move(tmp, f"{root}/{MANIFEST}")


# ----------------------------------------------------------------------------- signing and checking
def sign_contents(location: str, contents: Mapping[str, bytes]) -> None:
    """Add the signatures of ``{file name: content}`` to ``location``'s manifest."""
    if contents:
        sign_in(*_fs(location), contents)


def sign_in(fs: Any, root: str, contents: Mapping[str, bytes]) -> None:
    """:func:`sign_contents` on a ``pyarrow`` filesystem and a folder path on it."""
    key = run_key()
    files = _load_manifest(fs, root) or {}
    for name, data in contents.items():
        d = digest(data, key)
        files[name] = [d, *[x for x in files.get(name, []) if x != d]][:_KEEP]
    _write_manifest(fs, root, files)


def sign_files(location: str, names: Iterable[str] | None = None, *, source: str | None = None) -> None:
    """Sign state files (default: every one) as they are in ``source`` (default: ``location``).

    ``source`` is a local folder holding the same files about to be uploaded to ``location``
    (Tune's driver staging folder).
    """
    src = source or location
    sfs, sroot = _fs(src)
    wanted = _state_names(sfs, sroot) if names is None else list(names)
    contents = {}
    for name in wanted:
        data = _read(sfs, f"{sroot}/{name}")
        if data is not None:
            contents[name] = data
    sign_contents(location, contents)


def check_run_dir(location: str) -> None:
    """Refuse a run folder whose pickled state is not signed by our key, or was altered.

    Raises:
        RunError: one line naming the first bad file and the ``--trust-run-dir`` way out.
    """
    fs, root = _fs(location)
    names = _state_names(fs, root)
    if not names:
        return
    manifest = _load_manifest(fs, root)
    if manifest is None:
        raise RunError(f"{root}/{names[0]}: refusing to resume: the run folder has no valid {MANIFEST}, so its "
                       f"pickled state cannot be authenticated (made by another user or key, or before "
                       f"tunefactory signed runs); {TRUST_HINT}")
    key = run_key()
    for name in names:
        data = _read(fs, f"{root}/{name}") or b""
        if name not in manifest:
            raise RunError(f"{root}/{name}: refusing to resume: this pickled state file is not in {MANIFEST} "
                           f"(not written by this sweep); {TRUST_HINT}")
        if not any(hmac.compare_digest(digest(data, key), d) for d in manifest[name]):
            raise RunError(f"{root}/{name}: refusing to resume: this pickled state file was altered after the sweep "
                           f"signed it (or signed with another key: set {KEY_ENV} to the run's key); {TRUST_HINT}")

"""Tune's experiment state file, made to agree with the trial folders before a restore.

Tune's ``experiment_state-*.json`` is a private format (Ray 2.60); this module reads and
patches it as JSON through pyarrow's filesystems (local folders and URIs alike) and imports
no Ray. The Ray API itself stays in :mod:`cluster.ray_runtime`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from cluster import storage as st
from trainables.errors import RunError
from trainables.records import MAX_BYTES, Record, check, decode, parse_json

#: What to do about a damaged state file.
HINT = "restore the run folder from a copy, or start the sweep again"


class TrialState(Record):
    """A trial of Tune's experiment state (the keys reconciled here)."""

    trial_id: str
    status: str | None = None
    relative_logdir: str | None = None


class ExperimentState(Record):
    """Tune's ``experiment_state-*.json``: ``trial_data`` is a list of (trial, runtime metadata) JSON texts."""

    trial_data: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(default_factory=list)


class SearcherState(Record):
    """``searcher-state-*.pkl``: the grouped searcher's JSON state (:meth:`cluster.searcher.GroupedSearcher.save`)."""

    format: str
    issued: dict[str, int]
    live: dict[str, Annotated[list[str | int | None], Field(min_length=2, max_length=2)]]
    studies: dict[str, list[dict[str, Any]]]


def parse_searcher_state(data: bytes, *, path: Path | str) -> dict[str, Any]:
    """The searcher's JSON state, checked (one line naming the key when damaged)."""
    where = Path(path)
    if len(data) > MAX_BYTES:
        raise RunError(f"{where}: over {MAX_BYTES:,} bytes; not a searcher state tunefactory wrote")
    state: dict[str, Any] = check(parse_json(decode(data, path=where, hint=HINT), path=where, hint=HINT),
                                  SearcherState, path=where, hint=HINT)
    return state


def check_searcher_state(location: str) -> None:
    """Read the newest searcher state of a run (JSON) before anything restores it.

    A pickle from an older tunefactory is left to :mod:`cluster.integrity` (signed) and
    the searcher itself; a JSON state that is damaged is refused here, in one line,
    before resume writes anything or starts Ray.

    Raises:
        RunError: the state file is not the JSON the searcher writes.
    """
    import pyarrow.fs as pafs

    fs, root = _fs(location)
    names = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root))
                   if i.base_name.startswith("searcher-state-") and i.base_name.endswith(".pkl"))
    if not names:
        return
    with fs.open_input_stream(names[-1]) as fh:
        data = bytes(fh.read(MAX_BYTES + 1))
    if data[:1] != b"\x80":
        parse_searcher_state(data, path=names[-1])


def _fs(location: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if st.is_uri(location):
        fs, root = pafs.FileSystem.from_uri(location)
        return fs, root
    return pafs.LocalFileSystem(), str(Path(location).resolve())


def _trial_finished(fs: Any, trial_path: str) -> dict[str, Any] | None:
    """The final result row of a trial folder (``done`` with test scores), or None.

    A trial ASHA stopped also ends with ``done=True`` in Ray 2.60; only a finished trial's
    last row carries the test scores.
    """
    import pyarrow.fs as pafs

    path = f"{trial_path}/result.json"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as fh:
        text = bytes(fh.read()).decode("utf-8", errors="replace")
    for line in reversed(text.splitlines()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("done") is True and "test_rmse" in row:
            return row
    return None


def reconcile_state(location: str) -> dict[str, list[str]]:
    """Make Tune's experiment state agree with the trial folders before ``Tuner.restore``.

    A driver killed between a trial's final result and the next state snapshot leaves
    that trial RUNNING in the state although its final row and checkpoint are on disk;
    restoring as is would train it again. Such trials are marked TERMINATED. Unfinished
    trials without a checkpoint restart from scratch, so their partial epoch rows are
    cleared (the history then holds each epoch once).

    Returns:
        ``{"finished": [...], "cleared": [...]}`` trial ids.
    """
    import pyarrow.fs as pafs

    fs, root = _fs(location)
    states = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root))
                    if i.base_name.startswith("experiment_state-") and i.base_name.endswith(".json"))
    done: dict[str, list[str]] = {"finished": [], "cleared": []}
    if not states:
        return done
    where = Path(states[-1])
    with fs.open_input_stream(states[-1]) as fh:
        raw = bytes(fh.read(MAX_BYTES + 1))
    if len(raw) > MAX_BYTES:
        raise RunError(f"{where}: over {MAX_BYTES:,} bytes; not a state file Tune wrote")
    state = check(parse_json(decode(raw, path=where, hint=HINT), path=where, hint=HINT), ExperimentState,
                  path=where, hint=HINT)
    changed = False
    for i, pair in enumerate(state.get("trial_data", [])):
        trial = check(parse_json(pair[0], path=where, hint=HINT), TrialState, path=where,
                      where=f"trial_data[{i}][0]", hint=HINT)
        meta = check(parse_json(pair[1], path=where, hint=HINT), dict[str, Any], path=where,
                     where=f"trial_data[{i}][1]", hint=HINT)
        if trial.get("status") in ("TERMINATED", "ERROR"):
            continue
        tpath = f"{root}/{trial.get('relative_logdir') or 'trial_' + trial['trial_id']}"
        final = _trial_finished(fs, tpath)
        if final is not None:
            trial["status"] = "TERMINATED"
            meta["last_result"] = final
            pair[0], pair[1] = json.dumps(trial, indent=2), json.dumps(meta, indent=2)
            done["finished"].append(trial["trial_id"])
            changed = True
            continue
        ckpts = [i for i in fs.get_file_info(pafs.FileSelector(tpath, allow_not_found=True))
                 if i.base_name.startswith("checkpoint_")]
        if not ckpts:
            for f in ("result.json", "progress.csv"):
                if fs.get_file_info(f"{tpath}/{f}").type == pafs.FileType.File:
                    with fs.open_output_stream(f"{tpath}/{f}") as out:
                        out.write(b"")
            done["cleared"].append(trial["trial_id"])
    if changed:
        tmp = f"{states[-1]}.tmp"
        with fs.open_output_stream(tmp) as out:
            out.write(json.dumps(state).encode("utf-8"))
        fs.move(tmp, states[-1])
    return done

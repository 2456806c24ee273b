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
from cluster.progress import METRIC
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


#: The Optuna journal in a run folder (one study per asset/timeframe, named like the group).
JOURNAL = "optuna.journal"


def _rows(fs: Any, trial_path: str) -> list[dict[str, Any]]:
    """The result rows of a trial folder (``result.json``; [] when there is none)."""
    import pyarrow.fs as pafs

    path = f"{trial_path}/result.json"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return []
    with fs.open_input_stream(path) as fh:
        text = bytes(fh.read()).decode("utf-8", errors="replace")
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _ended(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row a trial ended with: its final row (test scores), or the last row of a trial ASHA
    stopped (Ray 2.60 marks that one ``done`` too); None while it was still running."""
    final = next((r for r in reversed(rows) if r.get("done") is True and "test_rmse" in r), None)
    if final is not None:
        return final
    return rows[-1] if rows and rows[-1].get("done") is True else None


def _trial_finished(fs: Any, trial_path: str) -> dict[str, Any] | None:
    """The final result row of a trial folder (``done`` with test scores), or None.

    A trial ASHA stopped also ends with ``done=True`` in Ray 2.60; only a finished trial's
    last row carries the test scores.
    """
    rows = _rows(fs, trial_path)
    return next((r for r in reversed(rows) if r.get("done") is True and "test_rmse" in r), None)


def optuna_trial_json(t: Any) -> dict[str, Any]:
    """An Optuna ``FrozenTrial`` as the searcher's state file holds it (``cluster.searcher``)."""
    from optuna.distributions import distribution_to_json

    return {"state": t.state.name, "value": t.value, "params": t.params,
            "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
            "user_attrs": t.user_attrs, "system_attrs": t.system_attrs}


def _journal_trials(fs: Any, root: str) -> dict[str, dict[str, Any]]:
    """Tune trial id -> its Optuna trial (state-file JSON) from the run's journal ({} without one).

    The searcher mirrors every trial into ``optuna.journal`` as it ends (local run folders
    only), so the journal knows the Optuna parameters of trials that ended after the last
    snapshot.
    """
    import pyarrow.fs as pafs

    if not isinstance(fs, pafs.LocalFileSystem) or fs.get_file_info(f"{root}/{JOURNAL}").type != pafs.FileType.File:
        return {}
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out: dict[str, dict[str, Any]] = {}
    try:
        storage = JournalStorage(JournalFileBackend(f"{root}/{JOURNAL}"))
        for summary in optuna.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            for t in study.get_trials(deepcopy=False):
                tid = t.user_attrs.get("tune_trial_id")
                if tid:
                    out[str(tid)] = optuna_trial_json(t)
    except Exception:  # a journal cut mid-write: adopt without Optuna parameters rather than fail the resume
        return out
    return out


def _newest(fs: Any, root: str, prefix: str, suffix: str) -> str | None:
    import pyarrow.fs as pafs

    found = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root))
                   if i.base_name.startswith(prefix) and i.base_name.endswith(suffix))
    return found[-1] if found else None


def _read_json(fs: Any, path: str) -> Any:
    with fs.open_input_stream(path) as fh:
        return json.loads(bytes(fh.read()).decode("utf-8"))


def _write_json(fs: Any, path: str, data: Any) -> None:
    tmp = f"{path}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write(json.dumps(data).encode("utf-8"))
    fs.move(tmp, path)


def _tell(searcher: dict[str, Any], trial_id: str, row: dict[str, Any], metric: str) -> None:
    """Do to the searcher's saved state what ``on_trial_complete`` would have done for an ended trial."""
    group, number = searcher["live"].pop(trial_id, (None, None))
    trials = searcher["studies"].get(group) if group is not None else None
    if trials is None or number is None or not 0 <= int(number) < len(trials):
        return  # a grid group (no study), or not the searcher's
    value = row.get(metric)
    ok = isinstance(value, (int, float)) and value == value
    trials[int(number)].update(state="COMPLETE" if ok else "FAIL", value=float(value) if ok and value is not None
                               else None)


def reconcile_state(location: str, *, metric: str = METRIC) -> dict[str, list[str]]:
    """Make Tune's experiment state and the searcher's agree with the trial folders before ``Tuner.restore``.

    Tune snapshots its state on a time budget (:func:`cluster.ray_runtime.bound_state_snapshots`),
    so a driver killed mid-sweep leaves trial folders newer than the snapshot:

    - a trial the snapshot has as running that ended since (its final row, or its last row
      when ASHA stopped it, is on disk) is marked TERMINATED, and the searcher's state
      records its result, instead of training it again ("finished");
    - an unfinished trial of the snapshot without a checkpoint restarts from scratch, so its
      partial epoch rows are cleared and the history holds each epoch once ("cleared");
    - a trial that started after the snapshot and ended is kept: the searcher's state
      counts it as issued and its Optuna study gets it from the run's Optuna journal
      ("adopted"), so it is neither run again nor replaced by a new trial;
    - a trial that started after the snapshot and had not ended is removed: Tune cannot
      resume a trial it never saw, and its trial number is issued again ("discarded").

    Returns:
        ``{"finished", "cleared", "adopted", "discarded"}``: trial ids of each kind.
    """
    import pyarrow.fs as pafs

    fs, root = _fs(location)
    done: dict[str, list[str]] = {"finished": [], "cleared": [], "adopted": [], "discarded": []}
    state_path = _newest(fs, root, "experiment_state-", ".json")
    if state_path is None:
        return done
    where = Path(state_path)
    with fs.open_input_stream(state_path) as fh:
        raw = bytes(fh.read(MAX_BYTES + 1))
    if len(raw) > MAX_BYTES:
        raise RunError(f"{where}: over {MAX_BYTES:,} bytes; not a state file Tune wrote")
    state = check(parse_json(decode(raw, path=where, hint=HINT), path=where, hint=HINT), ExperimentState,
                  path=where, hint=HINT)
    searcher_path = _newest(fs, root, "searcher-state-", ".pkl")
    searcher: dict[str, Any] | None = None
    if searcher_path is not None:
        with fs.open_input_stream(searcher_path) as fh:
            raw = bytes(fh.read(MAX_BYTES + 1))
        if raw[:1] == b"{":  # JSON (cluster.searcher); an old pickled one is left as it is
            searcher = parse_searcher_state(raw, path=searcher_path)
            searcher.setdefault("reissue", {})
    changed = told = False
    known: set[str] = set()
    for i, pair in enumerate(state.get("trial_data", [])):
        trial = check(parse_json(pair[0], path=where, hint=HINT), TrialState, path=where,
                      where=f"trial_data[{i}][0]", hint=HINT)
        meta = check(parse_json(pair[1], path=where, hint=HINT), dict[str, Any], path=where,
                     where=f"trial_data[{i}][1]", hint=HINT)
        known.update({f"trial_{trial['trial_id']}", str(trial.get("relative_logdir") or "")})
        if trial.get("status") in ("TERMINATED", "ERROR"):
            continue
        tpath = f"{root}/{trial.get('relative_logdir') or 'trial_' + trial['trial_id']}"
        ended = _ended(_rows(fs, tpath))
        if ended is not None:
            trial["status"] = "TERMINATED"
            meta["last_result"] = ended
            pair[0], pair[1] = json.dumps(trial, indent=2), json.dumps(meta, indent=2)
            done["finished"].append(trial["trial_id"])
            if searcher is not None:
                _tell(searcher, trial["trial_id"], ended, metric)
                told = True
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
    orphans = sorted((i for i in fs.get_file_info(pafs.FileSelector(root))
                      if i.type == pafs.FileType.Directory and i.base_name.startswith("trial_")
                      and i.base_name not in known), key=lambda i: str(i.path))
    journal = _journal_trials(fs, root) if orphans and searcher is not None else {}
    taken: dict[str, set[int]] = {}
    for info in orphans:
        tid = info.base_name.removeprefix("trial_")
        ended = _ended(_rows(fs, info.path))
        params = _read_json(fs, f"{info.path}/params.json") if ended is not None else None
        group, number = (params or {}).get("group"), (params or {}).get("trial_number")
        if ended is None or searcher is None or not isinstance(group, str) or group not in searcher["issued"] \
                or not isinstance(number, int):
            fs.delete_dir(info.path)  # see the docstring: its number is issued again below
            done["discarded"].append(tid)
            continue
        taken.setdefault(group, set()).add(number)
        if tid in journal and group in searcher["studies"]:
            value = ended.get(metric)
            ok = isinstance(value, (int, float)) and value == value
            searcher["studies"][group].append({**journal[tid], "state": "COMPLETE" if ok else "FAIL",
                                               "value": float(value) if ok and value is not None else None})
        done["adopted"].append(tid)
        told = True
    if searcher is not None:
        for group, numbers in taken.items():
            issued = int(searcher["issued"][group])
            top = max(max(numbers) + 1, issued)
            # Numbers issued after the snapshot whose trial was discarded: handed out again.
            free = set(searcher["reissue"].get(group, [])) | set(range(issued, top))
            searcher["reissue"][group] = sorted(free - numbers)
            searcher["issued"][group] = top
        if told and searcher_path is not None:
            _write_json(fs, searcher_path, searcher)
    if changed:
        _write_json(fs, state_path, state)
    return done

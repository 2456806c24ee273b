"""The run folder a sweep writes: where it goes, what we write into it, the report at the end.

Run folder (``<storage>/<name>/``): Ray Tune's own experiment state and one folder per
trial (``result.json`` with every reported row, ``params.json``, the final checkpoint),
plus ``spec.yaml`` (the fully merged spec), ``groups.json`` (per asset/timeframe:
sample spans, persistence and the other baselines, gaps) and ``test_span/<ASSET>_<TF>.csv``
(the test rows every trial of a group shares; each checkpoint keeps only its own
forecasts, see :mod:`trainables.predictions`) written here before any trial starts.
``storage`` may be a folder (local or a shared mount) or a URI (``s3://``, ``gs://``,
``file://``); for URIs the report is built in a local mirror and uploaded next
to the run.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from cluster import storage as st
from cluster.console import say
from reports.build import build_report
from reports.collect import FINISHED_MARKER, load_run
from search_spaces.loader import LoadedSpec
from trainables.errors import RunError
from trainables.evaluation.baselines import baselines
from trainables.evaluation.scores import rmse
from trainables.features.dataset import Prepared
from trainables.files import atomic_write
from trainables.predictions import SPAN_DIR, span_csv, span_file


def _exists_hint(run: str) -> RunError:
    return RunError(f"{run}: run directory already exists; continue it with `tunefactory resume {run}` "
                    "or choose another --name")


def resolve_run_dir(storage: str | Path, name: str, *, explicit_name: bool) -> Path:
    """Pick the run directory; never overwrite an existing run.

    An explicit ``--name`` that exists is an error (with the resume hint); a default name
    that exists gets a timestamp suffix, so ``make demo`` twice keeps both runs.
    """
    root = Path(storage).expanduser().resolve()
    run = root / name
    if run.exists() and any(run.iterdir()):
        if explicit_name:
            raise _exists_hint(str(run))
        run = root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return run


def resolve_run_location(storage: str | Path, name: str, *, explicit_name: bool) -> str:
    """Like :func:`resolve_run_dir` but also for URIs (``s3://``, ``gs://``, ``file://``)."""
    if not st.is_uri(storage):
        return str(resolve_run_dir(storage, name, explicit_name=explicit_name))
    run = st.join(str(storage), name)
    if st.exists_nonempty(run):
        if explicit_name:
            raise _exists_hint(run)
        run = st.join(str(storage), f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    return run


def group_summary(p: Prepared) -> dict[str, Any]:
    """What reports need about a group without re-loading data: spans and baselines.

    ``baselines``: ``{name: {"val_rmse", "test_rmse", ...}}`` of persistence, drift, AR(p)
    and (volatility targets) GARCH(1,1) and HAR-RV on exactly this group's validation and test
    samples (see :mod:`trainables.evaluation.baselines`).
    """
    return {
        "asset": p.asset, "timeframe": p.timeframe, "target": p.target, "horizon": p.horizon,
        "source": p.source, "columns": p.columns, "max_lookback": p.max_lookback,
        "samples": {"train": len(p.train_idx), "val": len(p.val_idx), "test": len(p.test_idx)},
        "spans": {"train": p.span(p.train_idx), "val": p.span(p.val_idx), "test": p.span(p.test_idx)},
        "persistence_rmse": {"val": rmse(p.y[p.val_idx], p.persistence[p.val_idx]),
                             "test": rmse(p.y[p.test_idx], p.persistence[p.test_idx])},
        "baselines": baselines(p),
        "gaps_dropped_samples": p.gaps_dropped, **p.meta,
    }


def write_run_file(location: str, name: str, text: str) -> None:
    """Write one file of ours into the run folder (atomically for local folders)."""
    if st.is_uri(location):
        st.write_text(st.join(location, name), text)
    else:
        atomic_write(Path(location) / name, text)


#: Packages whose versions a run records, each with the distributions that provide it
#: (TensorFlow ships as ``tensorflow-cpu`` too); read from package metadata, nothing is imported.
_VERSIONED = {"tunefactory": ("tunefactory",), "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos"),
              "keras": ("keras",), "ray": ("ray",), "optuna": ("optuna",), "numpy": ("numpy",), "pandas": ("pandas",)}


def run_provenance() -> dict[str, Any]:
    """When the run started, the versions it ran with and the checkout's git commit (if any).

    The report shows them as the run's metadata. ``commit`` is ``None`` outside a git
    checkout (an installed wheel); a ``-dirty`` suffix means uncommitted changes.
    """
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for name, dists in _VERSIONED.items():
        for dist in dists:
            with contextlib.suppress(PackageNotFoundError):
                versions[name] = version(dist)
                break
    commit = None
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            r = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
                               capture_output=True, text=True, timeout=10, check=False)
            commit = (r.stdout.strip() or None) if r.returncode == 0 else None
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": versions, "commit": commit}


def mark_finished(location: str, *, fit_seconds: float) -> None:
    """Write the marker saying the sweep ended (:data:`reports.collect.FINISHED_MARKER`)."""
    write_run_file(location, FINISHED_MARKER, json.dumps({
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "fit_seconds": round(fit_seconds, 1)}))


def clear_finished(location: str) -> None:
    """Remove the finished marker before a resume runs trials again (local folders; a URI keeps it)."""
    if not st.is_uri(location):
        with contextlib.suppress(FileNotFoundError):
            (Path(location) / FINISHED_MARKER).unlink()


def write_run_header(location: str, loaded: LoadedSpec, datasets: dict[str, Prepared], *,
                     prepare_seconds: float) -> None:
    """``spec.yaml`` and ``groups.json``: what the run is, written before any trial starts."""
    if not st.is_uri(location):
        Path(location).mkdir(parents=True, exist_ok=True)
    write_run_file(location, "spec.yaml", yaml.safe_dump(loaded.raw, sort_keys=False))
    write_run_file(location, "groups.json", json.dumps(
        {"spec_file": str(loaded.path), "name": location.rstrip("/").rpartition("/")[2],
         "prepare_seconds": prepare_seconds, **run_provenance(),
         "groups": {g: group_summary(p) for g, p in datasets.items()}}, indent=1))
    write_test_spans(location, datasets)


def write_test_spans(location: str, datasets: dict[str, Prepared], *, only_missing: bool = False) -> None:
    """``test_span/<ASSET>_<TF>.csv`` per group: the test rows every trial's forecasts align to.

    Written once per group rather than once per trial (a BTC-USDT 1h trial kept 519 KB of
    these rows as text); through :func:`write_run_file`, so object storage works too.

    Args:
        location: the run folder or URI (or a confirmation's experiment folder).
        datasets: the prepared groups by dataset key (the key names the file).
        only_missing: keep span files that exist (``resume`` of a run started before the
            compact predictions: the files its new trials need are added, nothing rewritten).
    """
    for key, p in datasets.items():
        name = f"{SPAN_DIR}/{span_file(key)}"
        if only_missing and st.read_text(st.join(location, name)) is not None:
            continue
        write_run_file(location, name, span_csv(p))


def read_spec_text(location: str) -> str:
    """The ``spec.yaml`` of a run folder or URI.

    Raises:
        RunError: not a tunefactory run directory.
    """
    text = st.read_text(st.join(location, "spec.yaml"))
    if text is None:
        raise RunError(f"{location}: not a tunefactory run directory (no spec.yaml)")
    return text


def write_report(location: str) -> Path:
    """Build the report; for URIs in a local mirror, then upload ``report/`` next to the run.

    Returns:
        The local run folder the report was built in.
    """
    if not st.is_uri(location):
        out = build_report(Path(location))
        say(f"tunefactory: leaderboard {out / 'index.html'}")
        return Path(location)
    local = st.download(location, st.local_mirror(location))
    out = build_report(local)
    st.upload(out, st.join(location, "report"))
    say(f"tunefactory: leaderboard {st.join(location, 'report', 'index.html')} (local copy {out / 'index.html'})")
    return local


def print_trial_counts(location: str) -> None:
    """One line: how many trials finished and failed (read back from storage)."""
    try:
        run = load_run(st.local_mirror(location) if st.is_uri(location) else Path(location))
    except Exception:
        return  # the report already said what is wrong with the run folder
    counts: dict[str, int] = {}
    for t in run.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    say("tunefactory: trials " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))

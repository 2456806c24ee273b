"""Run a sweep, top to bottom: spec -> prepared groups -> run folder -> Tuner -> report.

:func:`run_sweep` and :func:`resume_sweep` read in the order they act. What each step
needs lives elsewhere: the data pipeline (:mod:`search_spaces.recipes` over
:mod:`trainables.pipeline`), the run folder (:mod:`cluster.run_folder`), Ray
(:mod:`cluster.ray_runtime`, the only driver module that imports it), the searcher and
ASHA (:mod:`cluster.searcher`), the trial itself (:mod:`cluster.tune_trial`).

A trial that raises or whose loss becomes NaN ends as failed (Ray writes its reason to the
trial's ``error.txt``; it is retried up to ``resources.max_failures`` times) and the sweep
goes on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cluster import integrity
from cluster import ray_runtime as rt
from cluster import storage as st
from cluster.console import attach_log_file, say, tame_third_party
from cluster.experiment_state import check_searcher_state, reconcile_state
from cluster.progress import METRIC, Progress
from cluster.ray_runtime import WORKER_ENV, init_ray
from cluster.run_folder import (
    clear_finished,
    group_summary,
    mark_finished,
    print_trial_counts,
    read_spec_text,
    resolve_run_location,
    write_report,
    write_run_header,
    write_test_spans,
)
from cluster.searcher import GroupedASHA, GroupedSearcher, WaitingFirstFIFO
from cluster.signals import stop_on_signals
from cluster.tune_trial import train_trial
from search_spaces.loader import LoadedSpec, load_spec
from search_spaces.recipes import prepare_groups
from search_spaces.schema import Spec
from trainables.errors import Interrupted, RunError
from trainables.features.dataset import Prepared

__all__ = ["METRIC", "WORKER_ENV", "build_tuner", "group_summary", "init_ray", "prepare_groups",
           "reconcile_state", "resume_sweep", "run_sweep", "spec_tuner", "trial_slots"]


def trial_slots(spec: Spec, resources: Mapping[str, float]) -> int:
    """How many trials the cluster's resources fit at once (at least 1)."""
    fits = [resources.get("CPU", 0.0) / spec.resources.cpus] if spec.resources.cpus > 0 else []
    if spec.resources.gpus > 0:
        fits.append(resources.get("GPU", 0.0) / spec.resources.gpus)
    slots = int(min(fits)) if fits else 1
    if spec.search.max_concurrent:
        slots = min(slots, spec.search.max_concurrent)
    return max(1, slots)


_PENDING_SET: list[str | None] = [None]  # the value _allow_pending_trials last set


def _allow_pending_trials(spec: Spec, resources: Mapping[str, float] | None) -> None:
    """Let Tune start as many trial workers at once as the cluster fits.

    With a custom searcher and no concurrency limit Tune keeps one trial pending at a
    time, so workers start one after another: ~1.5 s apart on a laptop, and minutes to
    fill a 100-CPU cluster. ``TUNE_MAX_PENDING_TRIALS_PG`` set by the user wins (Tune
    reads it when ``Tuner.fit`` starts). ``resources``: the connected cluster's (None: not
    connected yet, so nothing to size by).
    """
    current = os.environ.get("TUNE_MAX_PENDING_TRIALS_PG")
    if (current is not None and current != _PENDING_SET[0]) or resources is None:
        return  # the user's, or no cluster to size it by
    value = str(trial_slots(spec, resources))
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = _PENDING_SET[0] = value


def spec_tuner(spec: Spec, fn: Callable[..., Any], run_dir: Path | str, *, params: Mapping[str, Any],
               callbacks: Iterable[Any] = (), **tune_config: Any) -> Any:
    """The Tuner of a spec's trials, shared by the sweep and ``confirm``.

    Resources per trial and retries come from the spec; workers are reused but retired when
    they grow (:func:`cluster.ray_runtime.bounded_trainable`); as many trials start at once
    as the cluster fits. ``params`` go through Ray's object store once (the datasets);
    ``tune_config``: searcher, scheduler, samples, param space, metric (see
    :func:`cluster.ray_runtime.make_tuner`).
    """
    _allow_pending_trials(spec, rt.cluster_resources())
    trainable = rt.make_trainable(fn, cpus=spec.resources.cpus, gpus=spec.resources.gpus, **params)
    return rt.make_tuner(trainable, run_dir, max_failures=spec.resources.max_failures,
                         max_concurrent=spec.search.max_concurrent, callbacks=callbacks, **tune_config)


def progress_callback(total: int, groups: Mapping[str, int],
                      config_of: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Any:
    """The Tune callback printing the progress lines (and the live table on a terminal)."""
    prog = Progress(total, groups=groups, config_of=config_of)
    return rt.trial_end_callback(prog.line, lambda trial: prog.line(trial, error=True), on_start=prog.started,
                                 on_end=prog.close)


#: The Optuna journal file in a run folder (one study per asset/timeframe, named like the group).
JOURNAL = "optuna.journal"


def build_tuner(spec: Spec, datasets: Mapping[str, Prepared], run_dir: Path | str) -> Any:
    """The sweep's ``Tuner``: grouped searcher, ASHA per group, resources, reuse of workers.

    ``run_dir`` is a folder or a URI (``s3://bucket/runs/NAME``); Ray Tune writes the trials there.
    """
    # The Optuna studies, mirrored as trials end: `optuna-dashboard RUN_DIR/optuna.journal`.
    journal = None if st.is_uri(run_dir) else str(Path(run_dir) / JOURNAL)
    searcher = GroupedSearcher(spec, metric=METRIC, mode="min", journal=journal)
    scheduler: Any = WaitingFirstFIFO()  # Tune's default, without its scan of every trial
    if spec.scheduler.kind == "asha":
        # time_attr "epoch": the trial's final report repeats its last epoch number, so
        # ASHA never cuts the report that carries test scores and the checkpoint; max_t
        # is one past the last epoch for the same reason. One set of rungs per group.
        scheduler = GroupedASHA(time_attr="epoch", max_t=spec.max_t + 1, grace_period=spec.scheduler.grace_period,
                                reduction_factor=spec.scheduler.reduction_factor)
    tr = spec.tracking
    trackers = rt.tracking_callbacks(
        run_dir=str(run_dir), experiment=str(run_dir).rstrip("/").rpartition("/")[2], mlflow_uri=tr.mlflow,
        wandb_project=tr.wandb.project if tr.wandb else None, wandb_mode=tr.wandb.mode if tr.wandb else "offline",
        wandb_entity=tr.wandb.entity if tr.wandb else None, tensorboard=tr.tensorboard)
    return spec_tuner(spec, train_trial, run_dir, params={"datasets": dict(datasets)},
                      callbacks=[progress_callback(searcher.total, dict.fromkeys(searcher.groups, searcher.budget)),
                                 *trackers], metric=METRIC, mode="min",
                      search_alg=searcher, scheduler=scheduler, num_samples=searcher.total)


def _in_background(fn: Callable[[], Any], name: str) -> threading.Thread:
    """Run ``fn`` on a daemon thread; errors there are ignored (the main path redoes the work)."""
    def target() -> None:
        with contextlib.suppress(Exception):
            fn()

    th = threading.Thread(target=target, name=name, daemon=True)
    th.start()
    return th


def _import_importance() -> None:
    # fANOVA importance pulls in scikit-learn and SciPy (~1.5 s of imports). The driver
    # mostly waits while trials train, so importing them then, not after the last trial,
    # takes that off the time between the last trial and the leaderboard.
    import optuna.importance  # noqa: F401


def warn_if_node_local(storage: str | Path) -> str | None:
    """Print (and return) the node-local storage warning when the connected cluster has several nodes."""
    msg = st.node_local_warning(storage, nodes=rt.alive_nodes())
    if msg:
        print(msg, file=sys.stderr, flush=True)
    return msg


def _fit_and_finish(tuner: Any, location: str, *, started_ray: bool) -> Path:
    """Run the trials, then the report, while a local Ray instance shuts down alongside.

    Stopping Ray's processes takes ~1.3 s; the report needs only the files on storage.

    Raises:
        Interrupted: SIGINT (exit 130) or SIGTERM (exit 143) stopped the sweep; Tune saved
            its state, and the message is the resume command.
    """
    _in_background(_import_importance, "report-imports")
    t1 = time.perf_counter()
    with stop_on_signals() as sig:
        tuner.fit()
    integrity.sign_files(location)  # every state file as the sweep left it (finished or interrupted)
    if sig.signum is not None:
        if started_ray:
            rt.shutdown_in_background().join()
        raise Interrupted(f"tunefactory: sweep interrupted by {signal.Signals(sig.signum).name}; its trials so far "
                          f"are kept: continue it with `tunefactory resume {location}`",
                          exit_code=128 + sig.signum)
    say(f"tunefactory: sweep finished in {time.perf_counter() - t1:.1f}s", progress=True)
    mark_finished(location, fit_seconds=time.perf_counter() - t1)  # the report is no longer partial
    stopper = rt.shutdown_in_background() if started_ray else None
    out = write_report(location)
    print_trial_counts(location)
    if stopper is not None:
        stopper.join()
    return out


def run_sweep(loaded: LoadedSpec, *, name: str | None = None, storage: str | None = None,
              address: str | None = None, num_cpus: int | None = None) -> Path:
    """Run a whole sweep and write its report; return the run directory.

    Args:
        loaded: the validated spec.
        name: run name (default: the spec's name, suffixed if it exists).
        storage: root folder or URI for runs (default: the spec's ``storage``).
        address: Ray cluster address (``auto`` inside a cluster); local Ray when None.
        num_cpus: CPUs of the local Ray instance (default: all).

    Returns:
        The run directory (for URI storage: the local mirror the report was built in).
    """
    spec = loaded.spec
    st.check_run_name(name)
    root = storage or spec.storage
    location = resolve_run_location(root, name or loaded.name, explicit_name=name is not None)
    t0 = time.perf_counter()
    datasets = prepare_groups(spec)  # fails on bad data before anything is written
    prep_s = time.perf_counter() - t0
    rt.import_ray()
    tame_third_party()  # before Ray starts: its start-up lines go to the log file
    started = init_ray(address, num_cpus=num_cpus)  # an unreachable cluster or a rejected token: nothing written yet
    warn_if_node_local(root)
    write_run_header(location, loaded, datasets, prepare_seconds=prep_s)
    attach_log_file(location)
    say(f"tunefactory: {len(datasets)} asset/timeframe groups prepared in {prep_s:.1f}s; run dir {location}")
    tuner = build_tuner(spec, datasets, location)
    return _fit_and_finish(tuner, location, started_ray=started)


def _load_run_spec(location: str) -> LoadedSpec:
    """The spec a run was started with (from its ``spec.yaml``, also on object storage)."""
    spec_text = read_spec_text(location)
    if not st.is_uri(location):
        return load_spec(Path(location) / "spec.yaml")
    with tempfile.TemporaryDirectory(prefix="tunefactory-spec-") as tmp:
        spec_file = Path(tmp) / "spec.yaml"
        spec_file.write_text(spec_text, encoding="utf-8")
        return load_spec(spec_file)


def resume_sweep(run_dir: Path | str, *, address: str | None = None, num_cpus: int | None = None,
                 retry_failed: bool = False, trust_run_dir: bool = False) -> Path:
    """Continue an interrupted sweep in ``run_dir`` (finished trials are kept, not re-run).

    Args:
        run_dir: the run folder or URI that ``tunefactory run`` printed.
        address: Ray cluster address; local Ray when None.
        num_cpus: CPUs of the local Ray instance.
        retry_failed: also run again the trials that failed (after their ``max_failures`` retries).
        trust_run_dir: skip the check that the pickled state was signed by this sweep
            (:mod:`cluster.integrity`); a crafted file then runs code as the caller.

    Raises:
        RunError: not a run directory, the sweep never started, or its pickled state is
            unsigned or altered (without ``trust_run_dir``).
    """
    location = str(run_dir) if st.is_uri(run_dir) else str(Path(run_dir).resolve())
    read_spec_text(location)  # not a run directory: say so before anything else
    if not rt.can_restore(location):
        raise RunError(f"{location}: no Ray Tune state to resume (the sweep never started); start it again "
                       "with `tunefactory run`")
    if trust_run_dir:
        print(f"tunefactory: WARNING: --trust-run-dir: the pickled state in {location} is unpickled unchecked; "
              "a crafted file there runs code as you", file=sys.stderr, flush=True)
    else:
        integrity.check_run_dir(location)  # before anything unpickles it
    loaded = _load_run_spec(location)
    check_searcher_state(location)  # a damaged state is refused before anything is rewritten
    datasets = prepare_groups(loaded.spec)
    fixed = reconcile_state(location)
    integrity.sign_files(location)  # checked above (or trusted); reconcile_state may have rewritten the state
    write_test_spans(location, datasets, only_missing=True)  # a run from before the compact predictions
    ended = len(fixed["finished"]) + len(fixed["adopted"])
    if ended:
        say(f"tunefactory: {ended} trial(s) had ended after the last state snapshot; kept as they ended",
            progress=True)
    if fixed["discarded"]:
        say(f"tunefactory: {len(fixed['discarded'])} trial(s) started after the last state snapshot had not "
            "ended; removed, their trial numbers run again", progress=True)
    rt.import_ray()
    tame_third_party()
    attach_log_file(location)
    started = init_ray(address, num_cpus=num_cpus)
    warn_if_node_local(location.rstrip("/").rpartition("/")[0] if st.is_uri(location) else Path(location).parent)
    spec = loaded.spec
    trainable = rt.make_trainable(train_trial, cpus=spec.resources.cpus, gpus=spec.resources.gpus,
                                  datasets=dict(datasets))
    tuner = rt.restore_tuner(location, trainable, retry_failed=retry_failed, metric=METRIC)
    clear_finished(location)  # trials run again: a report built meanwhile is partial
    return _fit_and_finish(tuner, location, started_ray=started)

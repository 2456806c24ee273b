"""Turn a validated spec into a Ray Tune sweep, run it, and hand the run directory to reports.

Run directory (``<storage>/<name>/``): Ray's own experiment state and one folder per trial
(``result.json`` with every reported row, ``params.json``, the final checkpoint), plus
``spec.yaml`` (the fully merged spec) and ``groups.json`` (per asset/timeframe: sample
spans, persistence baselines, gaps) written by us before any trial starts.

``storage`` may be a folder (local or a shared mount) or a URI (``s3://``, ``gs://``,
``file://``); for URIs the report is built in a local mirror and uploaded next to the run.
A trial that raises or whose loss becomes NaN ends as failed (Ray writes its reason to the
trial's ``error.txt``; it is retried up to ``resources.max_failures`` times) and the sweep
goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cluster import storage as st
from search_spaces.loader import LoadedSpec
from search_spaces.schema import Spec
from trainables.data.candles import load_candles
from trainables.errors import RunError
from trainables.evaluation.scores import rmse
from trainables.features.dataset import Prepared, Split, prepare
from trainables.files import atomic_write

METRIC = "val_ratio_best"
#: Environment of every trial worker.
#: - TF_FORCE_GPU_ALLOW_GROWTH is read when TensorFlow first touches a GPU, so a worker
#:   never grabs a whole card even if something initialises TF before configure_tensorflow.
#: - TUNE_FUNCTION_THREAD_TIMEOUT_S: before a reused worker starts its next trial, Tune
#:   waits this long for the previous trial's thread to end, and otherwise fails the *next*
#:   trial ("Could not re-use actor"). Its 2 s default was too short on a loaded 2-core
#:   machine: one trial of 60 in a `make demo` run was lost.
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
              "TUNE_FUNCTION_THREAD_TIMEOUT_S": "120"}


def prepare_groups(spec: Spec) -> dict[str, Prepared]:
    """Load candles and compute the full indicator pool once per (asset, timeframe)."""
    from trainables.features.targets import TARGETS

    out: dict[str, Prepared] = {}
    for asset, tf in spec.groups:
        candles = load_candles(asset, tf, path=spec.data.path)
        # Realised-volatility targets read the asset's 1h candles (a 1h group is its own).
        intraday = (load_candles(asset, "1h", path=spec.data.path).frame
                    if TARGETS[spec.target.kind].needs_intraday and tf != "1h" else None)
        frame = candles.frame
        if spec.data.start or spec.data.end:
            import pandas as pd

            keep = pd.Series(True, index=frame.index)
            if spec.data.start:
                keep &= frame["timestamp"] >= pd.Timestamp(spec.data.start, tz="UTC")
            if spec.data.end:
                keep &= frame["timestamp"] < pd.Timestamp(spec.data.end, tz="UTC")
            candles = type(candles)(candles.asset, candles.timeframe, frame[keep].reset_index(drop=True),
                                    candles.source, candles.resampled_from, candles.gaps)
        filled = 0
        if spec.data.gap_policy == "ffill":
            from trainables.data.candles import fill_gaps

            frame2, filled = fill_gaps(candles.frame, tf, limit=spec.data.ffill_limit)
            candles = type(candles)(candles.asset, candles.timeframe, frame2, candles.source,
                                    candles.resampled_from, candles.gaps)
        funding, metrics = spec.data.funding_file(asset), spec.data.metric_files(asset)
        if funding is not None or metrics:
            from trainables.data.tables import attach_metrics

            # Metrics join as of each candle's close, using only values published by then;
            # rows whose metric is missing or stale become NaN and prepare() drops them
            # for every trial of the group alike.
            candles = type(candles)(candles.asset, candles.timeframe,
                                    attach_metrics(candles.frame, tf, funding_file=funding, metric_files=metrics),
                                    candles.source, candles.resampled_from, candles.gaps)
        out[f"{asset}/{tf}"] = prepare(
            candles, spec.features.pool, target=spec.target.kind, horizon=spec.target.horizon,
            max_lookback=spec.window.max_lookback, split=split_of(spec), intraday=intraday)
        out[f"{asset}/{tf}"].meta["filled_candles"] = filled
    return out


def split_of(spec: Spec) -> Split:
    """The spec's split (fractions or dates) as the dataset builder takes it."""
    sp = spec.split
    if sp.val_start is not None and sp.test_start is not None:
        return Split(val_start=sp.val_start, test_start=sp.test_start)
    return Split(float(sp.train or 0.7), float(sp.val or 0.15), float(sp.test or 0.15))


def group_summary(p: Prepared) -> dict[str, Any]:
    """What reports need about a group without re-loading data: spans and baselines.

    ``baselines``: ``{name: {"val_rmse", "test_rmse", ...}}`` of persistence, drift, AR(p)
    and (volatility targets) GARCH(1,1) on exactly this group's validation and test
    samples (see :mod:`trainables.evaluation.baselines`).
    """
    from trainables.evaluation.baselines import baselines

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


def resolve_run_dir(storage: str | Path, name: str, *, explicit_name: bool) -> Path:
    """Pick the run directory; never overwrite an existing run.

    An explicit ``--name`` that exists is an error (with the resume hint); a default name
    that exists gets a timestamp suffix, so ``make demo`` twice keeps both runs.
    """
    root = Path(storage).expanduser().resolve()
    run = root / name
    if run.exists() and any(run.iterdir()):
        if explicit_name:
            raise RunError(f"{run}: run directory already exists; continue it with `tunefactory resume {run}` "
                           "or choose another --name")
        run = root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return run


def resolve_run_location(storage: str | Path, name: str, *, explicit_name: bool) -> str:
    """Like :func:`resolve_run_dir` but also for URIs (``s3://``, ``gs://``, ``file://``)."""
    if not st.is_uri(storage):
        return str(resolve_run_dir(storage, name, explicit_name=explicit_name))
    run = st.join(str(storage), name)
    if st.exists_nonempty(run):
        if explicit_name:
            raise RunError(f"{run}: run directory already exists; continue it with `tunefactory resume {run}` "
                           "or choose another --name")
        run = st.join(str(storage), f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    return run


def _error_reason(trial: Any) -> str:
    """Last line of a failed trial's ``error.txt`` (the exception and its message)."""
    try:
        lines = [ln for ln in Path(trial.error_file).read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "failed"
    except Exception:
        return "failed"


class _Progress:
    """One terminal line per finished trial (Ray's table is too wide for many groups)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.t0 = time.perf_counter()

    def line(self, trial: Any, *, error: bool = False) -> None:
        self.done += 1
        cfg, res = trial.config, trial.last_result or {}
        el = time.perf_counter() - self.t0
        head = f"[{self.done:>4}/{self.total}] {el:6.0f}s {cfg.get('group', '?'):<16} {cfg.get('family', '?'):<6}"
        if error:
            self.failed += 1
            print(f"{head} FAILED: {_error_reason(trial)}", file=sys.stdout, flush=True)
            return
        ratio = res.get(METRIC)
        skill = f"{(1 - ratio) * 100:+.2f}% vs persistence" if ratio else "no result"
        print(f"{head} val_rmse_best={res.get('val_rmse_best', float('nan')):.5g} ({skill}) "
              f"epochs={res.get('epoch', '?')}{'' if res.get('done') else ' (stopped by ASHA)'}",
              file=sys.stdout, flush=True)


def _callbacks(total: int) -> list[Any]:
    from ray.tune import Callback

    prog = _Progress(total)

    class ProgressCallback(Callback):
        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            prog.line(trial)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            prog.line(trial, error=True)

    return [ProgressCallback()]


def init_ray(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Connect to a cluster (``auto`` or ``ray://``/``HOST:PORT``) or start a local one.

    The local instance binds to loopback and starts no dashboard: nothing is exposed.
    With an explicit address, a token in ``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH`` turns
    token authentication on (Ray only does that by itself for ``auto``); a rejected or
    missing token is a one-line :class:`~cluster.remote.auth.ClusterError`.

    Returns:
        True when this call started a local Ray instance (the caller may shut it down).
    """
    import ray

    from cluster.remote.auth import ClusterError, enable_token_auth_for_address, probe_gcs

    if ray.is_initialized():
        return False
    env = {"env_vars": WORKER_ENV}
    if address:
        enable_token_auth_for_address()
        probe_gcs(address)
        try:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        except ray.exceptions.AuthenticationError as e:
            raise ClusterError(f"Ray cluster at {address} rejected the connection: "
                               f"{str(e).splitlines()[0].rstrip('.')}; set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) "
                               "to the cluster's token (`ray get-auth-token` on its head node)") from None
        except ConnectionError as e:
            raise ClusterError(f"cannot connect to a Ray cluster at {address} ({str(e).splitlines()[0]}); "
                               "inside a cluster use --address auto") from None
    else:
        # No pre-started workers: trial actors cannot use them (they carry the job's
        # runtime_env), and starting them competed with Ray's own start-up for the CPUs:
        # Tune's first trial started ~1.5 s later with them on a 2-core machine.
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=env, log_to_driver=False,
                 _node_ip_address="127.0.0.1",
                 _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False})
        return True
    return False


def _in_background(fn: Any, name: str) -> threading.Thread:
    """Run ``fn`` on a daemon thread; errors there are ignored (the main path redoes the work)."""
    def target() -> None:
        # Best effort: the report imports for itself, and atexit shuts Ray down.
        with contextlib.suppress(Exception):
            fn()

    th = threading.Thread(target=target, name=name, daemon=True)
    th.start()
    return th


def _import_report_modules() -> None:
    # fANOVA importance pulls in scikit-learn and SciPy (~1.5 s of imports). The driver
    # mostly waits while trials train, so importing them then, not after the last trial,
    # takes that off the time between the last trial and the leaderboard.
    import optuna.importance  # noqa: F401

    import reports.build  # noqa: F401


def _finish(location: str, *, started_ray: bool) -> Path:
    """After Tuner.fit: report and summary, while a local Ray instance shuts down alongside.

    Stopping Ray's processes takes ~1.3 s (mostly waiting for them to exit); the report
    needs only the files on storage, so both run at once.
    """
    import ray

    stopper = _in_background(ray.shutdown, "ray-shutdown") if started_ray else None
    out = _report(location)
    _summary(location)
    if stopper is not None:
        stopper.join()
    return out


def _alive_nodes() -> int:
    import ray

    try:
        return sum(1 for n in ray.nodes() if n.get("Alive"))
    except Exception:
        return 1


def warn_if_node_local(storage: str | Path) -> str | None:
    """Print (and return) the node-local storage warning when the connected cluster has several nodes."""
    msg = st.node_local_warning(storage, nodes=_alive_nodes())
    if msg:
        print(msg, file=sys.stderr, flush=True)
    return msg


#: A reused worker is retired once its peak resident memory passes this (a safety net:
#: with trainables.trial.fit._forget_custom_gradients a worker stays at ~0.8 GB; see
#: bounded_trainable).
WORKER_RSS_LIMIT_MB = float(os.environ.get("TUNEFACTORY_WORKER_RSS_MB", "3072"))


def make_trainable(spec: Spec, datasets: Mapping[str, Prepared]) -> Any:
    """The trainable class: data via the object store, resources, bounded worker reuse."""
    from ray import tune

    from trainables.trial.fit import train_trial
    from trainables.trial.keras_runtime import bounded_trainable

    fn = tune.with_parameters(train_trial, datasets=dict(datasets))
    return tune.with_resources(bounded_trainable(fn, max_rss_mb=WORKER_RSS_LIMIT_MB),
                               {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus})


def trial_slots(spec: Spec, resources: Mapping[str, float]) -> int:
    """How many trials the cluster's resources fit at once (at least 1)."""
    fits = [resources.get("CPU", 0.0) / spec.resources.cpus] if spec.resources.cpus > 0 else []
    if spec.resources.gpus > 0:
        fits.append(resources.get("GPU", 0.0) / spec.resources.gpus)
    slots = int(min(fits)) if fits else 1
    if spec.search.max_concurrent:
        slots = min(slots, spec.search.max_concurrent)
    return max(1, slots)


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


_PENDING_SET: list[str | None] = [None]  # the value _allow_pending_trials last set


def build_tuner(spec: Spec, datasets: Mapping[str, Prepared], run_dir: Path | str) -> Any:
    """The ``Tuner`` for a spec: grouped searcher, ASHA, resources, reuse of workers.

    ``run_dir`` is a folder or a URI (``s3://bucket/runs/NAME``); Ray Tune writes the trials there.
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from cluster.searcher import GroupedASHA, GroupedSearcher

    searcher = GroupedSearcher(spec, metric=METRIC, mode="min")
    _allow_pending_trials(spec, ray.cluster_resources() if ray.is_initialized() else None)
    if spec.scheduler.kind == "asha":
        # time_attr "epoch": the trial's final report repeats its last epoch number, so
        # ASHA never cuts the report that carries test scores and the checkpoint; max_t
        # is one past the last epoch for the same reason. One set of rungs per group.
        scheduler: Any = GroupedASHA(time_attr="epoch", max_t=spec.max_t + 1,
                                     grace_period=spec.scheduler.grace_period,
                                     reduction_factor=spec.scheduler.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    parent, _, run_name = str(run_dir).rstrip("/").rpartition("/")
    trainable = make_trainable(spec, datasets)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(metric=METRIC, mode="min", search_alg=searcher, scheduler=scheduler,
                                    num_samples=searcher.total, max_concurrent_trials=spec.search.max_concurrent,
                                    reuse_actors=True,
                                    trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(
            name=run_name, storage_path=parent,
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=_callbacks(searcher.total), verbose=0),
    )


def _write_run_file(location: str, name: str, text: str) -> None:
    if st.is_uri(location):
        st.write_text(st.join(location, name), text)
    else:
        atomic_write(Path(location) / name, text)


def _report(location: str) -> Path:
    """Build the report; for URIs in a local mirror, then upload ``report/`` next to the run."""
    from reports.build import build_report

    if not st.is_uri(location):
        out = build_report(Path(location))
        print(f"tunefactory: leaderboard {out / 'index.html'}", flush=True)
        return Path(location)
    local = st.download(location, st.local_mirror(location))
    out = build_report(local)
    st.upload(out, st.join(location, "report"))
    print(f"tunefactory: leaderboard {st.join(location, 'report', 'index.html')} (local copy {out / 'index.html'})",
          flush=True)
    return local


def _summary(location: str) -> None:
    """One line: how many trials finished and failed (read back from storage)."""
    from reports.collect import load_run

    try:
        run = load_run(st.local_mirror(location) if st.is_uri(location) else Path(location))
    except Exception:
        return
    counts: dict[str, int] = {}
    for t in run.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    print("tunefactory: trials " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), flush=True)


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
    root = storage or spec.storage
    location = resolve_run_location(root, name or loaded.name, explicit_name=name is not None)
    t0 = time.perf_counter()
    datasets = prepare_groups(spec)  # fails on bad data before anything is written
    prep_s = time.perf_counter() - t0
    run_name = location.rstrip("/").rpartition("/")[2]
    started = init_ray(address, num_cpus=num_cpus)  # an unreachable cluster or a rejected token: nothing written yet
    warn_if_node_local(root)
    if not st.is_uri(location):
        Path(location).mkdir(parents=True, exist_ok=True)
    _write_run_file(location, "spec.yaml", yaml.safe_dump(loaded.raw, sort_keys=False))
    _write_run_file(location, "groups.json", json.dumps(
        {"spec_file": str(loaded.path), "name": run_name, "prepare_seconds": prep_s,
         "groups": {g: group_summary(p) for g, p in datasets.items()}}, indent=1))
    print(f"tunefactory: {len(datasets)} asset/timeframe groups prepared in {prep_s:.1f}s; run dir {location}",
          flush=True)
    tuner = build_tuner(spec, datasets, location)
    _in_background(_import_report_modules, "report-imports")
    t1 = time.perf_counter()
    tuner.fit()
    print(f"tunefactory: sweep finished in {time.perf_counter() - t1:.1f}s", flush=True)
    return _finish(location, started_ray=started)


def _trial_finished(fs: Any, trial_path: str) -> dict[str, Any] | None:
    """The final result row of a trial folder (``done`` with test scores), or None."""
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
    """Make Ray's experiment state agree with the trial folders before ``Tuner.restore``.

    A driver killed between a trial's final result and the next state snapshot leaves
    that trial RUNNING in the state although its final row and checkpoint are on disk;
    restoring as is would train it again. Such trials are marked TERMINATED. Unfinished
    trials without a checkpoint restart from scratch, so their partial epoch rows are
    cleared (the history then holds each epoch once).

    Returns:
        ``{"finished": [...], "cleared": [...]}`` trial ids.
    """
    import pyarrow.fs as pafs

    if st.is_uri(location):
        fs, root = pafs.FileSystem.from_uri(location)
    else:
        fs, root = pafs.LocalFileSystem(), str(Path(location).resolve())
    states = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root))
                    if i.base_name.startswith("experiment_state-") and i.base_name.endswith(".json"))
    done: dict[str, list[str]] = {"finished": [], "cleared": []}
    if not states:
        return done
    with fs.open_input_stream(states[-1]) as fh:
        state = json.loads(bytes(fh.read()).decode("utf-8"))
    changed = False
    for pair in state.get("trial_data", []):
        trial, meta = json.loads(pair[0]), json.loads(pair[1])
        status = trial.get("status")
        if status in ("TERMINATED", "ERROR"):
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


def resume_sweep(run_dir: Path | str, *, address: str | None = None, num_cpus: int | None = None,
                 retry_failed: bool = False) -> Path:
    """Continue an interrupted sweep in ``run_dir`` (finished trials are kept, not re-run).

    Args:
        run_dir: the run folder or URI that ``tunefactory run`` printed.
        address: Ray cluster address; local Ray when None.
        num_cpus: CPUs of the local Ray instance.
        retry_failed: also run again the trials that failed (after their ``max_failures`` retries).

    Raises:
        RunError: not a run directory, or the sweep never started.
    """
    import tempfile

    from ray import tune

    from search_spaces.loader import load_spec

    location = str(run_dir) if st.is_uri(run_dir) else str(Path(run_dir).resolve())
    spec_text = st.read_text(st.join(location, "spec.yaml"))
    if spec_text is None:
        raise RunError(f"{location}: not a tunefactory run directory (no spec.yaml)")
    if not tune.Tuner.can_restore(location):
        raise RunError(f"{location}: no Ray Tune state to resume (the sweep never started); start it again "
                       "with `tunefactory run`")
    if st.is_uri(location):
        with tempfile.TemporaryDirectory(prefix="tunefactory-spec-") as tmp:
            spec_file = Path(tmp) / "spec.yaml"
            spec_file.write_text(spec_text, encoding="utf-8")
            loaded = load_spec(spec_file)
    else:
        loaded = load_spec(Path(location) / "spec.yaml")
    datasets = prepare_groups(loaded.spec)
    fixed = reconcile_state(location)
    if fixed["finished"]:
        print(f"tunefactory: {len(fixed['finished'])} trial(s) had finished after the last state snapshot; "
              "kept as finished", flush=True)
    started = init_ray(address, num_cpus=num_cpus)
    warn_if_node_local(location.rstrip("/").rpartition("/")[0] if st.is_uri(location) else Path(location).parent)
    trainable = make_trainable(loaded.spec, datasets)
    tuner = tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True,
                               resume_errored=retry_failed)
    _in_background(_import_report_modules, "report-imports")
    t1 = time.perf_counter()
    tuner.fit()
    print(f"tunefactory: sweep finished in {time.perf_counter() - t1:.1f}s", flush=True)
    return _finish(location, started_ray=started)

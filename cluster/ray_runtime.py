"""The driver's one seam over Ray: start or join Ray, build and restore Tuners, Ray internals.

Every other module of tunefactory that runs sweeps (``cluster.sweep``, ``cluster.confirm``,
``cluster.remote.*``) calls the functions here and imports no ``ray`` itself, except the
worker-side trainable (``cluster.tune_trial``), the searcher/scheduler classes that subclass
Ray's public ones (``cluster.searcher``) and the Jobs API client (``cluster.remote.jobs``);
an import-linter contract in ``pyproject.toml`` holds that line. Private Ray state is touched
here only, each time with the reason and a fallback for when a Ray upgrade moves it:

- ``TuneController._maybe_cache_trial_actor`` (retire grown workers: :func:`bounded_trainable`);
- ``ray.init(_node_ip_address=..., _system_config=...)`` (loopback, no pre-started workers);
- ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` (keeps that loopback address: :func:`loopback_only`);
- ``ray._raylet.GcsClient`` (one-line token rejection before ``ray.init``'s minute of retries);
- ``JobSubmissionClient._server_ray_version`` (warn on a Ray version mismatch);
- Tune's ``experiment_state-*.json`` (made to agree with the trial folders before a restore);
- ``TuneController.save_to_dir`` (each state snapshot is signed: :func:`sign_state_snapshots`);
- ``_TrainingRunMetadata.update_metric`` (Tune's statistics of the sweep's metric only: :func:`track_only`);
- ``TuneController._pending_trials``/``_paused_trials`` (the next trial to start: :func:`first_waiting_trial`);
- ``_BackgroundSyncer.sync_up`` and ``ray.train._internal.storage._upload_to_fs_path`` (each trial's
  folder goes to storage when it ends, snapshots copy the run state only: :func:`trial_folders_callback`).

Ray is imported lazily in every function: the CLI imports this module for ``validate``
too, and ``import ray.tune`` costs ~1.5 s of start-up on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cluster import integrity
from cluster.auth import ClusterError, enable_token_auth_for_address, find_token, rejection_message

#: Environment of every trial worker.
#: - TF_FORCE_GPU_ALLOW_GROWTH is read when TensorFlow first touches a GPU, so a worker
#:   never grabs a whole card even if something initialises TF before configure_tensorflow.
#: - TUNE_FUNCTION_THREAD_TIMEOUT_S: before a reused worker starts its next trial, Tune
#:   waits this long for the previous trial's thread to end, and otherwise fails the *next*
#:   trial ("Could not re-use actor"). Its 2 s default was too short on a loaded 2-core
#:   machine: one trial of 60 in a `make demo` run was lost.
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
              "TUNE_FUNCTION_THREAD_TIMEOUT_S": "120"}

#: A reused worker is retired once its peak resident memory passes this (a safety net:
#: with trainables.trial.keras_runtime forgetting TF's custom gradients a worker stays at
#: ~0.8 GB; see :func:`bounded_trainable`).
WORKER_RSS_LIMIT_MB = float(os.environ.get("TUNEFACTORY_WORKER_RSS_MB", "3072"))

#: Passed on to the workers when set: ``benchmarks/driver_10k.py``'s stand-in trials
#: (``trainables.trial.synthetic.ENV``; spelled here so the driver imports no trainable).
SYNTHETIC_ENV = "TUNEFACTORY_SYNTHETIC_EPOCHS"


# ----------------------------------------------------------------------------- Ray itself
#: Environment of the processes a *local* Ray instance starts (GCS, raylet, dashboard
#: agent, runtime-env agent, autoscaler monitor, dashboard in metrics-only mode, workers).
#: Ray turns ``_node_ip_address="127.0.0.1"`` into the machine's routable address unless
#: it believes it runs on a single-machine platform (macOS/Windows), and every Ray
#: listener derives its bind address from the node address: loopback node address =>
#: loopback listeners, otherwise ``0.0.0.0``/``::``/the routable interface. This variable
#: is that belief, for the Python processes Ray starts (read when they import Ray).
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

#: RayConfig of a local instance.
#: - no pre-started workers: trial actors cannot use them (they carry the job's
#:   runtime_env), and starting them competed with Ray's own start-up for the CPUs: Tune's
#:   first trial started ~1.5 s later with them on a 2-core machine;
#: - no metrics collection: without a dashboard nobody scrapes it, and the dashboard
#:   agent would open a Prometheus endpoint (``GET /metrics``, no token) for it.
LOCAL_SYSTEM_CONFIG = {"enable_worker_prestart": False, "prestart_worker_first_driver": False,
                       "enable_metrics_collection": False}


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While starting a local Ray instance: keep its node address, hence every listener, on loopback.

    ``ray.init`` passes ``_node_ip_address`` through ``services.resolve_ip_for_localhost``,
    which replaces 127.0.0.1 by the routable address unless
    ``ray_constants.ENABLE_RAY_CLUSTER`` is false; the GCS, raylet and worker gRPC servers
    then listen on ``::``, the dashboard agent and the runtime-env agent on the routable
    interface, the monitor's and the dashboard's metrics servers on ``0.0.0.0`` (measured
    with Ray 2.60). The constant is module state read at call time, so it is set false
    here, and :data:`LOCAL_RAY_ENV` is exported for the processes Ray spawns; both are
    restored on exit, so a later ``ray.init(address=...)`` in this process is unaffected.
    Only for a local instance: a driver joining a cluster must report its routable address.
    """
    from ray._private import ray_constants

    had_constant = hasattr(ray_constants, "ENABLE_RAY_CLUSTER")
    if not had_constant:  # a Ray upgrade moved it; init_ray checks the address it got
        warnings.warn("this Ray version has no ray_constants.ENABLE_RAY_CLUSTER: the local Ray instance may "
                      "listen on non-loopback addresses", RuntimeWarning, stacklevel=3)
    saved_constant = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    saved_env = {k: os.environ.get(k) for k in LOCAL_RAY_ENV}
    os.environ.update(LOCAL_RAY_ENV)
    if had_constant:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if had_constant:
            ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def init_ray(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Connect to a cluster (``auto`` or ``ray://``/``HOST:PORT``) or start a local one.

    The local instance listens on loopback only (:func:`loopback_only`) and starts no
    dashboard. With an explicit address,
    a token in ``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH`` turns token authentication on (Ray
    only does that by itself for ``auto``); a rejected or missing token is a one-line
    :class:`~cluster.auth.ClusterError`.

    Returns:
        True when this call started a local Ray instance (the caller may shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    env = {"env_vars": dict(WORKER_ENV)}
    if os.environ.get(SYNTHETIC_ENV):  # the driver benchmark's stand-in trials (trainables.trial.synthetic)
        env["env_vars"][SYNTHETIC_ENV] = os.environ[SYNTHETIC_ENV]
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
        return False
    # Without --address the sweep is local, whatever the environment says: ray.init()
    # with no address joins the cluster named by RAY_ADDRESS or by the address file a past
    # `ray start` left in Ray's temp dir (and then fails on _system_config with a
    # traceback); address="local" always starts a new instance.
    if os.environ.get("RAY_ADDRESS"):
        print(f"tunefactory: ignoring RAY_ADDRESS={os.environ['RAY_ADDRESS']} (a local sweep); "
              "pass --address to join a cluster", file=sys.stderr, flush=True)
    with loopback_only():
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, runtime_env=env,
                 log_to_driver=False, _node_ip_address="127.0.0.1", _system_config=dict(LOCAL_SYSTEM_CONFIG))
    node_ip = ray.util.get_node_ip_address()
    if node_ip not in ("127.0.0.1", "::1"):
        print(f"tunefactory: warning: the local Ray instance took node address {node_ip}, not loopback; "
              "its services may be reachable from the network", file=sys.stderr, flush=True)
    return True


def tracking_callbacks(*, run_dir: str, experiment: str, mlflow_uri: str | None = None,
                       wandb_project: str | None = None, wandb_mode: str = "offline",
                       wandb_entity: str | None = None, tensorboard: bool = True) -> list[Any]:
    """Tune logger callbacks for the spec's ``tracking`` section (one tracked run per trial).

    MLflow and W&B get every trial's config as parameters (``group`` included), each
    epoch's metrics at step = epoch, and the final test scores. A relative MLflow folder is
    made absolute here, on the driver, which is where Tune's logger callbacks run.
    ``tensorboard=False`` drops Ray's TensorBoard event files (Tune's result.json and
    progress.csv, which resume and the report read, stay).
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    out: list[Any] = []
    if not tensorboard:
        # Tune adds CSV, JSON and TensorBoard loggers unless told not to; keep the first two.
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
        out += [JsonLoggerCallback(), CSVLoggerCallback()]
    else:
        os.environ.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)
    if mlflow_uri:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = mlflow_uri
        if "://" not in uri and not uri.startswith("databricks"):
            uri = Path(uri).expanduser().resolve().as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps the folder store in maintenance mode and refuses it unless told;
            # a folder is what a laptop user asks for (a server or sqlite:// needs no opt-in).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        out.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment,
                                        tags={"tunefactory.run": experiment}, save_artifact=False))
    if wandb_project:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # Ray's callback asks for an API key unless WANDB_MODE says offline/disabled.
        os.environ["WANDB_MODE"] = wandb_mode
        os.environ.setdefault("WANDB_SILENT", "true")
        kw: dict[str, Any] = {"mode": wandb_mode}
        if not str(run_dir).startswith(("s3://", "gs://")):
            kw["dir"] = str(Path(run_dir))  # offline runs land in RUN_DIR/wandb/
        out.append(WandbLoggerCallback(project=wandb_project, group=experiment, entity=wandb_entity, **kw))
    return out


def import_ray() -> None:
    """Import Ray now: it installs its terminal log handler at import, which
    :func:`cluster.console.tame_third_party` then turns down."""
    import ray  # noqa: F401


def shutdown_in_background() -> threading.Thread:
    """Stop the local Ray instance on a daemon thread (~1.3 s, mostly waiting for processes)."""
    import ray

    def target() -> None:
        with contextlib.suppress(Exception):  # best effort: atexit shuts Ray down anyway
            ray.shutdown()

    th = threading.Thread(target=target, name="ray-shutdown", daemon=True)
    th.start()
    return th


def alive_nodes() -> int:
    """Alive nodes of the connected cluster (1 when unknown)."""
    import ray

    try:
        return sum(1 for n in ray.nodes() if n.get("Alive"))
    except Exception:
        return 1


def cluster_resources() -> dict[str, float] | None:
    """The connected cluster's resources (None when Ray is not initialised)."""
    import ray

    return dict(ray.cluster_resources()) if ray.is_initialized() else None


def probe_gcs(address: str, *, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when a ``HOST:PORT`` Ray address is unreachable or refuses our token.

    ``ray.init`` would retry for a minute and then report only "failed to connect"; a
    wrong token is worth saying so. Other addresses (``auto``, ``ray://``) are left to Ray.

    Raises:
        ClusterError: nothing listens there, or the cluster rejected the token.
    """
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ClusterError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}); check the address "
                           "(the head's GCS port, 6379 by default), or use --address auto inside a cluster") from None
    import ray
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    try:
        GcsClient(address=address).internal_kv_get(b"tunefactory-probe", namespace=None, timeout=timeout)
    except ray.exceptions.AuthenticationError:
        token = find_token() if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else None
        raise ClusterError(rejection_message(address, None, token)) from None
    except Exception:
        return  # anything else: let ray.init try and report


def wait_for_nodes(address: str, nodes: int, *, timeout: float = 300.0) -> int:
    """Block until ``nodes`` Ray nodes are alive at ``address``; return how many are.

    Raises:
        ClusterError: they did not all join within ``timeout`` seconds.
    """
    import ray

    deadline = time.monotonic() + timeout
    alive = 0
    while time.monotonic() < deadline:
        try:
            if not ray.is_initialized():
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            alive = sum(1 for n in ray.nodes() if n.get("Alive"))
            if alive >= nodes:
                ray.shutdown()
                return alive
        except Exception:  # the head is still starting
            if ray.is_initialized():
                ray.shutdown()
        time.sleep(2)
    raise ClusterError(f"only {alive} of {nodes} Ray node(s) joined {address} within {timeout:.0f}s; "
                       "see the Ray logs under /tmp/tf-ray-<job id> on the nodes")


def ray_version() -> str:
    """This machine's Ray version."""
    import ray

    return str(ray.__version__)


def server_ray_version(job_client: Any) -> str | None:
    """The Ray version a Jobs API client saw on the cluster (private attribute; None if it moved)."""
    v = getattr(job_client, "_server_ray_version", None)
    return str(v) if v else None


# ----------------------------------------------------------------------------- Tuner
def make_trainable(fn: Callable[..., Any], *, cpus: float, gpus: float, **params: Any) -> Any:
    """A function trainable with its large parameters in the object store, its resources
    and bounded worker reuse (see :func:`bounded_trainable`)."""
    from ray import tune

    wrapped = tune.with_parameters(fn, **params)
    return tune.with_resources(bounded_trainable(wrapped, max_rss_mb=WORKER_RSS_LIMIT_MB),
                               {"cpu": cpus, "gpu": gpus})


def make_tuner(trainable: Any, run_dir: Path | str, *, max_failures: int,
               search_alg: Any = None, scheduler: Any = None, num_samples: int = 1,
               param_space: Mapping[str, Any] | None = None, metric: str | None = None, mode: str | None = None,
               max_concurrent: int | None = None, callbacks: Iterable[Any] = ()) -> Any:
    """The one Tuner builder of the sweep and of ``confirm``.

    Both reuse workers, name trial folders ``trial_<id>``, retry failed trials
    ``max_failures`` times. ``run_dir`` is a folder or a URI (``s3://bucket/runs/NAME``);
    Tune writes the trials there.

    The experiment state is snapshotted on Tune's time budget, not after every trial
    (:func:`bound_state_snapshots`), and Tune's per-metric bookkeeping keeps ``metric``
    only (:func:`track_only`), so the state neither grows by ~40 KB per trial nor is
    rewritten after each one: a 10,000-trial sweep keeps its rate. Resume stays exact
    because :func:`cluster.experiment_state.reconcile_state` brings the state up to date
    from the trial folders first.
    """
    from ray import tune

    sign_state_snapshots()
    bound_state_snapshots()
    track_only(metric)
    parent, _, run_name = str(run_dir).rstrip("/").rpartition("/")
    callbacks = [*callbacks, trial_folders_callback()]
    tuner = tune.Tuner(
        trainable,
        param_space=dict(param_space) if param_space is not None else None,
        tune_config=tune.TuneConfig(metric=metric, mode=mode, search_alg=search_alg, scheduler=scheduler,
                                    num_samples=num_samples, max_concurrent_trials=max_concurrent,
                                    reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=run_name, storage_path=parent,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            # num_to_keep=None: a trial saves one checkpoint, with its final report, so there is
            # nothing to delete; num_to_keep=1 made Tune force a full experiment-state snapshot
            # after every trial checkpoint ("sync every num_to_keep checkpoints"), i.e. bytes
            # written growing with the square of the trial count.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=list(callbacks), verbose=0),
    )
    integrity.sign_files(str(run_dir), [TUNER_PKL])  # written by the Tuner's constructor
    return tuner


def grid_search(values: list[Any]) -> Any:
    """Tune's grid over ``values`` (every value one trial), for a ``param_space``."""
    from ray import tune

    return tune.grid_search(values)


def can_restore(location: str) -> bool:
    """Whether ``location`` holds a Tune experiment that can be restored."""
    from ray import tune

    return bool(tune.Tuner.can_restore(location))


def restore_tuner(location: str, trainable: Any, *, retry_failed: bool, metric: str | None = None) -> Any:
    """The Tuner of an interrupted experiment: unfinished trials resume, failed ones only if asked.

    ``metric``: the one metric Tune's bookkeeping tracks, as :func:`make_tuner` was told.
    """
    from ray import tune

    sign_state_snapshots()
    bound_state_snapshots()
    track_only(metric)
    _snapshot_without_trial_folders()  # the run's trial_folders_callback comes back with tuner.pkl
    tuner = tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True, resume_errored=retry_failed)
    integrity.sign_files(location, [TUNER_PKL])
    return tuner


#: The Tuner's own state file in the run folder (Ray's ``tuner_internal._TUNER_PKL``).
TUNER_PKL = "tuner.pkl"


def sign_state_snapshots() -> None:
    """Sign every state snapshot Tune takes, as it takes it (see :mod:`cluster.integrity`).

    Tune writes its snapshot (``experiment_state-*.json``, the searcher's and the search
    generator's pickles) into a driver staging folder in ``TuneController.save_to_dir`` and
    then uploads that folder to the run folder. Tune has no public hook after the snapshot,
    so that private method is wrapped: the staged files are signed into the run folder's
    manifest (with ``tuner.pkl`` as it is there). If a Ray upgrade removes the method,
    snapshots are signed only at the end of ``fit`` (with a warning), and a run killed
    mid-sweep then needs ``resume --trust-run-dir``.
    """
    from ray.tune.execution import tune_controller

    cls: Any = tune_controller.TuneController
    original = getattr(cls, "save_to_dir", None)
    if original is None:
        warnings.warn("this Ray version has no TuneController.save_to_dir: run state is signed only when a sweep "
                      "ends", RuntimeWarning, stacklevel=2)
        return
    if getattr(original, "_tunefactory_signs", False):
        return

    def save_to_dir(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        try:
            storage = self._storage
            fs, root = storage.storage_filesystem, str(storage.experiment_fs_path)
            staging = Path(storage.experiment_driver_staging_path)
            contents = {p.name: p.read_bytes() for p in staging.iterdir()
                        if p.is_file() and integrity.is_state_file(p.name)}
            with fs.open_input_stream(f"{root}/{TUNER_PKL}") as fh:
                contents.setdefault(TUNER_PKL, bytes(fh.read()))
            integrity.sign_in(fs, root, contents)
        except Exception as e:  # never fail a sweep over its signatures; the end of fit signs again
            warnings.warn(f"tunefactory: could not sign the run state snapshot ({e})", RuntimeWarning, stacklevel=2)
        return out

    save_to_dir._tunefactory_signs = True  # type: ignore[attr-defined]
    cls.save_to_dir = save_to_dir


#: Whether this process has a :func:`trial_folders_callback` at work (a run started before
#: it existed is resumed without one: its trial folders keep going up with the snapshots).
_TRIAL_FOLDERS_SYNCED: list[bool] = [False]


def trial_folders_callback() -> Any:
    """A Tune callback that puts each ended trial's folder on storage as soon as it ends.

    Tune writes a trial's ``result.json``, ``params.json``, ``progress.csv`` and event files
    into a staging folder on the driver and copies the *whole* staging folder, every
    trial's files, to the run folder with each experiment-state snapshot. With a snapshot
    per trial that copy grew with the trial count; with snapshots on a time budget
    (:func:`bound_state_snapshots`) the run folder would lag by up to a snapshot period.
    This callback copies one trial's folder (a few small files) when it ends, on the
    next step of Tune's loop (after Tune's loggers closed its files), and at the end of
    the experiment, so the run folder holds every ended trial's results within a step
    of its end, and the snapshots copy only the run-level state
    (:func:`_snapshot_without_trial_folders`). A copy that fails is retried with the
    next snapshot's full copy (with a warning).
    """
    from ray.tune import Callback

    _snapshot_without_trial_folders()

    class _TrialFolders(Callback):
        def __init__(self) -> None:
            self.ended: list[Any] = []
            self.failed = False

        def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
                  **info: Any) -> None:
            _TRIAL_FOLDERS_SYNCED[0] = True

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.ended.append(trial)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.ended.append(trial)

        def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
            self.flush()

        def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
            self.flush()
            _TRIAL_FOLDERS_SYNCED[0] = False  # the final snapshot copies everything again

        def flush(self) -> None:
            while self.ended:
                trial = self.ended.pop(0)
                try:
                    copy_trial_folder(trial)
                except Exception as e:
                    _TRIAL_FOLDERS_SYNCED[0] = False  # snapshots copy trial folders again
                    if not self.failed:
                        self.failed = True
                        warnings.warn(f"tunefactory: could not copy trial {trial} to storage ({e}); trial "
                                      "folders now go up with the state snapshots", RuntimeWarning, stacklevel=2)

        def __getstate__(self) -> dict[str, Any]:
            return {"ended": [], "failed": False}  # tuner.pkl keeps the callback, not its queue

    return _TrialFolders()


def copy_trial_folder(trial: Any) -> None:
    """Copy one trial's folder from the driver's staging folder to its place on storage."""
    from ray.train._internal.storage import _upload_to_fs_path

    st = trial.storage
    _upload_to_fs_path(st.trial_driver_staging_path, st.storage_filesystem, st.trial_fs_path)


def trial_dirname(trial: Any) -> str:
    """A trial's folder name, ``trial_<id>``.

    A module-level function rather than a lambda: Tune pickles it into every trial's
    entry of the experiment state, and a lambda is pickled by value (~1.2 KB a trial).
    """
    return f"trial_{trial.trial_id}"


def _snapshot_without_trial_folders() -> None:
    """Make the state snapshot's copy of the driver staging folder skip the trial folders.

    Wraps the private ``_BackgroundSyncer.sync_up`` (Ray 2.60): when it copies an
    experiment's driver staging folder (``.../driver_artifacts``) without an exclude list
    while a :func:`trial_folders_callback` is at work, ``trial_*`` is excluded, so a
    snapshot copies the state files only, not every trial's files again. If a Ray upgrade
    moves it, snapshots copy everything, as Tune does by default (with a warning).
    """
    try:
        from ray.train._internal.syncer import _BackgroundSyncer
    except ImportError:
        warnings.warn("this Ray version moved _BackgroundSyncer: each state snapshot copies every trial folder",
                      RuntimeWarning, stacklevel=3)
        return
    cls: Any = _BackgroundSyncer
    original = cls.sync_up
    if getattr(original, "_tunefactory_skips_trials", False):
        return

    def sync_up(self: Any, local_dir: str, remote_dir: str, exclude: list[str] | None = None) -> bool:
        if exclude is None and _TRIAL_FOLDERS_SYNCED[0] and str(local_dir).rstrip("/").endswith("driver_artifacts"):
            exclude = ["trial_*"]
        return bool(original(self, local_dir, remote_dir, exclude=exclude))

    sync_up._tunefactory_skips_trials = True  # type: ignore[attr-defined]
    cls.sync_up = sync_up


#: Seconds between experiment-state snapshots (Tune's ``TUNE_GLOBAL_CHECKPOINT_S``): "auto"
#: is Tune's own budget, at least every 10 s and at most ~5 % of the driver's time (the next
#: snapshot waits 19 times as long as the last one took).
STATE_SNAPSHOT_PERIOD = "auto"


def bound_state_snapshots() -> None:
    """Let Tune snapshot the experiment state on its time budget (unless the user set one).

    Tune reads ``TUNE_GLOBAL_CHECKPOINT_S`` when ``fit`` builds its controller. A snapshot
    rewrites every trial's state, so one per trial costs O(trials²) bytes over a sweep;
    on a time budget the cost stays a bounded share of the sweep. What happens between two
    snapshots is on storage anyway (the trial folders, the Optuna journal), and
    :func:`cluster.experiment_state.reconcile_state` folds it back in before a resume.
    """
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", STATE_SNAPSHOT_PERIOD)


#: The metrics Tune's per-trial bookkeeping tracks (None: all, Tune's default); see :func:`track_only`.
_TRACKED: list[frozenset[str] | None] = [None]


def track_only(metric: str | None) -> None:
    """Make Tune's per-trial metric statistics track ``metric`` only (every metric when None).

    For every numeric key of every result, Tune keeps min/max/avg/last and the last 5 and
    10 values (``_TrainingRunMetadata.update_metric``) and writes them into every state
    snapshot: ~20 KB per trial with the ~40 keys a finished trial reports, which nothing
    here reads (searchers, ASHA and the callbacks get the results themselves; only
    ``ResultGrid.get_best_result`` reads the statistics, for the sweep's metric). That
    private method is wrapped to skip the other keys; if a Ray upgrade moves it, every key
    is tracked as before (with a warning).
    """
    _TRACKED[0] = frozenset({metric}) if metric else None
    try:
        from ray.tune.trainable.metadata import _TrainingRunMetadata
    except ImportError:
        _TRACKED[0] = None
        warnings.warn("this Ray version moved _TrainingRunMetadata: Tune tracks every reported metric",
                      RuntimeWarning, stacklevel=2)
        return
    cls: Any = _TrainingRunMetadata
    original = getattr(cls, "update_metric", None)
    if original is None or getattr(original, "_tunefactory_tracks", False):
        return

    def update_metric(self: Any, metric: str, value: Any, step: Any = 1) -> None:
        tracked = _TRACKED[0]
        if tracked is None or metric in tracked:
            original(self, metric, value, step=step)

    update_metric._tunefactory_tracks = True  # type: ignore[attr-defined]
    cls.update_metric = update_metric


def first_waiting_trial(tune_controller: Any) -> tuple[bool, Any]:
    """The trial Tune's FIFO scheduler would start next, found without scanning every trial.

    ``FIFOScheduler.choose_trial_to_run`` walks the whole trial list for the first PENDING
    (then PAUSED) trial on every step that may start one: over a sweep, time growing with
    the square of the trial count (~11 s of 3,000 trials' driver time, ~40 % of its
    growth). Tune keeps the pending and paused trials in sets too
    (``TuneController._pending_trials``/``_paused_trials``), and a waiting trial is almost
    always among the newest, so the list is walked from its end until every waiting
    trial was seen: the same trial, in a few steps.

    Returns:
        ``(True, trial or None)``; ``(False, None)`` when a Ray upgrade moved those sets
        (the caller then asks FIFO's own scan).
    """
    pending = getattr(tune_controller, "_pending_trials", None)
    paused = getattr(tune_controller, "_paused_trials", None)
    if not isinstance(pending, set) or not isinstance(paused, set):
        return False, None
    for waiting in (pending, paused):
        if not waiting:
            continue
        first, seen = None, 0
        for trial in reversed(tune_controller.get_trials()):
            if trial in waiting:
                first, seen = trial, seen + 1
                if seen == len(waiting):
                    break
        return True, first
    return True, None


def trial_end_callback(on_complete: Callable[[Any], None], on_error: Callable[[Any], None], *,
                       on_start: Callable[[Any], None] | None = None,
                       on_end: Callable[[], None] | None = None) -> Any:
    """A Tune callback calling ``on_complete(trial)`` / ``on_error(trial)`` as trials end.

    ``on_start(trial)`` runs when a trial starts or is restored on a worker, ``on_end()``
    when the experiment ends (also after an interruption).
    """
    from ray.tune import Callback

    class _TrialEnd(Callback):
        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            if on_start is not None:
                on_start(trial)

        def on_trial_restore(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            if on_start is not None:
                on_start(trial)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            on_complete(trial)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            on_error(trial)

        def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
            if on_end is not None:
                on_end()

    return _TrialEnd()


# ----------------------------------------------------------------------------- worker retirement
#: Retirement limit read by the patched Tune controller (see :func:`bounded_trainable`).
_RSS_LIMIT_MB: list[float] = [math.inf]


def bounded_trainable(fn: Callable[..., Any], *, max_rss_mb: float) -> Callable[..., Any]:
    """Let Tune reuse workers for ``fn``, but retire a worker once it has grown too large.

    With ``reuse_actors=True`` one worker process runs many trials, which removes the
    per-trial cost of a new process and a TensorFlow import (~3 s). A worker that still
    grows (a large model's allocator high-water mark, TensorFlow state kept between
    trials) must not grow without bound over a 10,000-trial sweep. Every row the trial
    reports carries ``worker_rss_mb`` (``cluster.tune_trial``); when a trial ends with its
    worker above ``max_rss_mb``, Tune is told not to keep that worker for the next trial,
    so it stops it and starts a fresh one. The obvious hook, ``reset_config`` returning
    False, does not do this in Ray 2.60: Tune then fails the *next* trial ("Could not
    re-use actor") and the sweep hangs.

    Tune has no public switch for this, so the one private method that decides whether
    to cache a finished trial's worker (``TuneController._maybe_cache_trial_actor``) is
    wrapped; if a Ray upgrade removes it, workers are simply never retired (with a warning).

    Args:
        fn: the (``tune.with_parameters``-wrapped) function trainable.
        max_rss_mb: peak resident-set size (MB) above which a worker is retired.

    Returns:
        ``fn``, to hand to ``Tuner`` (the retirement rule lives in the driver process).
    """
    from ray.tune.execution import tune_controller

    _RSS_LIMIT_MB[0] = max_rss_mb
    cls: Any = tune_controller.TuneController
    original = getattr(cls, "_maybe_cache_trial_actor", None)
    if original is None:
        warnings.warn("this Ray version has no TuneController._maybe_cache_trial_actor: reused workers "
                      "will not be retired when they grow large", RuntimeWarning, stacklevel=2)
        return fn
    if not getattr(original, "_tunefactory_retires", False):
        def maybe_cache(self: Any, trial: Any) -> bool:
            rss = (getattr(trial, "last_result", None) or {}).get("worker_rss_mb")
            if rss is not None and float(rss) > _RSS_LIMIT_MB[0]:
                return False  # not cached: Tune stops this worker and starts a new one
            return bool(original(self, trial))

        maybe_cache._tunefactory_retires = True  # type: ignore[attr-defined]
        cls._maybe_cache_trial_actor = maybe_cache
    return fn

"""A Ray Tune searcher with one independent Optuna study (or grid) per (asset, timeframe).

Why not Ray's ``OptunaSearch`` over one space: the best LSTM for BTC 1d says nothing about
ETH 4h, and a single TPE model fed with both would learn "asset" as a parameter. Why not
one Tuner per group: the tail of each Tuner leaves CPUs idle. This searcher hands out
trials round-robin over the groups, each from its own study, inside one Tuner, so all
groups run concurrently and each gets exactly its own budget.

The searcher tells Optuna the running best (``val_ratio_best``), never the last epoch's
value: trials restore their best epoch, and a trial stopped by ASHA is still judged by its
best epoch.

:func:`to_tune` turns a spec distribution into the equivalent Ray Tune domain, for users
driving Ray's own searchers over a spec's space; it lives here because the spec language
(``search_spaces``) imports no Ray.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
from ray.tune.search import Searcher

from cluster import ray_runtime as rt
from cluster.experiment_state import HINT, optuna_trial_json, parse_searcher_state
from search_spaces.distributions import Dist, DistError
from search_spaces.schema import Spec
from search_spaces.space import (
    grid_configs,
    point_params,
    subset_params,
    suggest_config,
    trial_seed,
    trials_per_group,
)
from trainables.errors import RunError
from trainables.records import excerpt

optuna.logging.set_verbosity(optuna.logging.WARNING)


def to_tune(dist: Dist) -> Any:
    """The Ray Tune domain equivalent to a spec distribution (the value itself when fixed).

    Integer bounds are inclusive in a spec and Optuna; Ray's ``randint`` upper bound is
    exclusive, so it is moved up by one.

    Raises:
        DistError: an unknown distribution type.
    """
    if dist.type == "fixed":
        return dist.values[0]
    if dist.type == "choice":
        return tune.choice(list(dist.values))
    if dist.type == "grid":
        return tune.grid_search(list(dist.values))
    if dist.type == "uniform":
        return tune.uniform(dist.low, dist.high)
    if dist.type in ("quniform", "qrandint") and not _ray_grid_aligned(dist):
        # Ray rounds to multiples of q, Optuna steps from low: equal only when low and high are
        # multiples of q. Otherwise the exact value set keeps both libraries in agreement.
        return tune.choice(dist.grid_values() or [])
    if dist.type == "quniform":
        return tune.quniform(dist.low, dist.high, float(dist.q or 1.0))
    if dist.type == "loguniform":
        return tune.loguniform(dist.low, dist.high)
    if dist.type == "randint":
        return tune.randint(int(dist.low), int(dist.high) + 1)  # Ray's upper bound is exclusive
    if dist.type == "qrandint":
        return tune.qrandint(int(dist.low), int(dist.high), int(dist.q or 1))  # inclusive in Ray
    raise DistError(f"unknown distribution type {dist.type!r}")


def _ray_grid_aligned(dist: Dist) -> bool:
    q = dist.q or 1.0
    return all(abs(x / q - round(x / q)) < 1e-9 for x in (dist.low, dist.high))


class GroupedSearcher(Searcher):
    """Round-robin over groups; one Optuna study (TPE or random) or one grid per group.

    Args:
        spec: the validated spec.
        metric: the metric to minimise (``val_ratio_best``).
        mode: ``min``.
    """

    def __init__(self, spec: Spec, *, metric: str = "val_ratio_best", mode: str = "min",
                 journal: str | None = None) -> None:
        super().__init__(metric=metric, mode=mode)
        self.spec = spec
        self.journal = journal
        self._journal_studies: dict[str, optuna.Study] | None = None
        self._mirrored: set[str] = set()
        self.groups = [f"{a}/{tf}" for a, tf in spec.groups]
        self.budget = trials_per_group(spec)
        self.issued: dict[str, int] = dict.fromkeys(self.groups, 0)
        # Trial numbers to hand out again, lowest first: issued after the last state snapshot
        # to a trial that had not ended when the driver died (cluster.experiment_state).
        self.reissue: dict[str, list[int]] = {}
        self.live: dict[str, tuple[str, Any]] = {}
        self.studies: dict[str, optuna.Study] = {}
        self.grids: dict[str, list[dict[str, Any]]] = {}
        for gi, g in enumerate(self.groups):
            seed = spec.search.seed * 1000 + gi
            if spec.search.algorithm == "grid":
                # A seeded sample when num_samples caps the grid, without building the rest.
                self.grids[g] = grid_configs(spec, group=g, limit=spec.search.num_samples, seed=seed)
                continue
            study = optuna.create_study(direction="minimize", sampler=self._sampler(seed), study_name=g)
            for point in spec.search.points_to_evaluate:
                # Switches true/false become priorities 1/0 and a size (search_spaces.space).
                study.enqueue_trial(point_params(spec, point), skip_if_exists=True)
            self.studies[g] = study

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.spec.search.algorithm == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.spec.search.n_startup_trials,
                                          multivariate=True, group=True, constant_liar=True)

    @property
    def total(self) -> int:
        """Trials over all groups."""
        return self.budget * len(self.groups)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Hold ``search.max_concurrent`` here rather than in Ray's ``ConcurrencyLimiter``.

        The limiter keeps its own set of live trials, which is saved with nothing: after
        ``resume`` it silently dropped the completion of every trial that was in flight at
        the snapshot, so their Optuna studies never learnt their scores (and the journal,
        the report's Optuna plots and importance missed them). This searcher's ``live`` map
        is saved and reconciled (``cluster.experiment_state``), so it counts those trials.
        Returning True tells the limiter to pass every call through.
        """
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        reissue = getattr(self, "reissue", {})  # a searcher pickled before reissue existed has none
        open_groups = [g for g in self.groups if self.issued[g] < self.budget or reissue.get(g)]
        if not open_groups:
            return Searcher.FINISHED  # type: ignore[return-value]
        limit = getattr(self, "max_concurrent", 0)
        if limit and len(self.live) >= limit:
            return None  # Tune asks again when a trial ends
        g = min(open_groups, key=lambda x: (self.issued[x] - len(reissue.get(x, [])), self.groups.index(x)))
        if reissue.get(g):
            n = reissue[g].pop(0)
        else:
            n = self.issued[g]
            self.issued[g] += 1
        seed = trial_seed(self.spec.search.seed, g, n)
        if g in self.grids:
            cfg = dict(self.grids[g][n])
            cfg["seed"] = seed
            self.live[trial_id] = (g, None)
        else:
            study = self.studies[g]
            fams = list(self.spec.model.families)
            if (getattr(self.spec.search, "balance_families", False) and len(fams) > 1
                    and not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))):
                # The family by trial number (reissued numbers get theirs again), the rest by
                # the sampler within that family's parameters. Only when no point of
                # points_to_evaluate is queued: those are asked first, as written.
                study.enqueue_trial({"family": fams[n % len(fams)]})
            ot = study.ask()
            cfg = suggest_config(self.spec, ot, group=g, seed=seed)
            self.live[trial_id] = (g, ot)
        cfg["trial_number"] = n
        return cfg

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        # ``ot``: the Optuna trial, or its number once the state went through save/restore.
        g, ot = self.live.pop(trial_id, (None, None))
        if ot is None or g is None:
            return
        value = (result or {}).get(self.metric)
        if error or value is None or value != value:
            frozen = self.studies[g].tell(ot, state=optuna.trial.TrialState.FAIL)
        else:
            frozen = self.studies[g].tell(ot, float(value))
        self._mirror(g, frozen, trial_id)

    # ------------------------------------------------------------------ the journal mirror
    def __getstate__(self) -> dict[str, Any]:
        # tuner.pkl holds the searcher: the open journal (a file lock) is reopened on demand.
        return {**self.__dict__, "_journal_studies": None}

    def _mirror(self, group: str, frozen: optuna.trial.FrozenTrial, trial_id: str) -> None:
        """Append a told trial to ``RUN_DIR/optuna.journal`` (one study per group).

        The journal is a copy for ``optuna-dashboard`` and ``optuna.load_study``, written as
        each trial ends; sampling uses the in-memory study, whose JSON state makes resume
        exact. A trial already in the journal (told again after a resume) is not added twice.
        A journal that cannot be written costs the live view, never the sweep.
        """
        if not getattr(self, "journal", None):  # None, or a searcher pickled before journals
            return
        try:
            studies = self._open_journal()
            if trial_id in self._mirrored:
                return
            studies[group].add_trial(optuna.trial.create_trial(
                state=frozen.state, value=frozen.value if frozen.state.is_finished() else None,
                params=frozen.params, distributions=frozen.distributions,
                user_attrs={**frozen.user_attrs, "tune_trial_id": trial_id}))
            self._mirrored.add(trial_id)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"tunefactory: warning: {self.journal}: cannot update the Optuna journal ({e}); the sweep goes on",
                  flush=True)
            self.journal = None

    def _open_journal(self) -> dict[str, optuna.Study]:
        if getattr(self, "_journal_studies", None) is None:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            storage = JournalStorage(JournalFileBackend(str(self.journal)))
            self._journal_studies = {
                g: optuna.create_study(storage=storage, study_name=g, direction="minimize", load_if_exists=True)
                for g in self.studies}
            self._mirrored = {str(t.user_attrs.get("tune_trial_id")) for st in self._journal_studies.values()
                              for t in st.get_trials(deepcopy=False)}
        assert self._journal_studies is not None
        return self._journal_studies

    def save(self, checkpoint_path: str) -> None:
        """Write the searcher's progress as JSON (Tune names the file ``searcher-state-*.pkl``).

        What is saved: trials issued per group, the trials in flight, and every Optuna
        trial of every study (state, value, parameters with their distributions). The
        spec, groups and grids come back with the searcher itself (Tune's ``tuner.pkl``).
        JSON, not pickle: reading it back runs no code (see :mod:`cluster.integrity`).
        """
        Path(checkpoint_path).write_text(json.dumps(self._state(_STATE_FORMAT)), encoding="utf-8")

    def _state(self, fmt: str) -> dict[str, Any]:
        return {
            "format": fmt,
            "issued": self.issued,
            "reissue": getattr(self, "reissue", {}),
            "live": {tid: [g, None if ot is None else (ot if isinstance(ot, int) else ot.number)]
                     for tid, (g, ot) in self.live.items()},
            "studies": {g: [_trial_json(t) for t in study.get_trials(deepcopy=False)]
                        for g, study in self.studies.items()},
        }

    def _has_switches(self) -> bool:
        """Whether a study holds format-1 trials (``ind.<member>`` as a true/false choice)."""
        names = {f"ind.{k}" for k in self.spec.features.free}
        return any(isinstance(d, optuna.distributions.CategoricalDistribution) and k in names
                   for study in self.studies.values() for t in study.get_trials(deepcopy=False)
                   for k, d in t.distributions.items())

    def restore(self, checkpoint_path: str) -> None:
        """Continue from :meth:`save`'s JSON: each study is re-told its trials, in order.

        The samplers are re-seeded from the group's seed and the number of trials so far, so
        a resumed random search does not repeat the configurations it started with.
        """
        data = Path(checkpoint_path).read_bytes()
        if data[:1] == b"\x80":  # a pickle from before the JSON state; resume verified or trusted the file
            self.__dict__.update(pickle.loads(data))
            if not self._has_switches():
                return
            state = self._state(_STATE_FORMAT_V1)  # its studies hold format-1 trials: convert below
        else:
            state = parse_searcher_state(data, path=checkpoint_path)
        if state.get("format") not in (_STATE_FORMAT, _STATE_FORMAT_V1):
            raise RunError(f"{checkpoint_path}: format: expected {_STATE_FORMAT!r}; got "
                           f"{excerpt(state.get('format'))}; {HINT}")
        # Format 1 recorded one boolean per indicator, before a repair changed the subset;
        # its trials re-enter as the subset they trained (user attribute "indicators").
        legacy = state["format"] == _STATE_FORMAT_V1
        self.issued = {g: int(state["issued"].get(g, 0)) for g in self.groups}
        self.reissue = {g: sorted(int(n) for n in state.get("reissue", {}).get(g, [])) for g in self.groups
                        if state.get("reissue", {}).get(g)}
        for gi, g in enumerate(self.groups):
            if g not in self.studies:
                continue
            trials = state["studies"].get(g, [])
            seed = (self.spec.search.seed * 1000 + gi + 7919 * len(trials)) % 2**32
            study = optuna.create_study(direction="minimize", sampler=self._sampler(seed), study_name=g)
            for t in trials:
                study.add_trial(_trial_from_json(_from_v1(self.spec, t) if legacy else t))
            self.studies[g] = study
        self.live = {str(tid): (str(g), None if n is None else int(n)) for tid, (g, n) in state["live"].items()}


_STATE_FORMAT = "tunefactory-grouped-searcher/2"
_STATE_FORMAT_V1 = "tunefactory-grouped-searcher/1"


def _from_v1(spec: Spec, t: dict[str, Any]) -> dict[str, Any]:
    """A format-1 trial with its indicator booleans replaced by the trained subset's size/priorities."""
    free = {f"ind.{k}" for k in spec.features.free}
    params = {k: v for k, v in t["params"].items() if k not in free}
    dists = {k: v for k, v in t["distributions"].items() if k not in free}
    trained = (t.get("user_attrs") or {}).get("indicators")
    if isinstance(trained, list):  # set when the trial was suggested: always there for format 1
        enc = subset_params(spec, [str(k) for k in trained])
        params.update(enc)
        for k in enc:
            d = (optuna.distributions.IntDistribution(*spec.features.size_range()) if k == "ind.size"
                 else optuna.distributions.FloatDistribution(0.0, 1.0))
            dists[k] = distribution_to_json(d)
    return {**t, "params": params, "distributions": dists}


def _trial_json(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return optuna_trial_json(t)  # one format, also written by cluster.experiment_state.reconcile_state


def _trial_from_json(t: dict[str, Any]) -> optuna.trial.FrozenTrial:
    state = optuna.trial.TrialState[t["state"]]
    return optuna.trial.create_trial(
        state=state, value=t["value"] if state == optuna.trial.TrialState.COMPLETE else None,
        params=t["params"], distributions={k: json_to_distribution(d) for k, d in t["distributions"].items()},
        user_attrs=t["user_attrs"], system_attrs=t["system_attrs"])


class WaitingFirstFIFO(FIFOScheduler):
    """Tune's FIFO scheduler, choosing the next trial to start without scanning every trial.

    See :func:`cluster.ray_runtime.first_waiting_trial`: the same trial as FIFO's scan,
    in time that does not grow with the trials already run.
    """

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        known, trial = rt.first_waiting_trial(tune_controller)
        return trial if known else super().choose_trial_to_run(tune_controller)


class GroupedASHA(WaitingFirstFIFO):
    """ASHA with one independent set of rungs per (asset, timeframe).

    One ASHA over all groups compares trials of different groups at each rung. Even on
    the scale-free ``val_ratio_best``, some groups are easier than others (daily candles
    beat persistence by ~2 % where 4-hourly ones tie it), so a shared rung starves the hard
    groups: in a laptop run every BTC 4h trial was cut at the first rung and the group
    ended with no finished trial. Here each group's trials only compete with each other.

    Args:
        **asha: keyword arguments of ``AsyncHyperBandScheduler`` (``time_attr``, ``max_t``,
            ``grace_period``, ``reduction_factor``, ...), applied to every group.
    """

    def __init__(self, **asha: Any) -> None:
        super().__init__()
        self._asha = asha
        self._per_group: dict[str, AsyncHyperBandScheduler] = {}
        self._metric: str | None = None
        self._mode: str | None = None

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def _of(self, trial: Any) -> AsyncHyperBandScheduler:
        g = str(trial.config.get("group", "?"))
        if g not in self._per_group:
            self._per_group[g] = AsyncHyperBandScheduler(metric=self._metric, mode=self._mode, **self._asha)
        return self._per_group[g]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        return str(self._of(trial).on_trial_result(tune_controller, trial, result))

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{g}: {s.debug_string()}" for g, s in self._per_group.items())

    def save(self, checkpoint_path: str) -> None:
        # Tune (2.60) never calls a scheduler's save/restore: the scheduler's state reaches a
        # resumed sweep inside tuner.pkl, which `resume` authenticates (cluster.integrity).
        # Kept for callers of the Scheduler API; a file read by restore must be as trusted.
        Path(checkpoint_path).write_bytes(pickle.dumps(self.__dict__))

    def restore(self, checkpoint_path: str) -> None:
        self.__dict__.update(pickle.loads(Path(checkpoint_path).read_bytes()))

"""Unit tests of submission, token handling, storage and GPU packing (no cluster needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster import storage as st
from cluster.auth import (
    ClusterError,
    auth_headers,
    enable_token_auth_for_address,
    find_token,
    rejection_message,
)
from cluster.remote.jobs import normalize_address
from cluster.remote.requirements import RESULT_PREFIX, missing
from cluster.remote.submit import (
    EXCLUDES,
    build_runtime_env,
    check_storage,
    entrypoint,
    stage_project,
    worker_requirements,
)
from tests.cluster.helpers import ROOT
from trainables.trial.keras_runtime import gpu_memory_limit_mb


def test_staged_project_has_code_data_and_spec_but_no_runs_venv_or_caches(tmp_path: Path) -> None:
    fake = tmp_path / "project"
    for rel in ("cluster/cli.py", "trainables/trainable.py", "data/ohlcv/BTC-USDT_1d.csv", "runs/old/x.json",
                ".venv/bin/python", ".git/HEAD", "cluster/__pycache__/cli.cpython-311.pyc", ".ruff_cache/x",
                "tunefactory.egg-info/PKG-INFO", "winners/BTC/model.keras", "pyproject.toml"):
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text("x")
    dest = tmp_path / "staged"
    dest.mkdir()
    rel = stage_project(dest, spec_raw={"data": {"assets": ["BTC-USDT"]}}, spec_name="my run", root=fake)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == [".tunefactory-job/my-run.yaml", "cluster/cli.py", "data/ohlcv/BTC-USDT_1d.csv",
                     "pyproject.toml", "trainables/trainable.py"]
    assert rel == ".tunefactory-job/my-run.yaml"
    assert yaml.safe_load((dest / rel).read_text()) == {"data": {"assets": ["BTC-USDT"]}, "name": "my run"}


def test_runtime_env_installs_pinned_deps_without_ray_and_gpu_tensorflow_for_gpu_specs(tmp_path: Path) -> None:
    cpu = build_runtime_env(tmp_path, packages=worker_requirements(gpu=False))
    assert cpu["working_dir"] == str(tmp_path)
    assert cpu["excludes"] == EXCLUDES and {"runs/", ".venv/", ".git/", "__pycache__/"} <= set(EXCLUDES)
    pkgs = cpu["pip"]["packages"]
    assert not any(p.lower().startswith("ray") for p in pkgs)  # the cluster's own Ray
    assert any(p.startswith("tensorflow-cpu==") for p in pkgs) and any(p.startswith("keras==") for p in pkgs)
    assert all("==" in p for p in pkgs if p != "pyarrow")  # pinned, as in pyproject.toml
    assert "pyarrow" in pkgs  # ...but Ray's own pyarrow is kept: any installed version satisfies it
    from cluster.remote.requirements import missing

    assert missing(["pyarrow"], installed=lambda n: "17.0.0") == []
    assert missing(["pyarrow"], installed=lambda n: None) == ["pyarrow"]
    gpu = worker_requirements(gpu=True)
    assert any(p.startswith("tensorflow[and-cuda]==") for p in gpu)
    assert not any(p.startswith(("tensorflow-cpu", "tensorflow==")) for p in gpu)
    assert "pip" not in build_runtime_env(tmp_path)  # --no-install, or the cluster lacks nothing
    assert "--no-cache-dir" not in cpu["pip"]["pip_install_options"]  # pip's cache: a second job downloads nothing
    assert "env_vars" not in cpu  # the driver sets its own; Ray refuses to merge equal keys
    from ray.runtime_env import RuntimeEnv

    assert RuntimeEnv(**build_runtime_env(tmp_path, packages=gpu))["pip"]["packages"] == gpu  # Ray accepts it


def test_missing_requirements_are_judged_by_the_installed_versions_and_markers() -> None:
    import yaml as pyyaml

    have = pyyaml.__version__
    reqs = [f"pyyaml=={have}", "PyYAML==0.1", "surely-not-installed-tf-pkg==1.0",
            "tensorflow==2.21.0; platform_machine == 'no-such-machine'", f"pyyaml[extra]=={have}"]
    # Installed in that version: not missing; another version or absent: missing; a marker
    # that does not apply: not missing; extras: pip decides, so listed.
    assert missing(reqs) == ["PyYAML==0.1", "surely-not-installed-tf-pkg==1.0", f"pyyaml[extra]=={have}"]
    assert missing(["keras==3.15.1"], installed=lambda name: None) == ["keras==3.15.1"]


def test_requirements_probe_prints_one_result_line() -> None:
    # What submit's probe job runs on the cluster, as a real process.
    reqs = json.dumps(["pyyaml==0.1", f"pyyaml=={yaml.__version__}"])
    res = subprocess.run([sys.executable, "-m", "cluster.remote.requirements", reqs], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith(RESULT_PREFIX)
    assert json.loads(line[len(RESULT_PREFIX):])["missing"] == ["pyyaml==0.1"]


def test_entrypoint_drives_the_sweep_from_inside_the_cluster() -> None:
    cmd = entrypoint(".tunefactory-job/a b.yaml", storage="s3://bucket/runs", name="r1")
    assert cmd == "python -m cluster.cli run '.tunefactory-job/a b.yaml' --address auto --storage s3://bucket/runs --name r1"


@pytest.mark.parametrize(("storage", "ok"), [("s3://b/runs", True), ("gs://b/runs", True), ("/shared/runs", True),
                                             ("runs", False), ("./runs", False)])
def test_submit_storage_must_survive_the_job(storage: str, ok: bool) -> None:
    if ok:
        assert check_storage(storage) == storage
    else:
        with pytest.raises(st.StorageError, match=r"is relative: on the cluster it would land inside the job's"):
            check_storage(storage)


def test_address_forms() -> None:
    assert normalize_address("10.0.0.5:8265") == "http://10.0.0.5:8265"
    assert normalize_address("http://127.0.0.1:8265/") == "http://127.0.0.1:8265"
    with pytest.raises(ClusterError, match="talks to the dashboard"):
        normalize_address("ray://head:10001")


def test_no_address_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ClusterError, match=r"no cluster address; pass --address http://HOST:8265"):
        normalize_address(None)


def test_token_sources_in_rays_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(k, raising=False)
    assert find_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-default\n")
    assert find_token().value == "from-default"  # type: ignore[union-attr]
    f = tmp_path / "tok"
    f.write_text("from-file")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(f))
    assert find_token().source == f"RAY_AUTH_TOKEN_PATH={f}"  # type: ignore[union-attr]
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    tok = find_token()
    assert tok is not None and tok.value == "from-env" and auth_headers(tok) == {"Authorization": "Bearer from-env"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert find_token() is None


def test_unreadable_token_file_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ClusterError, match=r"RAY_AUTH_TOKEN_PATH=.*missing: cannot read the token file"):
        find_token()
    (tmp_path / "empty").write_text("")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "empty"))
    with pytest.raises(ClusterError, match="the token file is empty"):
        find_token()


def test_rejection_messages_say_what_to_do() -> None:
    from cluster.auth import Token

    assert "no token was sent" in rejection_message("http://h:8265", 401, None)
    msg = rejection_message("http://h:8265", 403, Token("x", "RAY_AUTH_TOKEN"))
    assert "rejected the authentication token from RAY_AUTH_TOKEN (HTTP 403)" in msg
    assert "ray get-auth-token" in msg and "x" not in msg.split("token from")[0][-3:]
    grpc = rejection_message("10.0.0.1:6379", None, Token("x", "RAY_AUTH_TOKEN"))
    assert "rejected the authentication token from RAY_AUTH_TOKEN;" in grpc and "HTTP" not in grpc


def test_explicit_token_turns_token_auth_on_for_an_explicit_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t")
    enable_token_auth_for_address()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    enable_token_auth_for_address()
    assert os.environ["RAY_AUTH_MODE"] == "disabled"  # an explicit choice is kept


def test_node_local_storage_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert st.node_local_warning(tmp_path, nodes=1) is None
    assert st.node_local_warning("s3://bucket/runs", nodes=8) is None
    monkeypatch.setattr(st, "filesystem_type", lambda p: ("ext4", "/"))
    msg = st.node_local_warning(tmp_path, nodes=3)
    assert msg is not None
    assert "node-local filesystem (ext4 mounted at /)" in msg and "3 nodes" in msg
    assert "leaderboard can miss them" in msg and "s3://BUCKET/runs" in msg and "NFS" in msg
    monkeypatch.setattr(st, "filesystem_type", lambda p: ("nfs4", "/shared"))
    assert st.node_local_warning("/shared/runs", nodes=3) is None


def test_filesystem_type_reads_proc_mounts() -> None:
    fstype, mount = st.filesystem_type(ROOT)
    assert fstype != "unknown" and ROOT.as_posix().startswith(mount)


def test_uri_storage_roundtrip(tmp_path: Path) -> None:
    uri = f"file://{tmp_path / 'bucket'}/runs/r1"
    assert st.is_uri(uri) and not st.is_uri("/a/b") and st.join("s3://b/", "x", "/y") == "s3://b/x/y"
    assert not st.exists_nonempty(uri)
    st.write_text(st.join(uri, "spec.yaml"), "name: r1\n")
    st.write_text(st.join(uri, "trial_1", "result.json"), json.dumps({"done": True}))
    st.write_text(st.join(uri, "trial_1", "checkpoint_000000", "model.keras"), "weights")
    assert st.exists_nonempty(uri) and st.read_text(st.join(uri, "spec.yaml")) == "name: r1\n"
    assert st.read_text(st.join(uri, "nope.txt")) is None
    local = st.download(uri, tmp_path / "mirror")
    assert (local / "trial_1" / "result.json").is_file()
    assert not (local / "trial_1" / "checkpoint_000000").exists()  # reports need results, not weights
    (local / "report").mkdir()
    (local / "report" / "index.html").write_text("<html>")
    st.upload(local / "report", st.join(uri, "report"))
    assert (tmp_path / "bucket" / "runs" / "r1" / "report" / "index.html").read_text() == "<html>"


def test_bad_uri_is_one_line() -> None:
    with pytest.raises(st.StorageError, match=r"nosuch://x/y: cannot open storage"):
        st.write_text("nosuch://x/y", "z")


@pytest.mark.parametrize(("share", "total", "expected"), [
    (0.25, 16384, 16384 // 4 - 512), (0.5, 24576, 12288 - 512), (1.0, 16384, None), (2, 16384, None),
    (0.0, 16384, None), (0.25, None, None), (0.01, 16384, 256),
])
def test_gpu_memory_cap_per_trial(share: float, total: float | None, expected: int | None,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNEFACTORY_GPU_MEMORY_MB", raising=False)
    assert gpu_memory_limit_mb(share, total) == expected


def test_gpu_memory_cap_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFACTORY_GPU_MEMORY_MB", "3000")
    assert gpu_memory_limit_mb(1.0, None) == 3000


def test_workers_grow_gpu_memory_from_the_first_touch() -> None:
    from cluster.sweep import WORKER_ENV

    assert WORKER_ENV["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_fractional_gpus_from_the_spec_reach_the_trial_resources(tiny_spec: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from ray import tune

    from cluster.sweep import build_tuner, prepare_groups
    from search_spaces.loader import load_spec

    seen: list[dict[str, float]] = []
    real = tune.with_resources
    def spy(trainable: object, resources: dict[str, float]) -> object:
        seen.append(resources)
        return real(trainable, resources)  # type: ignore[arg-type]

    monkeypatch.setattr(tune, "with_resources", spy)
    loaded = load_spec(tiny_spec, ["resources.gpus=0.25"])
    build_tuner(loaded.spec, prepare_groups(loaded.spec), str(tmp_path / "runs" / "r"))
    assert seen == [{"cpu": 1.0, "gpu": 0.25}]


def test_reconcile_state_keeps_a_trial_that_finished_after_the_last_snapshot(tmp_path: Path) -> None:
    from cluster.sweep import reconcile_state

    def trial(tid: str, status: str) -> list[str]:
        return [json.dumps({"trial_id": tid, "status": status, "relative_logdir": f"trial_{tid}"}),
                json.dumps({"last_result": {}, "num_failures": 0})]

    run = tmp_path / "run"
    rows: dict[str, list[dict[str, object]]] = {"a": [{"epoch": 1}, {"epoch": 2}, {"epoch": 2, "done": True, "test_rmse": 0.1}],  # finished, state RUNNING
            "b": [{"epoch": 1}],                                                          # interrupted
            "c": [{"epoch": 1}, {"epoch": 1, "done": True, "test_rmse": 0.2}],            # TERMINATED
            "d": [{"epoch": 1}]}                                                          # ERROR: left alone
    for tid, rs in rows.items():
        (run / f"trial_{tid}").mkdir(parents=True)
        (run / f"trial_{tid}" / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rs))
    (run / "trial_a" / "checkpoint_000000").mkdir()
    state = {"trial_data": [trial("a", "RUNNING"), trial("b", "RUNNING"), trial("c", "TERMINATED"),
                            trial("d", "ERROR"), trial("e", "PENDING")], "runner_data": {}, "stats": {}}
    (run / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))

    fixed = reconcile_state(str(run))

    assert fixed == {"finished": ["a"], "cleared": ["b", "e"], "adopted": [], "discarded": []}
    after = json.loads((run / "experiment_state-2026-01-01_00-00-00.json").read_text())
    status = {json.loads(t)["trial_id"]: json.loads(t)["status"] for t, _ in after["trial_data"]}
    assert status == {"a": "TERMINATED", "b": "RUNNING", "c": "TERMINATED", "d": "ERROR", "e": "PENDING"}
    assert json.loads(after["trial_data"][0][1])["last_result"]["test_rmse"] == 0.1
    assert (run / "trial_b" / "result.json").read_text() == ""  # restarts from scratch: no doubled epochs
    assert (run / "trial_d" / "result.json").read_text().strip()


@pytest.mark.parametrize(("overrides", "resources", "slots"), [
    ([], {"CPU": 2.0}, 2),
    (["resources.cpus=2"], {"CPU": 5.0}, 2),
    (["resources.cpus=0.5"], {"CPU": 2.0}, 4),
    (["resources.gpus=0.25"], {"CPU": 64.0, "GPU": 1.0}, 4),
    (["search.max_concurrent=3"], {"CPU": 96.0}, 3),
    (["resources.cpus=4"], {"CPU": 2.0}, 1),
])
def test_trial_slots_sizes_pending_trials_by_the_cluster(tiny_spec: Path, overrides: list[str],
                                                        resources: dict[str, float], slots: int) -> None:
    from cluster.sweep import trial_slots
    from search_spaces.loader import load_spec

    assert trial_slots(load_spec(tiny_spec, overrides).spec, resources) == slots


def test_pending_trials_follow_the_cluster_unless_the_user_set_them(tiny_spec: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from cluster import sweep
    from search_spaces.loader import load_spec

    monkeypatch.delenv("TUNE_MAX_PENDING_TRIALS_PG", raising=False)
    monkeypatch.setattr(sweep, "_PENDING_SET", [None])
    spec = load_spec(tiny_spec).spec
    sweep._allow_pending_trials(spec, None)
    assert "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ  # not connected: nothing to size by
    sweep._allow_pending_trials(spec, {"CPU": 2.0})
    assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "2"  # 2 CPUs, 1 CPU per trial
    sweep._allow_pending_trials(load_spec(tiny_spec, ["resources.cpus=2"]).spec, {"CPU": 2.0})
    assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "1"  # ours: updated per sweep
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "7")
    sweep._allow_pending_trials(spec, {"CPU": 64.0})
    assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "7"  # the user's: kept

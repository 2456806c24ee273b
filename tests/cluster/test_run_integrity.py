"""`tunefactory resume` refuses pickled run state it did not sign (issue 14, item 1).

Real files, real processes: a real sweep signs its folder; crafted pickles whose unpickling
would create a marker file are planted in copies of it; `resume` must refuse them (exit 2,
one line) without ever unpickling them, resume the untouched copy, and let
``--trust-run-dir`` through with a warning.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster import integrity
from tests.cluster.helpers import ROOT, ray_env
from trainables.errors import RunError

KEY = "test-team-key-0123456789"


def _env(tmp: Path, key: str = KEY) -> dict[str, str]:
    env = ray_env(None)
    env.pop("RAY_AUTH_MODE", None)
    env["TUNEFACTORY_RUN_KEY"] = key
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


class _Payload:
    """Unpickling this runs ``touch MARKER`` (what an attacker's file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory: pytest.TempPathFactory, tiny_spec_text: str) -> Path:
    """A finished, signed 2-trial sweep (made once; tests work on copies)."""
    d = tmp_path_factory.mktemp("integrity")
    raw = yaml.safe_load(tiny_spec_text)
    raw["search"]["num_samples"] = 2
    spec = d / "tiny.yaml"
    spec.write_text(yaml.safe_dump(raw))
    res = _cli("run", str(spec), "--name", "signed", "--storage", str(d / "runs"), "--num-cpus", "2", env=_env(d))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return d / "runs" / "signed"


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "runs" / run.name
    shutil.copytree(run, dst)
    return dst


def _assert_refused(res: subprocess.CompletedProcess[str], file: str, marker: Path) -> None:
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert len(err) == 1, res.stderr
    assert file in err[0] and "refusing to resume" in err[0] and "--trust-run-dir" in err[0], err[0]
    assert not marker.exists(), "the crafted pickle was unpickled"


def _assert_resumed(res: subprocess.CompletedProcess[str]) -> None:
    """The check passed and Ray restored and finished the run.

    Resuming a run whose trials had all finished sometimes exits 1 right after the sweep
    ("The core worker has already been shutdown", from Ray's background shutdown racing
    the report); that happens without the integrity check too and is not what is tested.
    """
    assert "tunefactory: sweep finished" in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode == 0 or "core worker has already been shutdown" in res.stderr, res.stderr[-3000:]


def test_the_sweep_signs_every_pickled_state_file(signed_run: Path) -> None:
    manifest = json.loads((signed_run / integrity.MANIFEST).read_text())
    state = sorted(p.name for p in signed_run.iterdir() if integrity.is_state_file(p.name))
    assert "tuner.pkl" in state and any(n.startswith("searcher-state-") for n in state)
    assert any(n.startswith("experiment_state-") for n in state)
    assert sorted(manifest["files"]) == state


def test_crafted_tuner_pkl_is_refused_and_never_unpickled(signed_run: Path, tmp_path: Path) -> None:
    run = _copy(signed_run, tmp_path)
    marker = tmp_path / "PWNED"
    (run / "tuner.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    res = _cli("resume", str(run), "--num-cpus", "1", env=_env(tmp_path), timeout=120)
    _assert_refused(res, "tuner.pkl", marker)


def test_crafted_searcher_state_is_refused(signed_run: Path, tmp_path: Path) -> None:
    run = _copy(signed_run, tmp_path)
    marker = tmp_path / "PWNED"
    target = next(run.glob("searcher-state-*.pkl"))
    target.write_bytes(pickle.dumps(_Payload(marker)))
    res = _cli("resume", str(run), "--num-cpus", "1", env=_env(tmp_path), timeout=120)
    _assert_refused(res, target.name, marker)


def test_planted_newer_state_file_is_refused(signed_run: Path, tmp_path: Path) -> None:
    run = _copy(signed_run, tmp_path)
    marker = tmp_path / "PWNED"
    (run / "searcher-state-2999-01-01_00-00-00.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    res = _cli("resume", str(run), "--num-cpus", "1", env=_env(tmp_path), timeout=120)
    _assert_refused(res, "searcher-state-2999-01-01_00-00-00.pkl", marker)


def test_forged_manifest_without_the_key_is_refused(signed_run: Path, tmp_path: Path) -> None:
    """An attacker can rewrite .integrity.json, but not sign with a key they do not have."""
    run = _copy(signed_run, tmp_path)
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Payload(marker))
    (run / "tuner.pkl").write_bytes(payload)
    manifest = json.loads((run / integrity.MANIFEST).read_text())
    manifest["files"]["tuner.pkl"] = [integrity.digest(payload, b"attacker's guess")]
    (run / integrity.MANIFEST).write_text(json.dumps(manifest))
    res = _cli("resume", str(run), "--num-cpus", "1", env=_env(tmp_path), timeout=120)
    _assert_refused(res, "tuner.pkl", marker)


def test_run_signed_with_another_key_is_refused(signed_run: Path, tmp_path: Path) -> None:
    run = _copy(signed_run, tmp_path)
    res = _cli("resume", str(run), "--num-cpus", "1", env=_env(tmp_path, key="another key"), timeout=120)
    _assert_refused(res, "experiment_state-", tmp_path / "PWNED")


def test_untouched_run_resumes(signed_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _copy(signed_run, tmp_path)
    res = _cli("resume", str(run), "--num-cpus", "2", env=_env(tmp_path))
    _assert_resumed(res)
    monkeypatch.setenv(integrity.KEY_ENV, KEY)
    integrity.check_run_dir(str(run))  # the resumed run's state is signed again


def test_trust_run_dir_skips_the_check_with_a_warning(signed_run: Path, tmp_path: Path) -> None:
    run = _copy(signed_run, tmp_path)
    (run / integrity.MANIFEST).unlink()  # e.g. a run made before runs were signed
    res = _cli("resume", str(run), "--num-cpus", "1", env=_env(tmp_path), timeout=120)
    _assert_refused(res, "experiment_state-", tmp_path / "PWNED")
    assert "no valid .integrity.json" in res.stderr
    res = _cli("resume", str(run), "--num-cpus", "2", "--trust-run-dir", env=_env(tmp_path))
    _assert_resumed(res)
    assert "WARNING: --trust-run-dir" in res.stderr and "runs code as you" in res.stderr
    assert (run / integrity.MANIFEST).is_file()  # signed again once trusted


def test_key_file_is_created_private_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(integrity.KEY_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    key = integrity.run_key()
    path = tmp_path / ".config" / "tunefactory" / "run-key"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert integrity.run_key() == key  # the same key next time
    monkeypatch.setenv(integrity.KEY_ENV, "team")
    assert integrity.run_key() == b"team"


def test_check_run_dir_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(integrity.KEY_ENV, KEY)
    (tmp_path / "tuner.pkl").write_bytes(b"state")
    (tmp_path / "experiment_state-x.json").write_text("{}")
    (tmp_path / "groups.json").write_text("{}")  # not state: never needs a signature
    integrity.sign_files(str(tmp_path))
    integrity.check_run_dir(str(tmp_path))
    (tmp_path / "experiment_state-x.json").write_text('{"x": 1}')
    with pytest.raises(RunError, match=r"experiment_state-x.json: refusing to resume: .*altered"):
        integrity.check_run_dir(str(tmp_path))

"""Tracking: a real sweep logs one MLflow run (file store) and one W&B offline run per trial."""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path

import pytest
import yaml

from search_spaces.loader import SpecError, load_spec


def _wandb_records(path: Path) -> tuple[Counter[str], list[dict[str, object]], dict[str, object]]:
    """Read an offline W&B run file (``run-ID.wandb``): record kinds, history rows, config.

    wandb 0.31 writes it from its Go core and has no Python reader; the format is a
    LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of
    records, each ``crc32 | length (LE u16) | type`` + a protobuf ``Record`` (type 1: whole,
    2/3/4: first/middle/last piece).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    kinds: Counter[str] = Counter()
    history: list[dict[str, object]] = []
    config: dict[str, object] = {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block  # block trailer padding
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        buf += data[pos:pos + length]
        pos += length
        if kind in (1, 4):
            r = pb.Record()
            r.ParseFromString(buf)
            buf = b""
            k = r.WhichOneof("record_type")
            kinds[k] += 1
            if k == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
            elif k == "config":
                config.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.config.update})
    return kinds, history, config


def _spec(tmp_path: Path, tiny_spec_text: str, tracking: dict[str, object]) -> Path:
    raw = yaml.safe_load(tiny_spec_text)
    raw["search"]["num_samples"] = 3
    raw["tracking"] = tracking
    p = tmp_path / "tracked.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_mlflow_file_store_and_wandb_offline_hold_one_run_per_trial_with_metrics(
        tmp_path: Path, tiny_spec_text: str, ray_local: None) -> None:
    import mlflow

    from cluster.sweep import run_sweep
    from reports.collect import load_run

    store = tmp_path / "mlruns"
    spec = _spec(tmp_path, tiny_spec_text, {"mlflow": str(store), "wandb": {"project": "tf-test", "mode": "offline"},
                                            "tensorboard": False})
    run_dir = run_sweep(load_spec(spec), name="tracked", storage=str(tmp_path / "runs"))
    trials = {t.trial_id: t for t in load_run(run_dir).trials}
    assert len(trials) == 3

    client = mlflow.tracking.MlflowClient(tracking_uri=store.resolve().as_uri())
    exp = client.get_experiment_by_name("tracked")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 3
    for r in runs:
        assert r.data.params["group"] == "BTC-USDT/1d" and r.data.params["family"] in ("mlp", "gru")
        tid = r.data.tags["trial_name"].rpartition("_")[2]
        t = trials[tid]
        epochs = client.get_metric_history(r.info.run_id, "val_rmse")
        assert [m.value for m in epochs][: len(t.history)] == pytest.approx([h["val_rmse"] for h in t.history])
        if t.final is not None:  # finished: the final test scores are there too
            assert r.data.metrics["test_rmse"] == pytest.approx(t.final["test_rmse"])
        assert r.info.status == "FINISHED"

    offline = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 3
    for f in offline:
        t = trials[f.stem.removeprefix("run-")]  # the W&B run id is the trial id
        kinds, history, config = _wandb_records(f)
        assert kinds["exit"] == 1  # the run was closed
        assert config["group"] == "BTC-USDT/1d" and config["seed"] == t.config["seed"]
        vals = [h["val_rmse"] for h in history if "val_rmse" in h]
        assert vals[: len(t.history)] == pytest.approx([h["val_rmse"] for h in t.history])
        if t.final is not None:
            assert history[-1]["test_rmse"] == pytest.approx(t.final["test_rmse"])
    # tensorboard: false → no event files in the trial folders (result.json stays)
    assert not list(run_dir.glob("trial_*/events.out.tfevents.*"))
    assert all((run_dir / f"trial_{tid}" / "result.json").is_file() for tid in trials)


@pytest.mark.parametrize(("tracking", "match"), [
    ({"mlflow": "ftp://host/x"}, r"tracking\.mlflow: the tracking URI scheme 'ftp' is not one of"),
    ({"mlflow": "runs\nrm -rf /"}, r"tracking\.mlflow: must be an MLflow tracking URI or folder \(no newlines"),
    ({"wandb": {"project": "a b"}}, r"tracking\.wandb\.project: string should match pattern"),
    ({"wandb": {"project": "p", "mode": "cloud"}}, r"tracking\.wandb\.mode: must be one of online, offline, disabled; got 'cloud'"),
    ({"neptune": "x"}, r"tracking\.neptune"),
])
def test_bad_tracking_values_are_one_line_errors(tmp_path: Path, tiny_spec_text: str, tracking: dict[str, object],
                                                 match: str) -> None:
    with pytest.raises(SpecError, match=match):
        load_spec(_spec(tmp_path, tiny_spec_text, tracking))


def test_tracker_option_stands_for_the_tracking_override(tmp_path: Path, tiny_spec_text: str) -> None:
    import argparse

    from cluster.cli.options import tracker_override

    spec = _spec(tmp_path, tiny_spec_text, {})
    loaded = load_spec(spec, [tracker_override("mlflow=file:///tmp/ml"), tracker_override("wandb=proj"),
                              tracker_override("tensorboard=off")])
    tr = loaded.spec.tracking
    assert (tr.mlflow, tr.wandb.project if tr.wandb else None, tr.wandb.mode if tr.wandb else None,
            tr.tensorboard) == ("file:///tmp/ml", "proj", "offline", False)
    with pytest.raises(argparse.ArgumentTypeError, match="use mlflow=URI_OR_FOLDER"):
        tracker_override("neptune=x")

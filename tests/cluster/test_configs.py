"""Static checks of the shipped cluster definitions (cloud YAMLs, KubeRay manifests, Slurm template).

The `ray up` YAMLs are validated against the schema Ray itself ships
(``ray/autoscaler/ray-schema.json``). Nothing shipped may open a Ray port on every
interface without token auth; and since Ray's gRPC servers always listen on all
interfaces, every config that starts Ray must turn token auth on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml

from cluster.remote.submit import worker_requirements
from tests.cluster.helpers import ROOT

CONFIGS = ROOT / "cluster" / "configs"
CLOUD = {"aws": CONFIGS / "aws.yaml", "gcp": CONFIGS / "gcp.yaml"}
SHIPPED = sorted([*CONFIGS.glob("*.yaml"), *(ROOT / "cluster" / "templates").glob("*"),
                  *(ROOT / "cluster" / "scripts").glob("*.sh")])
GPU_IMAGE = f"rayproject/ray:{ray.__version__}-py311-gpu"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("cloud", sorted(CLOUD))
def test_cloud_config_matches_rays_cluster_schema(cloud: str) -> None:
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(_load(CLOUD[cloud]), schema)


@pytest.mark.parametrize("cloud", sorted(CLOUD))
def test_cloud_config_has_cpu_head_gpu_workers_spot_image_setup_auth_tunnel(cloud: str) -> None:
    cfg = _load(CLOUD[cloud])
    assert cfg["provider"]["type"] == cloud
    assert cfg["docker"]["image"] == GPU_IMAGE
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU")  # no trials on the head
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    gpu_types = [k for k, v in workers.items() if "gpu" in k.lower()]
    assert len(gpu_types) >= 2
    for name in gpu_types:
        w = workers[name]
        assert w["min_workers"] == 0 and w["max_workers"] >= 1, name  # autoscaled from zero
        nc = w["node_config"]
        if cloud == "aws":
            assert nc["InstanceType"].startswith(("g4dn", "g5", "g6", "p3", "p4", "p5")), name
        else:
            assert "guestAccelerators" in nc or nc["machineType"].startswith(("g2", "a2", "a3")), name
    spot = [k for k, v in workers.items()
            if v["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
            or v["node_config"].get("scheduling", {}).get("provisioningModel") == "SPOT"]
    assert spot, "at least one spot worker type"
    setup = " ".join(cfg["setup_commands"])
    assert "pip install" in setup and "/home/ray/tunefactory" in setup
    assert "tensorflow[and-cuda]" in setup
    assert cfg["file_mounts"]["/home/ray/tunefactory"] == "."
    excluded = set(cfg["rsync_exclude"])
    assert {"runs", ".venv", ".git"} <= excluded
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(cfg[key])
        assert "RAY_AUTH_MODE=token" in start, key
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start  # reachable only through `ray dashboard` (SSH)
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    text = CLOUD[cloud].read_text()
    assert ("s3://" if cloud == "aws" else "gs://") in text  # where results go


def _kube(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kuberay_raycluster_and_rayjob() -> None:
    docs = _kube(CONFIGS / "kuberay-raycluster.yaml")
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # shared by every pod
    job = next(d for d in _kube(CONFIGS / "kuberay-rayjob.yaml") if d["kind"] == "RayJob")
    assert cluster["apiVersion"] == job["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert job["spec"]["rayClusterSpec"] == spec, "kuberay-rayjob.yaml must embed kuberay-raycluster.yaml's spec"
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"]["mode"] == "token"
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = spec["workerGroupSpecs"]
    assert len(groups) >= 2
    for g in groups:
        assert g["minReplicas"] == 0 and g["maxReplicas"] >= 1
        (container,) = g["template"]["spec"]["containers"]
        assert container["image"] == GPU_IMAGE
        assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
        assert any(m["mountPath"] == "/mnt/runs" for m in container["volumeMounts"])
    js = job["spec"]
    assert "cluster.cli run" in js["entrypoint"] and "--address auto" in js["entrypoint"]
    assert "--storage /mnt/runs" in js["entrypoint"]
    renv = yaml.safe_load(js["runtimeEnvYAML"])
    want = worker_requirements(gpu=True)
    assert renv["pip"]["packages"] == want, (
        "kuberay-rayjob.yaml's runtimeEnvYAML pip packages are out of date with pyproject.toml; replace them with:\n"
        + "".join(f"      - {r}\n" for r in want))


def _binds_all_interfaces(text: str) -> bool:
    return bool(re.search(r"0\.0\.0\.0|dashboard-host[=\s:\"']+::", text))


def _token_auth_on(text: str) -> bool:
    return bool(re.search(r"RAY_AUTH_MODE=token|authOptions:\s*\n\s*mode:\s*token", text))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_no_shipped_config_exposes_ray_without_token_auth(path: Path) -> None:
    text = path.read_text()
    starts_ray = bool(re.search(r"(ray|\$RAY\"?) start|kind:\s*Ray(Cluster|Job|Service)", text))
    if _binds_all_interfaces(text):
        assert _token_auth_on(text), f"{path.name} binds 0.0.0.0 without token auth"
    if starts_ray:
        # Ray's GCS/raylet gRPC ports listen on every interface whatever the node IP.
        assert _token_auth_on(text), f"{path.name} starts Ray without RAY_AUTH_MODE=token"
    for m in re.finditer(r"dashboard-host[=\s\"':]+([0-9.:]+)", text):
        assert m.group(1) == "127.0.0.1" or _token_auth_on(text), f"{path.name}: dashboard on {m.group(1)}"


def test_static_check_catches_an_exposed_config(tmp_path: Path) -> None:
    bad = "head_start_ray_commands:\n  - ray start --head --dashboard-host=0.0.0.0\n"
    assert _binds_all_interfaces(bad) and not _token_auth_on(bad)
    good = bad.replace("ray start", "RAY_AUTH_MODE=token ray start")
    assert _token_auth_on(good)

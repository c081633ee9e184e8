"""cluster/cluster.yaml passes Ray's own launcher checks; cluster/rayjob.yaml has what KubeRay needs."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"
RAYJOB_YAML = REPO / "cluster" / "rayjob.yaml"


@pytest.fixture(scope="module")
def launcher():
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def rayjob():
    return yaml.safe_load(RAYJOB_YAML.read_text())


# ----------------------------------------------------------------------------- cluster launcher


def test_launcher_config_passes_rays_schema_and_checks(launcher):
    """What `ray up` does before it touches a cloud: fill provider defaults, then validate
    against ray/autoscaler/ray-schema.json plus Ray's own cross-field checks."""
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    assert (Path(ray.autoscaler.__file__).parent / "ray-schema.json").is_file()
    validate_config(prepare_config(copy.deepcopy(launcher)))

    broken = copy.deepcopy(launcher)  # the check bites: a node type without resources is refused
    del broken["available_node_types"][broken["head_node_type"]]["resources"]
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_launcher_has_cpu_head_and_gpu_workers(launcher):
    assert launcher["cluster_name"]
    assert launcher["provider"]["type"] == "aws" and launcher["provider"]["region"]
    assert launcher["auth"]["ssh_user"]
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no worker type offers a GPU"
    for node_type in gpu_types.values():
        assert node_type["node_config"]["InstanceType"].startswith(("g", "p"))
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= launcher["max_workers"]
    assert "gpu" in launcher["docker"]["worker_image"]
    assert launcher["docker"]["worker_image"].startswith("rayproject/ray:2.60.0")


def test_launcher_installs_the_project_and_starts_ray_with_one_auth_mode(launcher):
    setup = " ".join(launcher["setup_commands"])
    assert "pip install" in setup and "torch" in setup
    assert "tge_ray" in setup  # editable install of the mounted repository
    mounted = {Path(remote).name: local for remote, local in launcher["file_mounts"].items()}
    assert (REPO / mounted["tge_ray"] / "pyproject.toml").is_file(), "file_mounts must copy the repo root"
    assert "auth_token" in mounted

    head = " ".join(launcher["head_start_ray_commands"])
    worker = " ".join(launcher["worker_start_ray_commands"])
    assert "ray start --head" in head and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--dashboard-host=0.0.0.0" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker
    # The same RAY_AUTH_MODE for the daemons on every node and for commands in the container.
    for commands in (head, worker):
        assert "RAY_AUTH_MODE=token ray start" in commands
    assert "--env RAY_AUTH_MODE=token" in launcher["docker"]["run_options"]


# ----------------------------------------------------------------------------- KubeRay RayJob


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_rayjob_is_a_kuberay_v1_rayjob(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    assert rayjob["metadata"]["name"]
    spec = rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["tge", "sweep"] and argv[2].startswith("tune_spaces/")
    assert argv[argv.index("--storage") + 1].startswith("s3://")
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"].startswith(("https://", "s3://", "gs://"))  # remote on Kubernetes
    packages = runtime_env["pip"]["packages"]
    assert any(p.startswith("tge-ray") for p in packages) and any(p.startswith("torch") for p in packages)


def test_rayjob_cluster_has_a_head_and_gpu_workers(rayjob):
    cluster = rayjob["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == "2.60.0"
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    head_container = _containers(head)[0]
    assert head_container["image"].startswith("rayproject/ray:2.60.0")
    assert {p["containerPort"] for p in head_container["ports"]} >= {6379, 8265, 10001}

    workers = cluster["workerGroupSpecs"]
    assert workers
    gpu_groups = [g for g in workers if int(_containers(g)[0]["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    for group in gpu_groups:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        container = _containers(group)[0]
        assert container["image"].startswith("rayproject/ray:2.60.0") and "gpu" in container["image"]

"""cluster.yaml is a valid Ray cluster-launcher config with every piece the README promises."""

import json
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def config():
    with open(os.path.join(ROOT, "cluster.yaml")) as f:
        return yaml.safe_load(f)


def test_validates_against_rays_own_schema(config):
    import jsonschema
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        jsonschema.validate(config, json.load(f))


def test_cpu_head_and_autoscaling_gpu_workers(config):
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))  # CPU head
    gpu_types = {name: t for name, t in types.items() if name != config["head_node_type"]}
    shapes = {t["node_config"]["InstanceType"] for t in gpu_types.values()}
    assert {"g5.xlarge", "g5.12xlarge"} <= shapes
    for shape in shapes:
        markets = [t["node_config"].get("InstanceMarketOptions", {}).get("MarketType", "on-demand")
                   for t in gpu_types.values() if t["node_config"]["InstanceType"] == shape]
        assert sorted(markets) == ["on-demand", "spot"], shape  # spot with on-demand fallback
    for node_type in gpu_types.values():
        assert node_type["min_workers"] == 0 and node_type["max_workers"] > 0
    assert config["idle_timeout_minutes"] > 0
    assert config["provider"]["type"] == "aws"


def test_every_node_has_an_instance_profile_for_s3(config):
    for name, node_type in config["available_node_types"].items():
        assert node_type["node_config"]["IamInstanceProfile"].get("Name"), name


def test_setup_installs_this_project(config):
    assert config["file_mounts"]["~/i2a"] == "."
    assert any("pip install -e ~/i2a" in command for command in config["setup_commands"])

"""Docker provider: configuration logic only (the real container test is marked docker)."""

from __future__ import annotations

import pytest

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.postgres import make_cluster
from prefect_delivery.migrations_lab.postgres_docker import (
    IMAGE_ENV,
    DockerPostgres,
    DockerPostgresConfig,
    container_spec,
)


def test_defaults_host_network_loopback_and_fast_settings(monkeypatch):
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    spec = container_spec(DockerPostgresConfig(), port=55432, password="pw")
    assert spec["image"] == "postgres:16"
    assert spec["network_mode"] == "host"
    assert "ports" not in spec
    cmd = spec["command"]
    assert cmd[0] == "postgres"
    pairs = dict(a.split("=", 1) for a in cmd[2::2])
    assert pairs["listen_addresses"] == "127.0.0.1"
    assert pairs["port"] == "55432"
    assert pairs["fsync"] == "off"
    assert spec["environment"]["POSTGRES_PASSWORD"] == "pw"
    assert "pw" not in " ".join(cmd)
    assert spec["labels"] == {"migrations_lab": "1"}
    assert spec["detach"] is True


def test_image_and_settings_are_configurable_but_not_the_listen_address():
    config = DockerPostgresConfig(
        image="registry.local/pg:15", settings={"listen_addresses": "*", "work_mem": "64MB"}
    )
    spec = container_spec(config, port=6000, password="x")
    pairs = dict(a.split("=", 1) for a in spec["command"][2::2])
    assert spec["image"] == "registry.local/pg:15"
    assert pairs["listen_addresses"] == "127.0.0.1"
    assert pairs["work_mem"] == "64MB"


def test_default_image_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(IMAGE_ENV, "127.0.0.1:5000/prefect-delivery/postgres:15")
    assert DockerPostgresConfig().image == "127.0.0.1:5000/prefect-delivery/postgres:15"
    assert DockerPostgres().config.image == "127.0.0.1:5000/prefect-delivery/postgres:15"
    # an explicit image wins over the variable; an empty variable means the built-in default
    assert DockerPostgresConfig(image="postgres:15-alpine").image == "postgres:15-alpine"
    monkeypatch.setenv(IMAGE_ENV, "  ")
    assert DockerPostgresConfig().image == "postgres:16"


def test_make_cluster_builds_the_docker_provider_with_options():
    cluster = make_cluster("docker", image="postgres:15-alpine", pull=False)
    assert isinstance(cluster, DockerPostgres)
    assert cluster.config.image == "postgres:15-alpine" and not cluster.running
    with pytest.raises(LabConfigError, match="local or docker"):
        make_cluster("podman")  # type: ignore[arg-type]


def test_config_is_validated():
    with pytest.raises(ValueError):
        DockerPostgresConfig(image="")
    with pytest.raises(ValueError):
        DockerPostgresConfig(port=80)

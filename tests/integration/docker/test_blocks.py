"""The container-path blocks through a real Prefect server: register, save, load."""

from __future__ import annotations

import os
import subprocess

import pytest
from support import VENV_BIN, free_port

pytestmark = pytest.mark.docker

SECRET = "pw-Block-roundtrip-4242"


def test_prefect_block_register_registers_every_block():
    from prefect.client.orchestration import get_client

    proc = subprocess.run(
        [str(VENV_BIN / "prefect"), "block", "register", "-m", "prefect_delivery.blocks"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with get_client(sync_client=True) as client:
        for slug in (
            "delivery-environment",
            "process-target",
            "docker-target",
            "delivery-image-registry",
            "delivery-artifact-store",
            "docker-host",
            "docker-registry-credentials",
            "probe-source",
            "haproxy-stats-source",
            "prometheus-source",
            "haproxy-router",
        ):
            assert client.read_block_type_by_slug(slug).slug == slug


def test_environment_round_trips_either_target(state_dir):
    from prefect_docker.credentials import DockerRegistryCredentials

    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.blocks.registry import ImageRegistry
    from prefect_delivery.blocks.routing.haproxy import HAProxyRouter
    from prefect_delivery.blocks.targets.docker import DockerTarget
    from prefect_delivery.blocks.targets.process import ProcessTarget

    registry = ImageRegistry(
        address="127.0.0.1:5999",
        namespace="team",
        credentials=DockerRegistryCredentials(
            username="alice", password=SECRET, registry_url="127.0.0.1:5999"
        ),
        build_args={"BASE_IMAGE": "127.0.0.1:5000/prefect-delivery/python-web:3.11"},
    )
    targets = {
        "rt-process": ProcessTarget(state_dir=str(state_dir)),
        "rt-docker": DockerTarget(registry=registry, memory="512m", cpus=0.5, scope="rtscope"),
    }
    for name, target in targets.items():
        env = Environment(
            name=name,
            target=target,
            router=HAProxyRouter(name=name, frontend_port=free_port(), state_dir=str(state_dir)),
            state_dir=str(state_dir),
        )
        env.save(name, overwrite=True)
        loaded = Environment.load(name)
        assert type(loaded.target) is type(target)
        assert loaded.target.model_dump() == target.model_dump()

    docker_target = Environment.load("rt-docker").target
    assert docker_target.registry.credentials.password.get_secret_value() == SECRET
    assert SECRET not in repr(docker_target) and SECRET not in str(docker_target.model_dump())
    # an environment can change target kind in place
    Environment(
        name="rt-docker",
        target=ProcessTarget(state_dir=str(state_dir)),
        router=HAProxyRouter(name="rt-docker", frontend_port=free_port()),
    ).save("rt-docker", overwrite=True)
    assert isinstance(Environment.load("rt-docker").target, ProcessTarget)

    ArtifactStore(root=str(state_dir / "a"), registry=registry).save("rt-store", overwrite=True)
    store = ArtifactStore.load("rt-store")
    assert store.registry.repository("svc") == "127.0.0.1:5999/team/svc"
    assert store.registry.build_args == registry.build_args
    ArtifactStore(root=str(state_dir / "a")).save("rt-store-wheels", overwrite=True)
    assert ArtifactStore.load("rt-store-wheels").registry is None


def test_the_registry_block_is_shared_by_reference(state_dir):
    """`delivery setup --target docker` saves one `registry` block that the artifact store and
    the targets reference: credentials added to it later reach both."""
    from prefect_docker.credentials import DockerRegistryCredentials

    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.blocks.registry import ImageRegistry
    from prefect_delivery.flows.cli.setup import LocalSetup, create_local_blocks

    root = state_dir / "setup"
    create_local_blocks(
        LocalSetup(
            state_dir=str(root),
            staging_port=free_port(),
            production_port=free_port(),
            target="docker",
            base_image="127.0.0.1:5000/prefect-delivery/python-web:3.11",
        )
    )
    registry = ImageRegistry.load("registry")
    assert registry.build_args == {"BASE_IMAGE": "127.0.0.1:5000/prefect-delivery/python-web:3.11"}
    registry.credentials = DockerRegistryCredentials(
        username="alice", password=SECRET, registry_url=registry.address
    )
    registry.save("registry", overwrite=True)
    store = ArtifactStore.load("artifacts")
    assert store.registry.credentials.password.get_secret_value() == SECRET
    for name in ("staging", "production"):
        target = Environment.load(name).target
        assert target.registry.credentials.username == "alice"
        assert target.scope == Environment.load("staging").target.scope

"""The Docker provider against a real engine: only when the image is already local."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from migrations_lab.postgres_docker import DockerPostgres, DockerPostgresConfig

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

IMAGE = DockerPostgresConfig().image


def _image_available() -> str | None:
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ImportError:
        return "docker-py is not installed"
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        return f"Docker engine not reachable: {type(exc).__name__}"
    try:
        client.images.get(IMAGE)
    except ImageNotFound:
        return f"image {IMAGE} is not available locally (no pulls in tests)"
    finally:
        client.close()
    return None


def test_container_cluster_serves_a_template_copy():
    reason = _image_available()
    if reason:
        pytest.skip(reason)
    with DockerPostgres() as cluster:
        container = cluster.container
        with cluster.database() as db:
            engine = create_engine(db.url.get_secret_value())
            with engine.connect() as conn:
                assert conn.execute(text("SHOW listen_addresses")).scalar() == "127.0.0.1"
            engine.dispose()
    assert cluster.container is None
    with pytest.raises(Exception):  # noqa: B017 - removed: docker raises NotFound
        container.reload()


def test_missing_image_is_a_clear_error_and_exit_2(capsys):
    reason = _image_available()
    if reason and ("not reachable" in reason or "not installed" in reason):
        pytest.skip(reason)
    from pathlib import Path

    from migrations_lab.cli import main

    good = Path(__file__).resolve().parents[2] / "fixtures" / "alembic" / "good"
    code = main(["check", str(good), "--provider", "docker",
                 "--image", "migrations-lab/not-here:0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'migrations-lab/not-here:0': is not present locally" in err
    assert "--provider local" in err

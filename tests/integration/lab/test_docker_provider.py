"""The Docker provider against a real engine: only when the image is already local.

The image is the provider's default: ``$MIGRATIONS_LAB_PG_IMAGE``, else ``postgres:16``.
Docker Hub is out of reach here, so CI (``.ci/run``) points the variable at the image
``.ci/docker/postgres-image.sh`` builds: ``127.0.0.1:5000/prefect-delivery/postgres:15``.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from prefect_delivery.migrations_lab import check, format_report
from prefect_delivery.migrations_lab.postgres_docker import (
    IMAGE_ENV,
    DockerPostgres,
    DockerPostgresConfig,
)

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

IMAGE = DockerPostgresConfig().image
GOOD = Path(__file__).resolve().parents[2] / "fixtures" / "alembic" / "good"


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
        return (
            f"image {IMAGE} is not available locally (no pulls in tests); build one with "
            f"`bash .ci/docker/postgres-image.sh` and set {IMAGE_ENV}="
            "127.0.0.1:5000/prefect-delivery/postgres:15"
        )
    finally:
        client.close()
    return None


def _lab_containers() -> list[str]:
    import docker

    client = docker.from_env()
    try:
        return [
            c.name for c in client.containers.list(all=True, filters={"label": "migrations_lab"})
        ]
    finally:
        client.close()


def test_container_cluster_serves_a_template_copy():
    reason = _image_available()
    if reason:
        pytest.skip(reason)
    before = set(_lab_containers())
    with DockerPostgres() as cluster:
        container = cluster.container
        assert container.name in _lab_containers()
        assert cluster.server_version_num >= 150000
        conninfo = cluster._conninfo()
        with cluster.database() as db:
            engine = create_engine(db.url.get_secret_value())
            with engine.connect() as conn:
                assert conn.execute(text("SHOW listen_addresses")).scalar() == "127.0.0.1"
                assert conn.execute(text("SELECT current_user")).scalar() == "lab"
                assert conn.execute(text("SELECT current_database()")).scalar() == db.name
                # TCP needs the password, stored as a SCRAM verifier: no trust, no md5
                rules = (
                    conn.execute(
                        text(
                            "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'"
                        )
                    )
                    .scalars()
                    .all()
                )
                assert rules == ["scram-sha-256"]
                verifier = conn.execute(
                    text("SELECT rolpassword FROM pg_authid WHERE rolname = 'lab'")
                ).scalar()
                assert verifier.startswith("SCRAM-SHA-256$")
            engine.dispose()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(**(conninfo | {"password": "not-the-password"})).close()
        # the server does not run as root inside the container
        top = container.top(ps_args="-o pid,uid,comm")
        uids = {row[1] for row in top["Processes"] if row[2] == "postgres"}
        assert uids and "0" not in uids
    assert cluster.container is None
    with pytest.raises(Exception):  # noqa: B017 - removed: docker raises NotFound
        container.reload()
    assert set(_lab_containers()) == before


def test_check_with_the_docker_provider_on_the_good_project():
    """A real use: the lab's whole check, its cluster started and removed by the provider."""
    reason = _image_available()
    if reason:
        pytest.skip(reason)
    before = set(_lab_containers())
    report = check(GOOD, provider="docker")
    assert report.ok, format_report(report)
    assert report.provider == "docker"
    assert [(r.revision, r.phase) for r in report.revisions] == [
        ("0001", "expand"),
        ("0002", "expand"),
        ("0003", "migrate"),
        ("0004", "contract"),
    ]
    assert all(r.roundtrip is not None and r.roundtrip.status == "passed" for r in report.revisions)
    assert set(_lab_containers()) == before


def test_missing_image_is_a_clear_error_and_exit_2(capsys):
    reason = _image_available()
    if reason and ("not reachable" in reason or "not installed" in reason):
        pytest.skip(reason)
    from prefect_delivery.migrations_lab.cli import main

    code = main(["check", str(GOOD), "--provider", "docker",
                 "--image", "migrations-lab/not-here:0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'migrations-lab/not-here:0': is not present locally" in err
    assert "--provider local" in err

"""The rollout picture and the progress artifacts on a real Prefect server, read back through
its API as the UI reads them."""

from __future__ import annotations

import base64
import io
import time
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _api(prefect_server):
    yield


def _artifacts(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )


def _records():
    from prefect_delivery.tasks.pictures import RolloutInterval

    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    steps = [("canary 10%", 10)] * 3 + [("bake", 100)] * 3
    return [
        RolloutInterval(
            at=t0 + timedelta(seconds=5 * i),
            weight=w,
            step=s,
            new_p50_ms=10 + i,
            new_p95_ms=25 + i,
            new_error_rate=0.01 * (i % 2),
            stable_p50_ms=10,
            stable_p95_ms=24,
            stable_error_rate=0.0,
            verdict="Successful" if i in (2, 5) else None,
        )
        for i, (s, w) in enumerate(steps)
    ]


def test_the_picture_is_a_markdown_artifact_of_the_run_with_the_png_inside():
    from prefect import flow

    from prefect_delivery.tasks.pictures import publish_rollout_picture

    @flow(name="see-picture")
    def draws() -> bytes:
        return publish_rollout_picture("rollout-see-test", _records(), "hello in see-test")

    png = draws()
    (artifact,) = [a for a in _artifacts("rollout-see-test") if a.flow_run_id]
    assert artifact.type == "markdown"
    encoded = artifact.data.split("data:image/png;base64,", 1)[1].split(")", 1)[0]
    assert base64.b64decode(encoded) == png
    import matplotlib.image as mpimg

    image = mpimg.imread(io.BytesIO(png), format="png")
    assert image.std() > 0.05


def test_progress_is_created_then_updated_to_done():
    from prefect import flow

    from prefect_delivery.tasks.runtime.progress import bake_window

    @flow(name="see-progress")
    def waits() -> str:
        wait = bake_window("see-test", 1.0, min_interval_s=0.0, min_step=10).start()
        while wait.tick() < 100:
            time.sleep(0.1)
        wait.finish("no breach")
        return str(wait.artifact_id)

    artifact_id = waits()
    (artifact,) = [a for a in _artifacts("progress-bake-see-test") if str(a.id) == artifact_id]
    assert artifact.type == "progress" and artifact.data == 100.0
    assert artifact.description == "bake window in see-test: no breach"

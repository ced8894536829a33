"""The rollout picture in the Prefect UI itself, in headless Chromium (Debian's package).

A canary environment with a bake is created on the stack's server; two releases are delivered
(the second has a canary step and a bake); the delivery run's artifacts page is opened in the
real UI; the picture must be there, drawn (not blank), and a screenshot of the page is kept in
test-artifacts/rollout-picture.png for people to look at.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from support import free_port
from support.browser import CHROMIUM, LAUNCH_ARGS, only_from
from support.pipeline import commit_release

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing (Debian package `chromium`; .ci/run installs it)",
    ),
]

MAKE_ENV = """
import sys
from prefect_delivery.blocks.services import ServiceRoute
from prefect_delivery.blocks.settings import (
    PromotionPolicy, StrategySettings, VerificationSettings,
)
from prefect_delivery.flows.cli.setup import environment

name, port, state_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
env = environment(
    name, port, state_dir,
    StrategySettings(kind="canary", instances=1, canary_steps=[50, 100], step_pause_s=4,
                     analysis_interval_s=1, keep_previous_s=3600),
    6.0, False, VerificationSettings(requests=100),
    promotion=PromotionPolicy(allow_auto_approval=True),
)
env.services = {"hello-service": ServiceRoute(port=port)}
env.save(name, overwrite=True)
"""


def blankness(png: Path) -> float:
    """The standard deviation of the screenshot's pixels (0: one flat colour)."""
    import matplotlib.image

    return float(matplotlib.image.imread(str(png)).std())


def test_the_rollout_picture_shows_in_the_prefect_ui(stack, service_repo, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    name, port = "picture", free_port()
    stack.run(sys.executable, "-c", MAKE_ENV, name, str(port), str(stack.state_dir))
    for version in ("7.0.0", "7.1.0"):
        sha = commit_release(service_repo, version)
        stack.delivery(
            "run",
            service_repo.path,
            "--commit",
            sha,
            "--env",
            name,
            "--auto-approve",
            timeout=600,
        )
    served = httpx.get(f"http://127.0.0.1:{port}/version", timeout=5).json()
    assert served == {"version": "7.1.0", "commit": sha}
    with stack.client() as client:
        pictures = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"rollout-{name}-hello-service"])
            )
        )
        assert pictures, "no rollout picture was published"
        latest = max(pictures, key=lambda a: a.created)
        flow_run = client.read_flow_run(latest.flow_run_id)
    assert flow_run.name.startswith("deliver"), flow_run.name  # the delivery's, with the bake
    assert "canary 50%" in latest.data and "bake" in latest.data
    assert latest.data.count("data:image/png;base64,") == 1

    shot = artifacts_dir / "rollout-picture.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            only_from(page, stack.url)
            # the run's page, its Artifacts tab (kept for people), then the artifact itself
            page.goto(f"{stack.url}/runs/flow-run/{flow_run.id}")
            tab = page.get_by_role("tab", name="Artifacts")
            if tab.count():
                tab.first.click()
                page.wait_for_timeout(2000)
            page.screenshot(path=str(artifacts_dir / "rollout-run-artifacts.png"), full_page=True)
            page.goto(f"{stack.url}/artifacts/artifact/{latest.id}")
            picture = page.locator("img[src^='data:image/png']").first
            expect(picture).to_be_visible(timeout=60_000)
            width = picture.evaluate("img => img.complete ? img.naturalWidth : 0")
            assert width > 400, f"the picture did not load (natural width {width})"
            picture.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
            picture.screenshot(path=str(artifacts_dir / "rollout-picture-only.png"))
        except BaseException:
            page.screenshot(path=str(artifacts_dir / "rollout-picture-failure.png"), full_page=True)
            (artifacts_dir / "rollout-picture-failure.html").write_text(page.content())
            raise
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    assert blankness(artifacts_dir / "rollout-picture-only.png") > 0.05

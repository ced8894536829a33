"""Approve a release through the Prefect UI itself, in headless Chromium (Debian's package).

Playwright drives /usr/bin/chromium (never a downloaded browser): open the paused run's page,
click Resume, read the form (the markdown description and the Approval fields), fill it and
submit. The run proceeds to production. A screenshot of the filled form is kept in
test-artifacts/approval-form.png.
"""

from __future__ import annotations

import json
import time

import pytest
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


def field(dialog, title: str):
    """The input of a schema-form field, found by the title shown above it."""
    return dialog.locator(
        f"xpath=.//*[normalize-space(text())='{title}']/following::*[self::textarea or "
        "self::input][1]"
    )


#: Prefect's UI says this when the API answers 500.
UI_ERROR = "Something went wrong"
#: What Prefect's server logs when its SQLite refuses a write: the resume is one deferred
#: transaction (read the run, then write its state), and another writer in between makes
#: SQLite refuse the upgrade at once, whatever its busy timeout (PrefectHQ/prefect#17473,
#: #10188). The transaction is rolled back whole, so the approver's second Submit is safe.
SQLITE_LOCKED = "database is locked"


def submit(page, dialog, stack) -> None:
    """Submit the form as an approver does: once; again only if the UI reported an error and
    the server logged SQLite's lock after this Submit. Anything else fails the test."""
    from playwright.sync_api import expect

    log = stack.server.log
    seen = log.stat().st_size
    dialog.get_by_role("button", name="Submit").click()
    error = page.get_by_text(UI_ERROR).first
    deadline = time.monotonic() + 30
    while dialog.is_visible() and not error.is_visible() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    if error.is_visible() and dialog.is_visible():
        with open(log, "rb") as handle:  # what the server logged since this Submit
            handle.seek(seen)
            since = handle.read().decode(errors="replace")
        assert SQLITE_LOCKED in since, (
            f"the UI said {UI_ERROR!r} and the server's log does not say {SQLITE_LOCKED!r}:\n"
            + since[-3000:]
        )
        dialog.get_by_role("button", name="Submit").click()
    expect(dialog).to_be_hidden(timeout=30_000)


def test_approve_in_the_prefect_ui(stack, service_repo, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    sha = commit_release(service_repo, "4.0.0")
    run = stack.deployment_run(
        "delivery/hello-service",
        f"service_dir={json.dumps(service_repo.path)}",
        f'commit="{sha}"',
    )
    stack.wait_for_state(run.flow_run_id, {"Paused"})

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        try:
            only_from(page, stack.url)
            page.goto(f"{stack.url}/runs/flow-run/{run.flow_run_id}")
            page.get_by_role("button", name="Resume").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Resume Flow Run")).to_be_visible(timeout=30_000)
            # The description tells the approver what they approve, with the numbers.
            expect(dialog.get_by_text(sha).first).to_be_visible()
            expect(dialog.get_by_text("staging verification").first).to_be_visible()

            # The schema form: one field per Approval property, titled, with its description.
            expect(dialog.get_by_text("Who decides (name or handle)").first).to_be_visible()
            field(dialog, "Approver").fill("dana (via the UI)")
            field(dialog, "Reason").fill("browser e2e: staging numbers look right")
            dialog.get_by_role("switch").first.click()
            dialog.screenshot(path=str(artifacts_dir / "approval-form.png"))
            submit(page, dialog, stack)
        except BaseException:
            page.screenshot(path=str(artifacts_dir / "approval-form-failure.png"), full_page=True)
            (artifacts_dir / "approval-form-failure.html").write_text(page.content())
            raise
        finally:
            browser.close()

    assert run.wait(600) == 0, run.output()[-4000:]
    assert stack.served("production") == {"version": "4.0.0", "commit": sha}
    decision = [e for e in stack.ledger("production") if e["run_id"] == run.flow_run_id]
    assert decision[0]["event"] == "approved"
    assert decision[0]["details"]["approver"] == "dana (via the UI)"
    assert (artifacts_dir / "approval-form.png").stat().st_size > 10_000

"""Headless Chromium for the UI tests: Debian's package, never a downloaded browser."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def only_from(page, url: str) -> None:
    """Let the page load nothing but ``url``'s server (and inline data): any other address
    would be a defect, and there is no internet here anyway."""
    page.route(
        "**/*",
        lambda route: (
            route.continue_() if route.request.url.startswith((url, "data:")) else route.abort()
        ),
    )

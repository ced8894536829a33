"""Seeded synthetic streams for the judge's tests: both sides in the same intervals, with a
common per-interval slowdown (what a busy 2-core machine does to both releases at once)."""

from __future__ import annotations

import numpy as np
import pytest

from prefect_delivery.tasks.judge import Observations

PATHS = np.array(["/api/greeting", "/api/stats", "/api/people"], dtype=object)


class Streams:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def pair(
        self,
        t: float,
        n: int = 1000,
        *,
        new_scale: float = 1.0,
        new_errors: float = 0.0,
        stable_errors: float = 0.0,
        new_404_path: str | None = None,
        stable_n: int | None = None,
        interval_s: float = 5.0,
    ) -> tuple[Observations, Observations]:
        load = self.rng.lognormal(0.0, 0.3)  # contention this interval, common to both
        return (
            self.side(t, n, load * new_scale, new_errors, new_404_path, interval_s),
            self.side(
                t, stable_n if stable_n is not None else n, load, stable_errors, None, interval_s
            ),
        )

    def side(self, t, n, scale, error_share, path_404, interval_s) -> Observations:
        latency = self.rng.lognormal(1.0, 0.5, n) * scale
        status = np.where(self.rng.random(n) < error_share, 500, 200)
        paths = PATHS[np.arange(n) % len(PATHS)]
        if path_404:
            status = np.where(paths == path_404, 404, status)
        return Observations.from_requests(
            latency, status, paths, start_s=t, end_s=t + interval_s, source="test probe"
        )


@pytest.fixture
def streams() -> Streams:
    return Streams(seed=1234)

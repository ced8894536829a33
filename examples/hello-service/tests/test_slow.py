"""The slow fault, over many inputs: each request must take at least the injected delay."""

import time

import pytest

DELAY = 0.25
NAMES = [f"user{i}" for i in range(24)]


@pytest.mark.parametrize("name", NAMES)
def test_slow_fault_delays_and_still_answers(make_client, name):
    client = make_client(f"slow:{DELAY}")
    started = time.perf_counter()
    response = client.get("/api/greeting", params={"name": name})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json()["greeting"].endswith(f"{name}!")
    assert elapsed >= DELAY


def test_slow_fault_does_not_delay_health(make_client):
    client = make_client("slow:2")
    started = time.perf_counter()
    assert client.get("/healthz").status_code == 200
    assert time.perf_counter() - started < 1.0

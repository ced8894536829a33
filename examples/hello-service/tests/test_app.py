import pytest


def test_health_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_fails_when_unhealthy(make_client):
    assert make_client("unhealthy").get("/healthz").status_code == 503


def test_version_reports_release(client):
    assert client.get("/version").json() == {"version": "9.9.9", "commit": "c" * 40}


def test_greeting_default_name(client):
    body = client.get("/api/greeting").json()
    assert body["greeting"].endswith("world!")
    assert body["version"] == "9.9.9"


@pytest.mark.parametrize("name", ["Ada", "Grace", "Linus", "Barbara"])
def test_greeting_names(client, name):
    assert client.get("/api/greeting", params={"name": name}).json()["greeting"].endswith(
        f"{name}!"
    )


def test_greeting_blank_name_falls_back(client):
    assert client.get("/api/greeting", params={"name": "   "}).json()["greeting"].endswith(
        "world!"
    )


def test_greeting_long_name_is_truncated(client):
    body = client.get("/api/greeting", params={"name": "x" * 500}).json()
    assert len(body["greeting"]) < 100


def test_stats_counts_requests(client):
    client.get("/api/greeting")
    client.get("/api/greeting")
    body = client.get("/api/stats").json()
    assert body["requests"] == 3
    assert body["errors"] == 0


def test_unknown_path_is_404(client):
    assert client.get("/nope").status_code == 404


def test_error_fault_returns_500_on_every_request_at_share_1(make_client):
    client = make_client("error:1")
    assert all(client.get("/api/greeting").status_code == 500 for _ in range(5))


def test_error_fault_share_is_roughly_respected(make_client):
    client = make_client("error:0.3", seed=42)
    codes = [client.get("/api/greeting").status_code for _ in range(400)]
    share = codes.count(500) / len(codes)
    assert 0.2 < share < 0.4


def test_error_fault_does_not_touch_health(make_client):
    assert make_client("error:1").get("/healthz").status_code == 200


def test_error_fault_counted_in_stats(make_client):
    client = make_client("error:0.5", seed=1)
    for _ in range(20):
        client.get("/api/greeting")
    # /api/stats itself may fail under the fault; retry until it answers
    for _ in range(20):
        response = client.get("/api/stats")
        if response.status_code == 200:
            assert response.json()["errors"] > 0
            return
    pytest.fail("stats never answered")


def test_a_late_fault_is_good_until_its_delay(make_client):
    import time

    client = make_client("late:0.3:error:1.0")
    assert client.get("/api/greeting").status_code == 200
    time.sleep(0.35)
    assert client.get("/api/greeting").status_code == 500

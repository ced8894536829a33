"""httpbin's behaviour as this service relies on it, through Flask's test client (no server)."""

import pytest
from httpbin import app


@pytest.fixture
def client():
    return app.test_client()


@pytest.mark.parametrize("code", [200, 404, 418, 503])
def test_status_answers_the_code_asked_for(client, code):
    assert client.get(f"/status/{code}").status_code == code


def test_get_echoes_arguments(client):
    assert client.get("/get?who=delivery").get_json()["args"] == {"who": "delivery"}


def test_basic_auth_accepts_the_right_user(client):
    import base64

    token = base64.b64encode(b"ada:secret").decode()
    answer = client.get("/basic-auth/ada/secret", headers={"Authorization": f"Basic {token}"})
    assert answer.get_json() == {"authenticated": True, "user": "ada"}

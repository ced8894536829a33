"""End-to-end checks against the deployed environment (DELIVERY_URL): real HTTP, through the
environment's frontend, as a user's client would call it."""

import json
import os
import urllib.request

URL = os.environ["DELIVERY_URL"]


def fetch(path: str, data: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        URL + path,
        data=data,
        method="POST" if data else "GET",
        headers={"Content-Type": "application/json"} if data else {},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, json.loads(answer.read())


def test_a_post_is_echoed_back():
    status, body = fetch("/post", data=b'{"order": 42}')
    assert status == 200 and body["json"] == {"order": 42}


def test_a_uuid_is_fresh_each_time():
    assert fetch("/uuid")[1]["uuid"] != fetch("/uuid")[1]["uuid"]

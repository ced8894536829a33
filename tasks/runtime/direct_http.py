"""Asking an instance directly, with the standard library and no proxy.

The commands a person waits on (``delivery status``, a break-glass ``rollback``) use this:
importing httpx would cost about 0.2 s before anything is read, and instances are on this host
(or on an address the target gave), never behind a proxy. ``ask_all`` asks many at once, so a
slow instance costs its own timeout once, not once per instance.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Answer:
    __slots__ = ("status", "body")

    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body


def ask(url: str, timeout: float = 1.0) -> Answer | None:
    """The instance's answer (any status), or None when it does not answer in time."""
    try:
        with _DIRECT.open(url, timeout=timeout) as answer:
            return Answer(answer.status, answer.read())
    except urllib.error.HTTPError as error:  # a non-2xx answer is still an answer
        return Answer(error.code, error.read() if error.fp else b"")
    except (OSError, ValueError):  # URLError, refused, timeouts, a bad URL
        return None


def ask_all(urls: Iterable[str], timeout: float = 1.0) -> list[Answer | None]:
    """``ask`` for every URL, side by side; the answers in the URLs' order."""
    urls = list(urls)
    if len(urls) <= 1:
        return [ask(url, timeout) for url in urls]
    with ThreadPoolExecutor(max_workers=min(16, len(urls))) as pool:
        return list(pool.map(lambda url: ask(url, timeout), urls))

"""The HTTP clients the tool opens (probes, health checks, smoke tests, Prometheus), sharing one
TLS context.

Building a TLS context loads the CA bundle: about 30 ms of CPU each time, which httpx pays in
every ``httpx.Client()`` and every ``httpx.get()``. A probe opens its clients afresh every
analysis interval (two per instance per side every half second in a canary step), so those
loads alone kept a fifth of a core busy during an hour's bake. Here the context is made once per
process and shared: an ``ssl.SSLContext`` is safe to use from several threads, and verification
is what httpx's default gives (the CA bundle of ``SSL_CERT_FILE``/``SSL_CERT_DIR`` or certifi).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context, made once per process."""
    return httpx.create_ssl_context()


def client(**kwargs: Any) -> httpx.Client:
    """``httpx.Client(**kwargs)`` on the shared TLS context."""
    kwargs.setdefault("verify", tls_context())
    return httpx.Client(**kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.get(url, **kwargs)`` on the shared TLS context (``params``, ``headers`` and
    ``timeout`` are passed on)."""
    request_args = {k: kwargs.pop(k) for k in ("params", "headers") if k in kwargs}
    with client(**kwargs) as http:
        return http.get(url, **request_args)

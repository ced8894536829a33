"""The CA file the tests give Prefect's client: one certificate instead of certifi's bundle.

Prefect builds a verifying TLS context for every client it opens (``get_client``), from
``PREFECT_API_SSL_CERT_FILE`` or else certifi's bundle of about 140 CAs: some 15 ms of CPU
each, and ``Block.save`` opens one client per nested block type (13 for an Environment), a flow
run several more. The tests' Prefect server answers plain HTTP on loopback, so no CA is ever
consulted: the file only has to load. It holds certifi's first certificate, a real CA, so a
client that did reach a TLS server would still verify it, and refuse any certificate that CA
did not sign.
"""

from __future__ import annotations

import re
from pathlib import Path

import certifi

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n", re.S)


def one_ca_file(folder: str) -> str:
    """A PEM file in ``folder`` holding certifi's first CA certificate; returns its path."""
    found = _PEM.search(Path(certifi.where()).read_text())
    if found is None:
        raise RuntimeError(f"no certificate in {certifi.where()}")
    path = Path(folder) / "api-ca.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(found.group(0))
    return str(path)

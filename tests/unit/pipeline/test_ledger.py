from support.factories import release

from prefect_delivery.blocks.ledger import Ledger

A, B, C = release(1), release(2), release(3)


def test_previous_verified_skips_rolled_back(tmp_path):
    ledger = Ledger(str(tmp_path), "prod", "svc")
    ledger.append("verified", A)
    ledger.append("verified", B)
    ledger.append("verified", C)
    ledger.append("rolled-back", C, reason="bake breached")
    assert [r.digest for r in ledger.verified_releases()] == [B.digest, A.digest]
    assert ledger.previous_verified(B.digest).digest == A.digest


def test_failed_release_is_not_verified(tmp_path):
    ledger = Ledger(str(tmp_path), "prod", "svc")
    ledger.append("verified", A)
    ledger.append("deployed", B)
    ledger.append("failed", B, reason="verification")
    assert [r.digest for r in ledger.verified_releases()] == [A.digest]


def test_torn_last_line_is_ignored(tmp_path):
    ledger = Ledger(str(tmp_path), "prod", "svc")
    ledger.append("verified", A)
    with open(ledger.path, "a") as handle:
        handle.write('{"at": "2026-')
    assert [e.event for e in ledger.entries()] == ["verified"]


def test_unknown_event_refused(tmp_path):
    import pytest

    with pytest.raises(ValueError):
        Ledger(str(tmp_path), "prod", "svc").append("exploded", A)

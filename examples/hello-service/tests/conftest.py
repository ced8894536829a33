import pytest
from starlette.testclient import TestClient

from hello_service.app import create_app
from hello_service.faults import parse_fault
from hello_service.release import ReleaseInfo

RELEASE = ReleaseInfo(version="9.9.9", commit="c" * 40)


@pytest.fixture
def make_client():
    def make(fault: str = "none", seed: int = 7) -> TestClient:
        return TestClient(create_app(fault=parse_fault(fault), release=RELEASE, seed=seed))

    return make


@pytest.fixture
def client(make_client):
    return make_client()

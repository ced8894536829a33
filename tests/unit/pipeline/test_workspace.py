"""Where a commit is exported, built and tested (tasks/build.py ``workspace``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect_delivery.tasks.build import workspace


def test_the_workspace_is_under_delivery_work_dir_one_folder_per_service_and_commit(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("DELIVERY_WORK_DIR", str(tmp_path / "work"))
    commit = "ab" * 20
    assert workspace("hello-service", commit) == tmp_path / "work" / "hello-service" / commit
    assert workspace("other", commit) != workspace("hello-service", commit)


def test_a_relative_delivery_work_dir_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DELIVERY_WORK_DIR", "work")
    assert workspace("svc", "c0ffee") == tmp_path.resolve() / "work" / "svc" / "c0ffee"


def test_without_it_the_workspace_is_in_the_temp_folder(monkeypatch):
    monkeypatch.delenv("DELIVERY_WORK_DIR", raising=False)
    expected = Path(tempfile.gettempdir()) / "prefect-delivery-work" / "svc" / "c0ffee"
    assert workspace("svc", "c0ffee") == expected

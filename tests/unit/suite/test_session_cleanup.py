"""A passing pytest session removes what it wrote (tests/conftest.py, pytest_sessionfinish): its
session folder and every ``short_tmpdir``; a failing one keeps them to be read.

Each case runs a small pytest session in a subprocess with a copy of the suite's own
conftest.py (the real file, copied beside a one-test file, so the copy's hooks are the suite's),
``support`` importable as in the suite, and TMPDIR pointing into this test's folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2]

CHILD = """
import json, os
from pathlib import Path
from support import short_tmpdir


def test_writes_where_the_suite_writes():
    session = Path(os.environ["DELIVERY_TESTS_SESSION_DIR"])
    (session / "state-file").write_text("x")
    made = short_tmpdir("pd-cleanup-")
    (made / "socket-dir-file").write_text("x")
    Path(os.environ["CLEANUP_REPORT"]).write_text(json.dumps(
        {"session": str(session), "made": str(made),
         "work": os.environ["DELIVERY_WORK_DIR"], "uv": os.environ["UV_CACHE_DIR"]}))
    assert os.environ["CHILD_OUTCOME"] == "pass"
"""


def run_session(tmp_path: Path, outcome: str, keep: bool = False) -> tuple[int, dict]:
    folder = tmp_path / "suite"
    folder.mkdir()
    shutil.copy(TESTS / "conftest.py", folder / "conftest.py")
    (folder / "test_child.py").write_text(CHILD)
    report = tmp_path / "report.json"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DELIVERY_", "PYTEST_", "PREFECT_", "UV_CACHE"))
    }
    env.update(TMPDIR=str(tmp_path), CLEANUP_REPORT=str(report), CHILD_OUTCOME=outcome)
    if keep:
        env["DELIVERY_TESTS_KEEP"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
        + ["--rootdir", str(folder), "-o", f"pythonpath={TESTS}", str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode, json.loads(report.read_text())


def test_a_passing_session_leaves_nothing_behind(tmp_path):
    code, seen = run_session(tmp_path, "pass")
    made = Path(seen["made"])
    try:
        assert code == 0
        session = Path(seen["session"])
        assert session.parent == tmp_path  # the session folder was made under our TMPDIR
        assert Path(seen["work"]).is_relative_to(session)
        assert Path(seen["uv"]).is_relative_to(session)
        assert not session.exists()
        assert not made.exists()
    finally:  # short_tmpdir writes under /tmp, outside tmp_path: never left there by a failure
        shutil.rmtree(made, ignore_errors=True)


@pytest.mark.parametrize("outcome, keep", [("fail", False), ("pass", True)])
def test_a_failing_or_kept_session_keeps_its_folders(tmp_path, outcome, keep):
    code, seen = run_session(tmp_path, outcome, keep)
    made = Path(seen["made"])
    try:
        assert (code != 0) == (outcome == "fail")
        assert (Path(seen["session"]) / "state-file").exists()
        assert (made / "socket-dir-file").exists()
    finally:
        shutil.rmtree(made, ignore_errors=True)

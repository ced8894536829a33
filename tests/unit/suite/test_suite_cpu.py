"""The suite's own tooling: bench.suite_cpu sums a CPU profile and writes the file order, and
support.file_order runs the longest files first. (tests/conftest.py is never imported here: its
import picks a new port for the session's Prefect API and would move a running session off its
server.)"""

from __future__ import annotations

import json
from types import SimpleNamespace

from support.file_order import longest_first

from bench import suite_cpu


def _profile(tmp_path, rows):
    path = tmp_path / "profile.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sums_by_file_prints_the_run_and_writes_the_weights(tmp_path, capsys):
    path = _profile(
        tmp_path,
        [
            {"test": "tests/a.py::t1", "worker": "gw0", "wall_s": 10, "machine_cpu_s": 12},
            {"test": "tests/a.py::t2", "worker": "gw0", "wall_s": 5, "machine_cpu_s": 3},
            {"test": "tests/b.py::t", "worker": "gw1", "wall_s": 30, "machine_cpu_s": 15},
            {"session": True, "workers": 2, "exit": 0, "wall_s": 120, "machine_cpu_s": 180},
        ],
    )
    weights = tmp_path / "weights.json"
    assert suite_cpu.main([str(path), "--write-weights", str(weights)]) == 0
    out, err = capsys.readouterr()
    assert "| tests/a.py | 2 | 15 | 15 | 50.0 % |" in out
    assert "3 tests, 2 files, 0.8 minutes of tests in 2 workers" in out  # the session: no test
    assert "the run (2 xdist workers, exit 0): 2.0 minutes, the machine busy 3.0 CPU-minutes" in out
    assert "recorded by 2 pytest-xdist workers" in err
    assert json.loads(weights.read_text()) == {"tests/a.py": 15.0, "tests/b.py": 30.0}


def test_a_missing_or_empty_profile_is_one_message_and_exit_2(tmp_path, capsys):
    assert suite_cpu.main([str(tmp_path / "none.jsonl")]) == 2
    assert "no profile at" in capsys.readouterr().err
    empty = _profile(tmp_path, [{"session": True, "workers": 0, "exit": 2, "wall_s": 1,
                                 "machine_cpu_s": 1}])
    assert suite_cpu.main([str(empty)]) == 2
    assert "holds no test" in capsys.readouterr().err


def _items(*nodeids):
    return [SimpleNamespace(nodeid=n) for n in nodeids]


def test_files_run_longest_first_and_keep_their_tests_order(tmp_path):
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"s.py": 1, "l.py": 100, "m.py": 10}))
    items = _items("s.py::a", "new.py::x", "l.py::b", "l.py::a", "m.py::z", "new.py::w")
    longest_first(items, weights)
    # new.py is not in the record: it weighs the median (10), and a tie keeps the order of
    # collection (new.py before m.py)
    assert [i.nodeid for i in items] == [
        "l.py::b", "l.py::a", "new.py::x", "new.py::w", "m.py::z", "s.py::a"
    ]


def test_without_a_record_the_order_is_pytests(tmp_path):
    items = _items("b.py::x", "a.py::y")
    longest_first(items, tmp_path / "missing.json")
    assert [i.nodeid for i in items] == ["b.py::x", "a.py::y"]


def test_a_second_import_of_the_conftest_keeps_the_sessions_api(tmp_path):
    """The bug a two-worker run did not show and a four-worker run did: a test importing
    ``conftest`` re-ran it at collection and moved PREFECT_API_URL to a port no server listens
    on, so every `delivery` subprocess after it failed to reach the API. Checked in a process of
    its own (this session's settings are not touched)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parents[2]
    script = (
        "import importlib.util, os, sys\n"
        f"sys.path.insert(0, {str(tests)!r})\n"
        "def load(name):\n"
        f"    spec = importlib.util.spec_from_file_location(name, {str(tests / 'conftest.py')!r})\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    return module, os.environ['PREFECT_API_URL'], os.environ['PREFECT_HOME']\n"
        "first, second = load('first'), load('second')\n"
        "assert first[1:] == second[1:], (first[1:], second[1:])\n"
        "assert first[0]._API_PORT == second[0]._API_PORT\n"
        "print(first[1])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DELIVERY_TESTS_PROCESS"}
    env["TMPDIR"] = str(tmp_path)  # the session folder that import makes goes with tmp_path
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("http://127.0.0.1:")
    # and it is a new session's port, not this one's
    assert run.stdout.strip() != os.environ["PREFECT_API_URL"]

"""Benchmark: does a first `delivery demo` pass, every time?

    python -m bench.first_run [--runs 20] [--database]

Each run is a new user's first run on this machine: ``delivery demo --no-database`` (two
services, hello-service and httpbin, through one staging and production) in a fresh state
folder with a fresh PREFECT_HOME (Prefect's ephemeral API, no server), on ports of its own,
then ``delivery down``. Runs one after the other (two demos at once would be a different
question). Prints each run's result and wall time (from the command's start), then passes,
failures and the first line of each failure. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_failure_line(output: str) -> str:
    """The line that says what went wrong: the CLI's own error line, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("delivery:"):
            return line[:300]
    for line in reversed(lines):
        if "Error" in line or "failed" in line.lower():
            return line[:300]
    return (lines[-1] if lines else "(no output)")[:300]


def one_run(number: int, database: bool, timeout_s: float) -> tuple[bool, float, str]:
    home = Path(tempfile.mkdtemp(prefix=f"pd-first-{number}-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        DELIVERY_STATE_DIR=str(home / "state"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    argv = [str(VENV_BIN / "delivery"), "demo", "--staging-port", str(free_port())]
    argv += ["--production-port", str(free_port())]
    if not database:
        argv.append("--no-database")
    started = time.perf_counter()
    try:
        demo = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=home
        )
        seconds = time.perf_counter() - started
        ok = demo.returncode == 0
        detail = "" if ok else first_failure_line(demo.stderr + "\n" + demo.stdout)
        if not ok:
            (home / "demo.log").write_text(demo.stdout + demo.stderr)
            detail += f" (log: {home / 'demo.log'})"
    except subprocess.TimeoutExpired:
        seconds, ok, detail = time.perf_counter() - started, False, f"timed out ({timeout_s}s)"
    finally:
        subprocess.run(
            [str(VENV_BIN / "delivery"), "down"],
            capture_output=True,
            timeout=300,
            env=env,
            cwd=home,
        )
    if ok:
        shutil.rmtree(home, ignore_errors=True)
    return ok, seconds, detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--database", action="store_true", help="the demo with databases")
    parser.add_argument("--timeout-s", type=float, default=900.0)
    args = parser.parse_args(argv)
    results = []
    for number in range(1, args.runs + 1):
        ok, seconds, detail = one_run(number, args.database, args.timeout_s)
        results.append((ok, seconds, detail))
        print(
            f"run {number:>2}/{args.runs}: {'pass' if ok else 'FAIL'} in {seconds:6.1f}s"
            + (f"  {detail}" if detail else ""),
            flush=True,
        )
    passed = sum(1 for ok, _, _ in results if ok)
    times = sorted(s for _, s, _ in results)
    print(
        f"\n`delivery demo{'' if args.database else ' --no-database'}` from a clean state "
        f"folder: {passed} of {len(results)} passed; wall time min {times[0]:.1f}s, median "
        f"{times[len(times) // 2]:.1f}s, max {times[-1]:.1f}s"
    )
    for n, (ok, _, detail) in enumerate(results, 1):
        if not ok:
            print(f"  run {n}: {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

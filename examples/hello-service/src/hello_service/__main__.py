"""Start hello-service: ``python -m hello_service --host 127.0.0.1 --port 8000``."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from hello_service.app import create_app
from hello_service.faults import FaultSpecError, current_fault
from hello_service.people import PeopleConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hello_service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        fault = current_fault()
    except FaultSpecError as exc:
        print(f"hello-service: {exc}", file=sys.stderr)
        return 2
    if fault.leaks:  # what a careless service does: its secrets in a crash message
        secrets = {k: v for k, v in os.environ.items() if k == "DATABASE_URL" or "TOKEN" in k}
        print(f"hello-service: cannot start with {secrets}", file=sys.stderr)
        return 3
    if fault.crashes:
        print("hello-service: fault 'crash' set, exiting at start-up", file=sys.stderr)
        return 3
    try:
        app = create_app(fault=fault)
    except PeopleConfigError as exc:
        print(f"hello-service: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

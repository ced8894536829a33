"""Steady load from a separate process: a fixed number of requests at a fixed concurrency.

    python -m bench.load URL --requests 6000 --concurrency 8 --out results.jsonl

Every request is recorded (start, end, status or error name, the version that answered), so the
caller can count failures and see which release served when. Bounded in count and in time
(--max-seconds); loopback URLs only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from urllib.parse import urlparse

import httpx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--path", default="/version")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    host = urlparse(args.url).hostname or ""
    if not host.startswith("127."):
        print(f"refusing to load {host}: loopback addresses only", file=sys.stderr)
        return 2
    lock = threading.Lock()
    records: list[tuple] = []
    sent = 0
    deadline = time.monotonic() + args.max_seconds
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def worker() -> None:
        nonlocal sent
        with httpx.Client(base_url=args.url, timeout=10) as client:
            while True:
                with lock:
                    if sent >= args.requests or time.monotonic() > deadline or stop.is_set():
                        return
                    sent += 1
                started = time.time()
                try:
                    response = client.get(args.path)
                    status: str | int = response.status_code
                    version = response.json().get("version") if status == 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    status, version = type(exc).__name__, None
                with lock:
                    records.append((started, time.time(), status, version))

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    print("started", flush=True)
    for thread in threads:
        thread.join()
    with open(args.out, "w") as handle:
        for start, end, status, version in records:
            handle.write(json.dumps({"start": start, "end": end, "status": status,
                                     "version": version}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Live recording for bench/judge.py: real hello-service instances, a CPU-noise process, probes.

    python -m bench.judge --record            # writes bench/traces/<today>/*.npz (~15 min)

Each scenario starts a fresh pair of hello-service processes on free loopback ports (the
"stable" side always a good release, the "new" side with the scenario's fault), starts a
CPU-noise process (one busy loop that switches on and off at random, seeded), and probes both
sides at the same time for the scenario's duration the way ``blocks/probe.py`` does in the
pipeline (httpx, two workers per instance, cycling over the manifest's API paths; an error is a
connection failure, a timeout or a 5xx). Every request is kept: start offset, latency, status,
path. Bounded in time (``--seconds`` per scenario) and to loopback addresses.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "bench" / "traces"  # one folder per recording, named by its date
PATHS = ["/api/greeting?name=delivery", "/api/stats", "/api/people"]  # hello-service's smoke
CONCURRENCY = 2  # ProbeSource's default, per instance
TIMEOUT_S = 5.0  # VerificationSettings.timeout_s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_instance(fault: str, variant: str = "") -> tuple[subprocess.Popen, int]:
    """One hello-service process (``variant`` 'no-stats': /api/stats removed, answers 404)."""
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "examples" / "hello-service" / "src"),
        HELLO_FAULT=fault,
    )
    if variant:
        cmd = [sys.executable, "-m", "bench.judge_live", "serve", variant, str(port)]
        env["PYTHONPATH"] += os.pathsep + str(ROOT)
    else:
        cmd = [sys.executable, "-m", "hello_service", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"hello-service ({fault}, {variant or 'plain'}) did not start")


def serve_variant(variant: str, port: int) -> None:
    """hello-service with one endpoint removed: a broken API that answers 404 on one path."""
    import uvicorn
    from hello_service.app import create_app

    app = create_app()
    if variant == "no-stats":
        app.router.routes[:] = [r for r in app.router.routes if r.path != "/api/stats"]
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def noise(seconds: float, seed: int) -> None:
    """CPU noise: a busy loop on for 0.3-1.5 s, off for 0.1-0.8 s, until ``seconds`` pass."""
    rng = random.Random(seed)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        burst = time.monotonic() + rng.uniform(0.3, 1.5)
        while time.monotonic() < min(burst, end):
            pass
        time.sleep(rng.uniform(0.1, 0.8))


def probe_side(port: int, seconds: float, t0: float, out: list) -> None:
    lock = threading.Lock()
    paths = itertools.cycle(range(len(PATHS)))
    end = t0 + seconds

    def worker() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT_S) as client:
            while (now := time.perf_counter()) < end:
                with lock:
                    index = next(paths)
                try:
                    status = client.get(PATHS[index]).status_code
                except httpx.HTTPError:
                    status = 0  # connection failure or timeout
                latency = (time.perf_counter() - now) * 1000
                with lock:
                    out.append((now - t0, latency, status, index))

    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def record_scenario(
    folder: Path, name: str, fault: str, seconds: float, seed: int, variant: str = ""
) -> dict:
    stable, stable_port = start_instance("none")
    new, new_port = start_instance(fault, variant)
    noise_proc = subprocess.Popen(
        [sys.executable, "-m", "bench.judge_live", "noise", str(seconds + 2), str(seed)], cwd=ROOT
    )
    try:
        warm: list = []
        for port in (new_port, stable_port):  # first requests of a process pay for imports
            probe_side(port, 0.5, time.perf_counter(), warm)
        time.sleep(0.5)
        sides: dict[str, list] = {"new": [], "stable": []}
        t0 = time.perf_counter()
        threads = [
            threading.Thread(target=probe_side, args=(port, seconds, t0, sides[label]))
            for label, port in (("new", new_port), ("stable", stable_port))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for proc in (noise_proc, new, stable):
            proc.terminate()
        for proc in (noise_proc, new, stable):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    arrays = {}
    for label, rows in sides.items():
        rows.sort()
        data = np.array(rows, dtype=float).reshape(-1, 4)
        arrays[f"{label}_t_ms"] = np.round(data[:, 0] * 1000).astype(np.uint32)
        arrays[f"{label}_lat_10us"] = np.clip(np.round(data[:, 1] * 100), 0, 65535).astype(
            np.uint16
        )
        arrays[f"{label}_status"] = data[:, 2].astype(np.uint16)
        arrays[f"{label}_path"] = data[:, 3].astype(np.uint8)
    meta = {
        "scenario": name,
        "fault": fault,
        "variant": variant,
        "seconds": seconds,
        "paths": PATHS,
        "concurrency_per_instance": CONCURRENCY,
        "noise": "one CPU busy loop, on 0.3-1.5 s / off 0.1-0.8 s",
        "machine": f"{os.cpu_count()} cores, {platform.python_version()}",
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S"),
        "requests": {label: len(rows) for label, rows in sides.items()},
    }
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{name}.npz", meta=json.dumps(meta), **arrays)
    return meta


def baseline_p50_ms(folder: Path, names: list[str]) -> float:
    values = []
    for name in names:
        with np.load(folder / f"{name}.npz") as data:
            ok = (data["stable_status"] > 0) & (data["stable_status"] < 500)
            values.append(data["stable_lat_10us"][ok] / 100)
    return float(np.median(np.concatenate(values)))


def record(seconds_aa: float = 90, seconds_regression: float = 20, pairs: int = 8) -> Path:
    """``pairs`` A/A pairs (each a fresh pair of processes: where the machine places them is
    part of the noise), then the regressions, into bench/traces/<today>/; returns the folder."""
    folder = TRACES / time.strftime("%Y-%m-%d")
    for old in folder.glob("*.npz"):
        old.unlink()
    metas = []
    aa = [f"aa{i + 1}" for i in range(pairs)]
    for i, name in enumerate(aa):
        metas.append(record_scenario(folder, name, "none", seconds_aa, seed=11 + i))
        print(f"recorded {name}: {metas[-1]['requests']}", flush=True)
    p50 = baseline_p50_ms(folder, aa)
    # asyncio's timers round up to whole milliseconds, so the smallest delay that lands is 1 ms;
    # choose the delay from the recorded A/A median (half of it: a +50 % regression), at least 1 ms.
    delay_ms = max(1, round(0.5 * p50))
    plan = [
        ("err2", "error:0.02", ""),
        ("err5", "error:0.05", ""),
        ("slow", f"slow:{delay_ms / 1000:g}", ""),
        ("http404", "none", "no-stats"),
    ]
    for i, (name, fault, variant) in enumerate(plan):
        metas.append(
            record_scenario(folder, name, fault, seconds_regression, seed=31 + i, variant=variant)
        )
        print(f"recorded {name} ({fault} {variant}): {metas[-1]['requests']}", flush=True)
    return folder


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve_variant(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "noise":
        noise(float(sys.argv[2]), int(sys.argv[3]))

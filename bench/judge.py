"""Benchmark: three judges side by side on recorded per-request traces (issue 13).

    python -m bench.judge                        # replay the newest recording (seeded)
    python -m bench.judge --traces 2026-12-01    # replay another recording (bench/traces/<it>)
    python -m bench.judge --record               # record new traces live first (~15 minutes)

Traces (bench/judge_live.py): real hello-service processes on loopback, a CPU-noise process,
both sides probed in the same windows the way the pipeline probes (httpx, two workers per
instance, the manifest's three API paths). Replay cuts each trace into one-second blocks,
both sides from the same seconds (the same-time baseline keeps what the machine did), and
builds 5-second analysis intervals from a random start: at least 200 A/A comparisons and 100
per regression. Judges:

- today: tasks/analysis.analyze as the rollout loop calls it (cumulative Samples over the
  step, max_error_rate 1 %, p95 within stable p95 * 1.2 + 10 ms, min_samples 50), every
  interval; the bake as tasks/monitor.py does (the whole bake's total against a baseline
  measured once before it);
- kayenta: a fixed-window Mann-Whitney per metric (error rate, p50, p95 of each interval) at
  98 % confidence, High when the Hodges-Lehmann interval's lower end exceeds 25 % of the
  estimate and the mean ratio is >= 1; one High of three metrics scores 67 < 75: Failed;
  judged once at the end of the step, and at the end of every 2-minute window of a bake;
- new: tasks/judge (Analysis with JudgePolicy defaults), every interval.

Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from bench.threshold_judge import Outcome as OldOutcome
from bench.threshold_judge import analyze
from prefect_delivery.blocks.metrics import Samples
from prefect_delivery.blocks.metrics.probe import RATE_PER_S
from prefect_delivery.blocks.settings import VerificationSettings
from prefect_delivery.tasks.judge import Analysis, JudgePolicy, Observations, Outcome

TODAY = VerificationSettings(latency_tolerance=0.20, latency_slack_ms=10.0)

TRACES = Path(__file__).resolve().parent / "traces"  # one folder per recording
INTERVAL_S = 5  # StrategySettings.analysis_interval_s
STEP_S = 120  # the step window of this bench (a canary step here is 5 s to 15 min)
BAKE_S = 3600
LATE_START_S = 1800
TARGETS = {  # regression -> (detection target, where)
    "+5 % 5xx": 0.95,
    "+50 % latency": 0.95,
    "+2 % 5xx": 0.80,
    "+20 % latency": 0.80,
}


@dataclass
class Trace:
    name: str
    meta: dict
    sides: dict  # side -> dict of arrays (t_s, latency_ms, status, path)

    @property
    def seconds(self) -> int:
        return int(min(self.sides[s]["t_s"].max() for s in self.sides))

    def block(self, side: str, start: float, length: float, delay_ms: float = 0.0):
        d = self.sides[side]
        i, j = np.searchsorted(d["t_s"], [start, start + length])
        lat = d["latency_ms"][i:j] + delay_ms
        return lat, d["status"][i:j], d["path"][i:j]


def paced(side: dict, rate_per_s: float | None) -> dict:
    """The requests a probe paced at ``rate_per_s`` would have sent: the first of each 1/rate
    slot (recordings are unpaced, so this keeps their load and their noise: conservative)."""
    if not rate_per_s:
        return side
    _, keep = np.unique(np.floor(side["t_s"] * rate_per_s), return_index=True)
    return {key: values[keep] for key, values in side.items()}


def load(path: Path, rate_per_s: float | None = None) -> Trace:
    name = path.stem
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        paths = np.array(meta["paths"], dtype=object)
        sides = {
            side: {
                "t_s": data[f"{side}_t_ms"] / 1000.0,
                "latency_ms": data[f"{side}_lat_10us"] / 100.0,
                "status": data[f"{side}_status"].astype(np.int32),
                "path": paths[data[f"{side}_path"]],
            }
            for side in ("new", "stable")
        }
    return Trace(name, meta, {side: paced(d, rate_per_s) for side, d in sides.items()})


@dataclass
class Interval:
    new: tuple
    stable: tuple
    t: float


def stream(trace: Trace, rng, count: int, t0: float = 0.0, swap=False, delay_ms=0.0, mult=1.0):
    """``count`` intervals, each 5 consecutive seconds of the trace from a random start."""
    out = []
    for k in range(count):
        start = int(rng.integers(0, trace.seconds - INTERVAL_S + 1))
        a, b = ("stable", "new") if swap else ("new", "stable")
        new = trace.block(a, start, INTERVAL_S, delay_ms)
        if mult != 1.0:
            new = (new[0] * mult, new[1], new[2])
        out.append(Interval(new, trace.block(b, start, INTERVAL_S), t0 + k * INTERVAL_S))
    return out


# ---- judges: each returns (outcome at the end, index of the interval that failed or None) ----


def failed_of(status: np.ndarray) -> np.ndarray:
    return (status == 0) | (status >= 500)


def samples(side: tuple, source: str) -> Samples:
    lat, status, _ = side
    counts: dict[str, int] = {}
    for code, n in zip(*np.unique(status, return_counts=True), strict=True):
        counts[str(code)] = int(n)
    return Samples.from_latencies(
        source, lat.tolist(), int(failed_of(status).sum()), INTERVAL_S, counts
    )


def today_step(intervals: list[Interval]):
    settings = TODAY  # the thresholds the pipeline shipped before the judge
    new_total = stable_total = None
    outcome = None
    for k, iv in enumerate(intervals):
        new, stable = samples(iv.new, "new"), samples(iv.stable, "stable")
        new_total = new if new_total is None else new_total.merged(new)
        stable_total = stable if stable_total is None else stable_total.merged(stable)
        outcome = analyze(new_total, settings, stable_total).outcome
        if outcome is OldOutcome.FAILED:
            return "Failed", k
    return outcome.value, None


def today_bake(intervals: list[Interval], baseline: Samples):
    settings = TODAY  # the thresholds the pipeline shipped before the judge
    total = None
    outcome = None
    for k, iv in enumerate(intervals):
        batch = samples(iv.new, "bake")
        total = batch if total is None else total.merged(batch)
        outcome = analyze(total, settings, baseline).outcome
        if outcome is OldOutcome.FAILED:
            return "Failed", k
    return outcome.value, None


def hodges_lehmann(x: np.ndarray, y: np.ndarray, confidence: float):
    """Estimate and confidence interval of the shift x - y (normal approximation of U)."""
    diffs = np.sort((x[:, None] - y[None, :]).ravel())
    n1, n2 = len(x), len(y)
    z = stats.norm.ppf(0.5 + confidence / 2)
    c = int(math.floor(n1 * n2 / 2 - z * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)))
    c = max(0, min(c, len(diffs) - 1))
    return float(np.median(diffs)), float(diffs[c]), float(diffs[len(diffs) - 1 - c])


def kayenta_window(intervals: list[Interval]) -> str:
    def series(side: str):
        rows = []
        for iv in intervals:
            lat, status, _ = getattr(iv, side)
            ok = lat[~failed_of(status)]
            rate = failed_of(status).mean() if len(status) else np.nan
            rows.append((rate, *(np.quantile(ok, [0.5, 0.95]) if len(ok) else (np.nan, np.nan))))
        return np.array(rows)

    exp, ctl = series("new"), series("stable")
    high = 0
    for m in range(3):
        x, y = exp[:, m], ctl[:, m]
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        if not len(x) or not len(y):
            return "Inconclusive"  # Nodata
        if np.array_equal(x, y):
            continue
        estimate, low, _ = hodges_lehmann(x, y, 0.98)
        ratio = x.mean() / y.mean() if y.mean() > 0 else (math.inf if x.mean() > 0 else 1.0)
        if low > 0.25 * abs(estimate) and ratio >= 1.0:
            high += 1
    score = 100 * (3 - high) / 3
    return "Failed" if score < 75 else "Successful"


def kayenta_step(intervals: list[Interval]):
    outcome = kayenta_window(intervals)
    return outcome, (len(intervals) - 1 if outcome == "Failed" else None)


def kayenta_bake(intervals: list[Interval], window: int = 24):
    for end in range(window, len(intervals) + 1, window):
        if kayenta_window(intervals[end - window : end]) == "Failed":
            return "Failed", end - 1
    return "Successful", None


def observations(side: tuple, t: float) -> Observations:
    lat, status, path = side
    return Observations.from_requests(lat, status, path, start_s=t, end_s=t + INTERVAL_S)


def new_judge(intervals: list[Interval], policy: JudgePolicy):
    analysis = Analysis(policy)
    verdict = None
    for k, iv in enumerate(intervals):
        verdict = analysis.update(observations(iv.new, iv.t), observations(iv.stable, iv.t))
        if verdict.outcome is Outcome.FAILED:
            return "Failed", k, verdict.reason
    return verdict.outcome.value, None, verdict.reason


# ---- the bench ----------------------------------------------------------------------------


@dataclass
class Tally:
    runs: int = 0
    failed: int = 0
    inconclusive: int = 0
    detect_intervals: list = None
    detect_requests: list = None

    def add(self, outcome: str, index, requests_at) -> None:
        self.runs += 1
        self.detect_intervals = self.detect_intervals or []
        self.detect_requests = self.detect_requests or []
        if outcome == "Failed":
            self.failed += 1
            self.detect_intervals.append(index + 1)
            self.detect_requests.append(requests_at(index))
        elif outcome == "Inconclusive":
            self.inconclusive += 1


def requests_until(intervals: list[Interval]):
    counts = np.cumsum([len(iv.new[0]) for iv in intervals])
    return lambda index: int(counts[index])


def run_scenario(name, make, runs, judges, seed):
    rng = np.random.default_rng(seed)
    tallies = {j: Tally() for j in judges}
    for i in range(runs):
        intervals = make(rng, i)
        until = requests_until(intervals)
        for judge, fn in judges.items():
            outcome, index = fn(intervals)[:2]
            tallies[judge].add(outcome, index, until)
    return tallies


def fmt_rate(t: Tally) -> str:
    return f"{t.failed / t.runs:6.1%} ({t.failed}/{t.runs})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", action="store_true", help="record traces live first")
    parser.add_argument(
        "--traces",
        default="",
        help="a recording under bench/traces (default: the newest, or the one --record made)",
    )
    parser.add_argument("--aa-runs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--bake-runs", type=int, default=100)
    parser.add_argument("--aa-bakes", type=int, default=4)
    parser.add_argument(
        "--probe-rate",
        type=float,
        default=RATE_PER_S,
        help="replay what a probe paced at this many requests/s per side saw (0: every request)",
    )
    args = parser.parse_args(argv)
    folder = TRACES / args.traces if args.traces else max(p for p in TRACES.iterdir() if p.is_dir())
    if args.record:
        from bench.judge_live import record

        folder = record()
    if not folder.is_dir() or not any(folder.glob("aa*.npz")):
        known = ", ".join(sorted(p.name for p in TRACES.iterdir() if p.is_dir()))
        print(f"bench.judge: --traces {args.traces!r}: no recording at {folder} (known: {known})")
        return 2
    started = time.perf_counter()
    traces = {p.stem: load(p, args.probe_rate) for p in sorted(folder.glob("*.npz"))}
    aa = [t for n, t in traces.items() if n.startswith("aa")]
    ok = np.concatenate(
        [t.sides["stable"]["latency_ms"][t.sides["stable"]["status"] == 200] for t in aa]
    )
    p50, p95 = float(np.median(ok)), float(np.quantile(ok, 0.95))
    rate = np.mean([len(t.sides[s]["t_s"]) / t.seconds for t in aa for s in ("new", "stable")])
    slow = traces["slow"]
    slow_shift = [
        float(
            np.quantile(slow.sides["new"]["latency_ms"], q)
            / np.quantile(slow.sides["stable"]["latency_ms"], q)
            - 1
        )
        for q in (0.5, 0.95)
    ]
    steps = STEP_S // INTERVAL_S
    policy = JudgePolicy()
    bake_policy = JudgePolicy(kind="bake", horizon_s=BAKE_S)
    sizes = ", ".join(f"{n} {sum(t.meta['requests'].values())} req" for n, t in traces.items())
    print(f"traces: {folder.relative_to(TRACES.parent.parent)} ({slow.meta['machine']}): {sizes}")
    print(
        f"probe rate under CPU noise: {rate:.0f} requests/s per side (2 workers per instance"
        + (f", paced to {args.probe_rate:g}/s" if args.probe_rate else ", unpaced")
        + ")"
    )
    print(f"A/A latency (stable side, answers 200): p50 {p50:.2f} ms, p95 {p95:.2f} ms")
    print(
        f"step window {STEP_S} s = {steps} intervals of {INTERVAL_S} s; alpha "
        f"{policy.alpha}, latency tolerance {policy.latency_tolerance:.0%}, "
        f"interval evidence cap {policy.interval_evidence_cap}, min_samples "
        f"{policy.min_samples}"
    )
    judges = {
        "today": today_step,
        "kayenta": kayenta_step,
        "new": lambda ivs: new_judge(ivs, policy),
    }

    def aa_make(rng, i):
        return stream(aa[i % len(aa)], rng, steps, swap=bool((i // len(aa)) % 2))

    def add_delay(share):
        def make(rng, i):
            return stream(
                aa[i % len(aa)], rng, steps, swap=bool((i // len(aa)) % 2), delay_ms=share * p50
            )

        return make

    def of(name):
        return lambda rng, i: stream(traces[name], rng, steps)

    scenarios = [
        ("A/A (same release both sides)", aa_make, args.aa_runs),
        ("+2 % 5xx", of("err2"), args.runs),
        ("+5 % 5xx", of("err5"), args.runs),
        ("+20 % latency", add_delay(0.20), args.runs),
        ("+50 % latency", add_delay(0.50), args.runs),
        (
            f"{slow.meta['fault']} recorded (p50 {slow_shift[0]:+.0%}, p95 {slow_shift[1]:+.0%})",
            of("slow"),
            args.runs,
        ),
        ("404 on /api/stats", of("http404"), args.runs),
    ]
    results = {}
    for k, (name, make, runs) in enumerate(scenarios):
        results[name] = run_scenario(name, make, runs, judges, seed=100 + k)
        print(f"  replayed {name} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    # the bake: a 1-hour window; 2 % 5xx from minute 30 (replayed from minute 27: earlier
    # windows hold A/A traffic only and are what the A/A bakes measure)
    bake_judges = {"today": "today", "kayenta": "kayenta", "new": "new"}
    late = {j: [] for j in bake_judges}
    late_runs = {j: 0 for j in bake_judges}
    rng = np.random.default_rng(7)
    replay_from = LATE_START_S - 120  # on the 2-minute grid of the bake windows
    post = 600 // INTERVAL_S
    for i in range(args.bake_runs):
        trace = aa[i % len(aa)]
        before = stream(trace, rng, 120 // INTERVAL_S, t0=float(replay_from))
        after = stream(traces["err2"], rng, post, t0=float(LATE_START_S))
        intervals = before + after
        onset = len(before)
        for judge in bake_judges:
            if judge == "new":
                outcome, index, _ = new_judge(intervals, bake_policy)
            elif judge == "kayenta":
                outcome, index = kayenta_bake(intervals)
            else:  # today's bake adds up from minute 0: minutes 0-26 were A/A traffic
                head = stream(trace, rng, replay_from // INTERVAL_S)
                baseline = samples(head[0].stable, "baseline")
                outcome, index = today_bake(head + intervals, baseline)
                index = None if index is None else index - len(head)
            late_runs[judge] += 1
            if outcome == "Failed" and index is not None and index >= onset:
                late[judge].append((index - onset + 1) * INTERVAL_S)
    print(f"  replayed late bake ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    # A/A bakes of a full hour, each with one interval where the new side is 3x slower
    aa_bake = {j: 0 for j in bake_judges}
    rng = np.random.default_rng(9)
    for i in range(args.aa_bakes):
        intervals = stream(aa[i % len(aa)], rng, BAKE_S // INTERVAL_S)
        k = int(rng.integers(10, len(intervals)))
        iv = intervals[k]
        intervals[k] = Interval((iv.new[0] * 3, iv.new[1], iv.new[2]), iv.stable, iv.t)
        baseline = samples(intervals[0].stable, "baseline")
        outcomes = {
            "today": today_bake(intervals, baseline)[0],
            "kayenta": kayenta_bake(intervals)[0],
            "new": new_judge(intervals, bake_policy)[0],
        }
        for judge, outcome in outcomes.items():
            aa_bake[judge] += outcome == "Failed"
    print(f"  replayed A/A bakes ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    print()
    header = (
        f"| {'scenario':58} | {'judge':8} | {'rollbacks / detected':20} | "
        f"{'inconcl.':8} | {'median req':10} | {'median s':8} | target |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, tallies in results.items():
        for judge, t in tallies.items():
            req = f"{np.median(t.detect_requests):.0f}" if t.detect_requests else "-"
            sec = f"{np.median(t.detect_intervals) * INTERVAL_S:.0f}" if t.detect_intervals else "-"
            target = ""
            if judge == "new":
                if name.startswith("A/A"):
                    target = f"<= 1 % {'met' if t.failed / t.runs <= 0.01 else 'MISSED'}"
                elif name in TARGETS:
                    goal = TARGETS[name]
                    target = f">= {goal:.0%} {'met' if t.failed / t.runs >= goal else 'MISSED'}"
            print(
                f"| {name:58} | {judge:8} | {fmt_rate(t):20} | "
                f"{t.inconclusive / t.runs:8.1%} | {req:>10} | {sec:>8} | {target} |"
            )
    for judge in bake_judges:
        found = late[judge]
        med = f"{np.median(found):.0f}" if found else "-"
        worst = f"{max(found):.0f}" if found else "-"
        target = ""
        if judge == "new":
            met = len(found) == late_runs[judge] and found and max(found) <= 300
            target = f"<= 300 s {'met' if met else 'MISSED'}"
        print(
            f"| {'bake 1 h, +2 % 5xx from minute 30':58} | {judge:8} | "
            f"{f'{len(found)}/{late_runs[judge]}':20} | {'':8} | {'':10} | "
            f"{med:>8} | {target} (worst {worst} s) |"
        )
    for judge in bake_judges:
        target = "" if judge != "new" else f"{'met' if aa_bake[judge] == 0 else 'MISSED'}: none"
        print(
            f"| {'bake 1 h A/A with one interval 3x slower on new':58} | {judge:8} | "
            f"{f'{aa_bake[judge]}/{args.aa_bakes}':20} | {'':8} | {'':10} | {'':8} | {target} |"
        )
    print(f"\nreplay took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Analysis: the stateful judge a measuring loop feeds every interval.

    analysis = Analysis(JudgePolicy(kind="step"))
    while ...:
        verdict = analysis.update(new_obs, stable_obs)   # every interval, same window
        # Failed -> roll back now; Error -> measure again (the loop's fail-safe count);
        # at the window's end: Successful -> promote, Inconclusive -> extend or fail.

Every update returns the verdict on the evidence so far: Failed when a test rejected (no
min_samples needed: 49 errors of 49 requests fail), Error when a source failed in this interval
(its message; the interval adds no evidence), Inconclusive while either side has fewer than
``min_samples`` requests (or a critical metric has no data on one side), else Successful ("it
would pass if the window ended now"). The tests are anytime-valid, so looking at every interval,
and extending a window, keep the false-rollback probability below alpha.
"""

from __future__ import annotations

import math

from prefect_delivery.tasks.judge.evidence import (
    SignTest,
    TailShift,
    error_limit,
    quantile_vs_reference,
    rate_excess,
)
from prefect_delivery.tasks.judge.observations import Observations, PathCounts
from prefect_delivery.tasks.judge.policy import JudgePolicy
from prefect_delivery.tasks.judge.verdict import MetricResult, Outcome, Verdict, pct, signed_pct

MEAN_LATENCY = "mean latency (ms)"


class Evidence:
    """What one step (or one bake window) has seen, and the tests on it at a given alpha."""

    def __init__(self, policy: JudgePolicy, alpha: float, start_s: float):
        self.policy, self.alpha, self.start_s = policy, alpha, start_s
        self.new_requests = self.new_errors = self.stable_requests = self.stable_errors = 0
        self.new_paths: dict[str, PathCounts] = {}
        self.stable_paths: dict[str, PathCounts] = {}
        self.path_order: list[str] = []
        self.new_latency: list = []
        cap = policy.interval_evidence_cap
        self.tails = [
            TailShift(q, policy.latency_tolerance, policy.latency_slack_ms, cap)
            for q in policy.quantiles
        ]
        self.signs = [
            SignTest(m.name, m.bad, m.tolerance, m.critical) for m in policy.service_metrics
        ] + [SignTest(MEAN_LATENCY, "higher", policy.latency_tolerance, True)]
        self.intervals = 0

    def add(self, new: Observations, stable: Observations | None) -> None:
        self.intervals += 1
        self.new_requests += new.total_requests
        self.new_errors += new.total_errors
        _add_paths(self.new_paths, new.path_counts(), self.path_order)
        reference = self.policy.reference
        if self.policy.kind == "rollback":
            self.new_latency.append(new.ok_latencies())
            values = dict(reference.metrics) if reference else {}
            for test in self.signs[:-1]:
                test.update(new.metrics.get(test.name), values.get(test.name))
            return
        self.stable_requests += stable.total_requests
        self.stable_errors += stable.total_errors
        _add_paths(self.stable_paths, stable.path_counts(), self.path_order)
        new_ok, stable_ok = new.ok_latencies(), stable.ok_latencies()
        for tail in self.tails:
            tail.update(new_ok, stable_ok)
        for test in self.signs[:-1]:
            test.update(new.metrics.get(test.name), stable.metrics.get(test.name))
        self.signs[-1].update(new.latency_mean_ms, stable.latency_mean_ms)

    def results(self) -> list[MetricResult]:
        """Every test's result; alpha is split: an eighth to the absolute error limit, an eighth
        to the excess over stable, an eighth to 4xx per path, half to latency (split over the
        quantiles: latency needs the evidence, errors on loopback have plenty), an eighth to
        interval metrics."""
        p, a = self.policy, self.alpha
        if p.kind == "rollback":
            return self._rollback_results()
        stable_rate = self.stable_errors / self.stable_requests if self.stable_requests else None
        out = [
            error_limit(self.new_errors, self.new_requests, stable_rate, p.max_error_rate, a / 8),
            rate_excess(
                "error rate vs stable",
                "error rate",
                (self.new_errors, self.new_requests),
                (self.stable_errors, self.stable_requests),
                p.error_tolerance,
                a / 8,
            ),
        ]
        out += self._client_errors(a / 8)
        out += [tail.result(a / 2 / len(self.tails)) for tail in self.tails]
        signs = [s for s in self.signs if s.compared or s.missing]
        out += [s.result(a / 8 / len(self.signs)) for s in signs]
        return out

    def _client_errors(self, alpha: float) -> list[MetricResult]:
        """4xx per path against stable's 4xx on that path; path i (in order of first
        appearance) gets alpha * 6 / (pi^2 i^2), so any number of paths shares alpha."""
        out = []
        for i, path in enumerate(self.path_order, start=1):
            new = self.new_paths.get(path, PathCounts())
            base = self.stable_paths.get(path, PathCounts())
            if not new.client_errors or not base.requests:
                continue
            result = rate_excess(
                f"4xx {path}",
                f"4xx on {path}",
                (new.client_errors, new.requests),
                (base.client_errors, base.requests),
                self.policy.error_tolerance,
                alpha * 6 / (math.pi**2 * i**2),
            )
            out.append(result)
        return out

    def _rollback_results(self) -> list[MetricResult]:
        import numpy as np

        p, a, ref = self.policy, self.alpha, self.policy.reference
        out = [error_limit(self.new_errors, self.new_requests, None, p.max_error_rate, a / 4)]
        if ref is None:
            return out
        out.append(
            rate_excess(
                "error rate vs reference",
                "error rate",
                (self.new_errors, self.new_requests),
                (ref.errors, ref.requests),
                p.error_tolerance,
                a / 4,
                base_label="its verification",
            )
        )
        values = np.concatenate(self.new_latency) if self.new_latency else np.zeros(0)
        quantiles = [q for q in p.quantiles if q in ref.quantiles_ms]
        for q in quantiles:
            out.append(
                quantile_vs_reference(
                    values,
                    q,
                    ref.quantiles_ms[q],
                    p.latency_tolerance,
                    p.latency_slack_ms,
                    a / 4 / len(quantiles),
                )
            )
        signs = [s for s in self.signs[:-1] if s.compared]
        out += [s.result(a / 4 / max(1, len(signs)), "its verification") for s in signs]
        return out

    def shortfall(self) -> str | None:
        """Why the evidence cannot pass yet (too few samples, a critical metric without data)."""
        p = self.policy
        if self.new_requests < p.min_samples:
            return (
                f"only {self.new_requests} requests on the new release, fewer than "
                f"min_samples {p.min_samples}"
            )
        if p.kind != "rollback" and self.stable_requests < p.min_samples:
            return (
                f"only {self.stable_requests} requests on the stable release, fewer than "
                f"min_samples {p.min_samples}: no claim of 'no worse than stable'"
            )
        for test in self.signs[:-1]:
            if test.critical and test.missing:
                return f"critical metric {test.name} has no data on {test.missing}"
        return None


def _add_paths(into: dict[str, PathCounts], counts: dict[str, PathCounts], order: list[str]):
    for path, c in counts.items():
        if path not in into:
            into[path] = PathCounts()
            if path not in order:
                order.append(path)
        seen = into[path]
        into[path] = PathCounts(seen.requests + c.requests, seen.client_errors + c.client_errors)


class Analysis:
    """One analysis run (a step, a verification, a bake, a rollback verification)."""

    def __init__(self, policy: JudgePolicy | None = None):
        self.policy = policy or JudgePolicy()
        self.start_s: float | None = None
        self.end_s = 0.0
        self.updates = 0
        self.windows: dict[int, Evidence] = {}  # bake: window index -> its evidence
        self.closed_short: str | None = None  # bake: a closed window without enough samples
        self.failed: Verdict | None = None
        self.whole: Evidence | None = None
        self.verdict: Verdict | None = None

    def update(self, new: Observations, stable: Observations | None = None) -> Verdict:
        p = self.policy
        if p.kind == "rollback" and stable is not None:
            raise ValueError(
                "a rollback target is judged against its own verified figures "
                "(JudgePolicy.reference), never against the release being left: pass no stable"
            )
        if p.kind != "rollback" and stable is None:
            raise ValueError(f"a {p.kind} analysis compares with the stable release: pass stable")
        if self.start_s is None:
            self.start_s = new.start_s
            self.whole = Evidence(p, p.alpha, new.start_s)
        self.updates += 1
        self.end_s = max(self.end_s, new.end_s)
        if self.failed is not None:  # a rejection stands: evidence is never taken back
            return self.failed
        broken = [o.error for o in (new, stable) if o is not None and o.error]
        if broken:
            self.verdict = self._verdict(
                Outcome.ERROR, "metric source failed: " + "; ".join(broken), self._main()
            )
            return self.verdict
        if p.kind == "bake":
            return self._bake(new, stable)
        self.whole.add(new, stable)
        self.verdict = self._judge(self.whole, "")
        if self.verdict.outcome is Outcome.FAILED:
            self.failed = self.verdict
        return self.verdict

    def _main(self) -> Evidence:
        if self.policy.kind == "bake" and self.windows:
            return self.windows[max(self.windows)]
        return self.whole

    def _judge(self, evidence: Evidence, where: str) -> Verdict:
        results = evidence.results()
        failed = [r for r in results if r.decided and r.critical]
        notes = [r.reason for r in results if r.decided and not r.critical]
        if failed:
            more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
            return self._verdict(
                Outcome.FAILED, where + failed[0].reason + more, evidence, results, notes
            )
        short = evidence.shortfall() or (self.closed_short if self.policy.kind == "bake" else None)
        if short:
            return self._verdict(Outcome.INCONCLUSIVE, where + short, evidence, results, notes)
        return self._verdict(Outcome.SUCCESSFUL, _summary(results), evidence, results, notes)

    def _verdict(self, outcome, reason, evidence, results=None, notes=None) -> Verdict:
        whole = self.whole
        return Verdict(
            outcome=outcome,
            reason=reason,
            kind=self.policy.kind,
            metrics=results if results is not None else evidence.results(),
            new_requests=whole.new_requests,
            new_errors=whole.new_errors,
            stable_requests=whole.stable_requests,
            stable_errors=whole.stable_errors,
            intervals=self.updates,
            elapsed_s=round(self.end_s - (self.start_s or 0.0), 3),
            notes=notes or [],
        )

    def _bake(self, new: Observations, stable: Observations) -> Verdict:
        p = self.policy
        self.whole.new_requests += new.total_requests
        self.whole.new_errors += new.total_errors
        self.whole.stable_requests += stable.total_requests
        self.whole.stable_errors += stable.total_errors
        half = p.window_s / 2
        at = new.start_s - self.start_s
        current = max(0, int(math.floor(at / half + 1e-9)))
        for index in (current - 1, current):
            if index >= 0 and index not in self.windows:
                self.windows[index] = Evidence(p, self._window_alpha(index), self.start_s)
        for index in sorted(self.windows):
            if index * half + p.window_s <= at:  # this window is over: keep only its shortfall
                short = self.windows.pop(index).shortfall()
                if short and self.closed_short is None:
                    end = index * half + p.window_s
                    self.closed_short = f"window {index * half:.0f}-{end:.0f} s: {short}"
        verdict = None
        for index in sorted(self.windows):
            self.windows[index].add(new, stable)
            start = index * half
            judged = self._judge(
                self.windows[index], f"window {start:.0f}-{start + p.window_s:.0f} s: "
            )
            if judged.outcome is Outcome.FAILED:
                self.failed = self.verdict = judged
                return judged
            verdict = verdict or judged
        # Successful or Inconclusive is about the whole bake so far, not one window
        short = self.closed_short or self.whole.shortfall()
        if short:
            verdict = verdict.model_copy(update={"outcome": Outcome.INCONCLUSIVE, "reason": short})
        self.verdict = verdict
        return verdict

    def _window_alpha(self, index: int) -> float:
        """Alpha of bake window ``index``: alpha / (N + 1) for each of the N planned windows,
        and the last share halved for each window past the horizon (the sum stays <= alpha)."""
        planned = self.policy.windows()
        share = self.policy.alpha / (planned + 1)
        return share if index < planned else share * 0.5 ** (index - planned + 1)


def _summary(results: list[MetricResult]) -> str:
    parts = []
    for r in results:
        if r.name == "error rate":
            parts.append(
                f"errors {pct(r.new)} vs stable {pct(r.stable or 0)}"
                if r.stable is not None
                else f"errors {pct(r.new)}"
            )
        elif r.name.endswith("latency") and r.new is not None and r.stable:
            parts.append(f"{r.name.split()[0]} {signed_pct(r.new / r.stable - 1)}")
    return "no regression shown: " + ", ".join(parts) if parts else "no regression shown"

"""The sequential tests, each giving a MetricResult from the evidence so far.

- Error rates: anytime-valid bounds (tasks/judge/bounds.py) on the new release's rate against
  the absolute limit, and on the excess over the stable release's rate (the new release's
  lower bound minus the stable release's upper bound, alpha split between them).
- Latency (``TailShift``): a stratified exceedance test per quantile. In every interval the new
  release's latencies, divided by (1 + tolerance) after the slack, are pooled with the stable
  release's from the same interval; the count of new requests above the pool's p-quantile is
  hypergeometric when both sides are exchangeable within the interval (whatever the machine
  did in that interval: contention slows both). Each interval's likelihood ratio for an odds
  ratio psi > 1 has expectation 1 under that null, and <= 1 when the new release is faster, so
  the product over intervals, mixed over a grid of psi, is a test martingale (Ville: P(ever
  >= 1/alpha) <= alpha). Inverted over a grid of ratios it gives the lower bound of the shift.
  Each interval's e-value e is bounded to min(cap, 0.2 + 0.8 e) (cap 3 by default): still an
  e-value (a mix with 1, then a minimum), so the product stays a test supermartingale, and one
  interval where the machine descheduled one side moves the log-evidence by at most log 3
  (against log(1/alpha) ~ 6 needed) while a good interval takes back up to log 5.
- Interval metrics (``SignTest``): one value per interval per side (service metrics from
  Prometheus, a router's mean latency). Under "no worse than stable" the new value is worse
  beyond tolerance in at most half the intervals; a Bernoulli(1/2) bound on the count of worse
  intervals decides.
"""

from __future__ import annotations

import math

import numpy as np

from prefect_delivery.tasks.judge import bounds
from prefect_delivery.tasks.judge.verdict import MetricResult, level, pct, signed_pct

PSI = np.array([1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0])
LOG_PSI = np.log(PSI)
RATIO_STEPS = np.arange(-4, 17)  # the shift grid: (1 + tolerance) * 1.05**k
BET = 0.8  # with a cap: each interval's e-value e becomes min(cap, 1 - BET + BET * e)


def error_limit(errors: int, requests: int, stable: float | None, limit: float, alpha: float):
    """The new release's error rate against an absolute limit."""
    rate = errors / requests if requests else 0.0
    decided = bounds.rejects(errors, requests, max(limit, 1e-9), alpha, "greater")
    low = bounds.lower_bound(errors, requests, alpha)
    versus = f" vs stable {pct(stable)}" if stable is not None else ""
    verb = ">" if decided else "<="
    return MetricResult(
        name="error rate",
        new=rate,
        stable=stable,
        bound=low,
        bound_kind="lower bound of the error rate",
        confidence=1 - alpha,
        tolerance=limit,
        decided=decided,
        reason=f"error rate {pct(rate)}{versus} ({errors}/{requests}), {level(1 - alpha)} "
        f"lower bound {pct(low)} {verb} limit {pct(limit, 0)}",
    )


def rate_excess(
    name: str,
    label: str,
    new: tuple[int, int],
    base: tuple[int, int],
    tolerance: float,
    alpha: float,
    base_label: str = "stable",
):
    """The new rate's excess over a baseline rate (both observed): lower bound of the new rate
    at alpha/2 minus the upper bound of the baseline's at alpha/2."""
    (s_new, n_new), (s_base, n_base) = new, base
    rate_new = s_new / n_new if n_new else 0.0
    rate_base = s_base / n_base if n_base else 0.0
    if not n_new or not n_base:
        return MetricResult(
            name=name,
            new=rate_new,
            stable=rate_base,
            confidence=1 - alpha,
            tolerance=tolerance,
            reason=f"{label}: no {base_label if not n_base else 'new'} requests to compare",
        )
    excess = bounds.lower_bound(s_new, n_new, alpha / 2) - bounds.upper_bound(
        s_base, n_base, alpha / 2
    )
    decided = excess > tolerance
    verb = ">" if decided else "<="
    return MetricResult(
        name=name,
        new=rate_new,
        stable=rate_base,
        bound=excess,
        bound_kind=f"lower bound of the excess over {base_label}",
        confidence=1 - alpha,
        tolerance=tolerance,
        decided=decided,
        reason=f"{label} {pct(rate_new)} ({s_new}/{n_new}) vs {base_label} {pct(rate_base)} "
        f"({s_base}/{n_base}), {level(1 - alpha)} lower bound of the excess "
        f"{excess * 100:+.1f} pp {verb} tolerance {tolerance * 100:.1f} pp",
    )


def _lse(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(sum(exp(values))) along an axis (scipy's logsumexp costs more than the sum here)."""
    top = np.max(values, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.sum(np.exp(values - top), axis=axis)) + np.squeeze(top, axis=axis)


_LOG_FACTORIAL = np.zeros(1)


def _log_factorial(upto: int) -> np.ndarray:
    """log(k!) for k = 0..upto (a table that grows as needed)."""
    global _LOG_FACTORIAL
    if len(_LOG_FACTORIAL) <= upto:
        size = max(upto + 1, 2 * len(_LOG_FACTORIAL))
        _LOG_FACTORIAL = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, size)))])
    return _LOG_FACTORIAL


def _log_mgf_hypergeom(total: int, drawn_new: int, exceed: int) -> np.ndarray:
    """log E[psi^X] for X ~ Hypergeometric(total, drawn_new, exceed), for each psi in PSI."""
    lf = _log_factorial(total)
    n_old = total - drawn_new
    lo, hi = max(0, exceed - n_old), min(drawn_new, exceed)
    j = np.arange(lo, hi + 1)
    logpmf = (
        lf[drawn_new]
        - lf[j]
        - lf[drawn_new - j]
        + lf[n_old]
        - lf[exceed - j]
        - lf[n_old - exceed + j]
        - lf[total]
        + lf[exceed]
        + lf[total - exceed]
    )
    return _lse(logpmf[None, :] + LOG_PSI[:, None] * j[None, :], axis=1)


class TailShift:
    """Is the new release's p-quantile more than (1 + tolerance) times stable's (+ slack)?"""

    def __init__(self, p: float, tolerance: float, slack_ms: float, cap: float | None = None):
        self.p = p
        self.tolerance = tolerance
        self.slack = slack_ms
        self.log_cap = math.log(cap) if cap else math.inf
        self.ratios = (1 + tolerance) * 1.05 ** RATIO_STEPS.astype(float)
        self.decision = int(np.nonzero(RATIO_STEPS == 0)[0][0])
        self.log_products = np.zeros((len(self.ratios), len(PSI)))  # per ratio, per psi
        self.log_value = np.zeros(len(self.ratios))  # the (capped) mixture, per ratio
        self.new: list[np.ndarray] = []
        self.stable: list[np.ndarray] = []

    def update(self, new: np.ndarray, stable: np.ndarray) -> None:
        if len(new):
            self.new.append(new)
        if len(stable):
            self.stable.append(stable)
        if not len(new) or not len(stable):
            return
        total = len(new) + len(stable)
        rank = max(1, math.ceil(self.p * total))
        scaled = (new[None, :] - self.slack) / self.ratios[:, None]
        pooled = np.concatenate(
            [scaled, np.broadcast_to(stable, (len(self.ratios), len(stable)))], 1
        )
        tau = np.partition(pooled, rank - 1, axis=1)[:, rank - 1 : rank]
        exceeds = (pooled > tau).sum(axis=1)
        news = (scaled > tau).sum(axis=1)
        for i in range(len(self.ratios)):
            exceed, k = int(exceeds[i]), int(news[i])
            if exceed == 0 or exceed == total:
                continue
            log_lr = k * LOG_PSI - _log_mgf_hypergeom(total, len(new), exceed)
            prior = _lse(self.log_products[i])
            step = _lse(self.log_products[i] + log_lr) - prior
            self.log_products[i] += log_lr
            if math.isfinite(self.log_cap):  # bounded: a bet of BET of the wealth, capped
                step = math.log1p(BET * math.expm1(min(step, 50.0)))
            self.log_value[i] += min(step, self.log_cap)

    def quantile(self, values: list[np.ndarray]) -> float | None:
        if not values:
            return None
        return float(np.quantile(np.concatenate(values), self.p))

    def result(self, alpha: float, base_label: str = "stable") -> MetricResult:
        name = f"p{self.p * 100:g} latency"
        q_new, q_stable = self.quantile(self.new), self.quantile(self.stable)
        threshold = math.log(1 / alpha)
        rejected = self.log_value >= threshold
        bound = None
        if rejected[0]:
            first_kept = np.nonzero(~rejected)[0]
            last = (first_kept[0] - 1) if len(first_kept) else len(self.ratios) - 1
            bound = float(self.ratios[last] - 1)
        decided = bool(rejected[: self.decision + 1].all())
        slack = f" + {self.slack:g} ms" if self.slack else ""
        if q_new is None or q_stable is None:
            reason = f"p{self.p * 100:g}: no latencies on {'new' if q_new is None else base_label}"
            shift = None
        else:
            shift = q_new / q_stable - 1 if q_stable > 0 else math.inf
            shown = (
                f"{level(1 - alpha)} bound {signed_pct(bound)}"
                if bound is not None
                else "no shift shown"
            )
            reason = (
                f"p{self.p * 100:g} {signed_pct(shift)} vs {base_label} ({q_new:.1f} ms vs "
                f"{q_stable:.1f} ms), {shown}, tolerance {self.tolerance * 100:.0f} %{slack}"
            )
        return MetricResult(
            name=name,
            new=q_new,
            stable=q_stable,
            bound=bound,
            bound_kind=f"lower bound of the p{self.p * 100:g} shift vs {base_label}",
            confidence=1 - alpha,
            tolerance=self.tolerance,
            decided=decided,
            reason=reason,
        )


class SignTest:
    """An interval metric (one value per interval per side), judged against stable."""

    def __init__(self, name: str, bad: str, tolerance: float, critical: bool):
        self.name, self.bad, self.tolerance, self.critical = name, bad, tolerance, critical
        self.worse = self.compared = self.new_only = self.base_only = 0
        self.new_values: list[float] = []
        self.base_values: list[float] = []

    def update(self, new: float | None, base: float | None) -> None:
        if new is None or base is None or not (math.isfinite(new) and math.isfinite(base)):
            self.new_only += new is not None and base is None
            self.base_only += base is not None and new is None
            return
        self.compared += 1
        self.new_values.append(new)
        self.base_values.append(base)
        if self.bad == "higher":
            self.worse += new > base * (1 + self.tolerance) if base >= 0 else new > base
        else:
            self.worse += new < base * (1 - self.tolerance) if base >= 0 else new < base

    @property
    def missing(self) -> str | None:
        if self.compared:
            return None
        if self.new_only:
            return "stable"
        if self.base_only:
            return "new"
        return None

    def result(self, alpha: float, base_label: str = "stable") -> MetricResult:
        # few intervals, far from 1/2 when it matters: a uniform prior on the share of worse
        decided = bounds.rejects(self.worse, self.compared, 0.5, alpha, "greater", (1.0,))
        new = float(np.mean(self.new_values)) if self.new_values else None
        base = float(np.mean(self.base_values)) if self.base_values else None
        if self.missing:
            reason = f"{self.name}: no data on {self.missing} ({base_label} hides nothing)"
        elif not self.compared:
            reason = f"{self.name}: no data"
        else:
            reason = (
                f"{self.name} {new:.4g} vs {base_label} {base:.4g} ({self.bad} is bad): worse "
                f"beyond {self.tolerance * 100:.0f} % in {self.worse} of {self.compared} "
                f"intervals, {'shown' if decided else 'not shown'} at {level(1 - alpha)}"
            )
        return MetricResult(
            name=self.name,
            new=new,
            stable=base,
            bound=bounds.lower_bound(self.worse, self.compared, alpha) if self.compared else None,
            bound_kind="lower bound of the share of worse intervals (1/2 under no change)",
            confidence=1 - alpha,
            tolerance=self.tolerance,
            decided=decided,
            critical=self.critical,
            reason=reason,
        )


def quantile_vs_reference(
    values: np.ndarray, p: float, reference_ms: float, tolerance: float, slack: float, alpha: float
) -> MetricResult:
    """Rollback target: its p-quantile now against the figure recorded at its verification
    (one-sample quantile confidence sequence)."""
    limit = reference_ms * (1 + tolerance) + slack
    low, _ = bounds.quantile_bounds(values, p, alpha) if len(values) else (None, None)
    q = float(np.quantile(values, p)) if len(values) else None
    decided = low is not None and low > limit
    shown = f"{level(1 - alpha)} lower bound {low:.1f} ms" if low is not None else "no bound yet"
    now = f"{q:.1f} ms" if q is not None else "n/a"
    return MetricResult(
        name=f"p{p * 100:g} latency",
        new=q,
        stable=reference_ms,
        bound=low,
        bound_kind="lower bound of the quantile (ms)",
        confidence=1 - alpha,
        tolerance=tolerance,
        decided=decided,
        reason=f"p{p * 100:g} {now} vs {reference_ms:.1f} ms at its verification, {shown} "
        f"{'>' if decided else '<='} limit {limit:.1f} ms (+{tolerance * 100:.0f} %)",
    )

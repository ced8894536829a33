"""Anytime-valid bounds for a Bernoulli rate: one building block for every test of the judge.

A stream of 0/1 outcomes (a request failed or not; a latency fell below a candidate quantile
or not) with success count ``s`` after ``n`` outcomes. To test H0 "the rate is at most p0" we
use Robbins' mixture martingale: the likelihood ratio of a rate q against p0, averaged over q
drawn from a Beta prior truncated to q >= p0. For every rate p <= p0 each factor of that ratio
has expectation <= 1, so the mixture is a nonnegative supermartingale under H0 and Ville's
inequality gives P(the mixture ever reaches 1/alpha) <= alpha: the test may be looked at after
every request or every interval, as often as the caller likes, and stopping at the first
rejection keeps the false-rejection probability below alpha. The mirror test (H0 "rate >= p0")
uses q <= p0. Inverting the tests over p0 gives one-sided confidence sequences; inverting them
over a quantile's rank gives the quantile confidence sequence of Howard and Ramdas (order
statistics at ranks from a Bernoulli(p) boundary).

The prior is a mixture of four Beta priors centred on p0 with prior sample sizes 4, 32, 256
and 2048, so the bound is close to the best single choice from a few dozen to a few hundred
thousand outcomes (the mixture costs at most log 4 of evidence). ``tests/unit/analysis``
checks the coverage of these bounds by simulation, looked at every step.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

SCALES = (4.0, 32.0, 256.0, 2048.0)


def _prior(p0: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    return scale * p0 + 0.5, scale * (1 - p0) + 0.5


def log_evidence(s, n, p0, side: str, scales: tuple[float, ...] = SCALES) -> np.ndarray:
    """Log of the mixture martingale against H0 rate <= p0 (side 'greater') or >= p0 ('less').

    Vectorised over s, n, p0 (broadcast). 0 < p0 < 1; 0 <= s <= n. ``scales``: the prior
    sample sizes of the mixture (a few outcomes far from p0 need a small one, e.g. 1)."""
    s = np.asarray(s, dtype=float)
    n = np.asarray(n, dtype=float)
    p0 = np.clip(np.asarray(p0, dtype=float), 1e-12, 1 - 1e-12)
    s, n, p0 = np.broadcast_arrays(s, n, p0)
    f = n - s
    null = s * np.log(p0) + f * np.log1p(-p0)
    tail = special.betaincc if side == "greater" else special.betainc
    terms = []
    with np.errstate(divide="ignore"):
        for scale in scales:
            a, b = _prior(p0, scale)
            terms.append(
                special.betaln(a + s, b + f)
                - special.betaln(a, b)
                + np.log(tail(a + s, b + f, p0))
                - np.log(tail(a, b, p0))
            )
        stacked = np.stack(terms)
        top = np.max(stacked, axis=0)
        top = np.where(np.isfinite(top), top, 0.0)
        total = np.log(np.sum(np.exp(stacked - top), axis=0))  # -inf where no prior mass fits
    return total + top - math.log(len(scales)) - null


def rejects(s, n, p0, alpha: float, side: str, scales: tuple[float, ...] = SCALES) -> bool:
    """True when H0 (rate <= p0 for 'greater', rate >= p0 for 'less') is rejected at alpha."""
    if n <= 0:
        return False
    return bool(log_evidence(s, n, p0, side, scales) >= math.log(1 / alpha))


def lower_bound(s: int, n: int, alpha: float) -> float:
    """Anytime-valid lower confidence bound (1 - alpha) for the rate, from s of n."""
    if n <= 0 or s <= 0:
        return 0.0
    threshold = math.log(1 / alpha)
    lo, hi = 0.0, s / n
    if log_evidence(s, n, hi * (1 - 1e-9), "greater") >= threshold:
        return hi
    for _ in range(3):  # the rejected rates are those below the bound: refine on a grid
        grid = np.linspace(lo, hi, 34)[1:-1]
        rejected = np.nonzero(log_evidence(s, n, grid, "greater") >= threshold)[0]
        if not len(rejected):
            hi = float(grid[0])
            continue
        last = int(rejected.max())
        lo = float(grid[last])
        hi = float(grid[last + 1]) if last + 1 < len(grid) else hi
    return lo


def upper_bound(s: int, n: int, alpha: float) -> float:
    """Anytime-valid upper confidence bound (1 - alpha) for the rate, from s of n."""
    if n <= 0:
        return 1.0
    if s >= n:
        return 1.0
    return 1.0 - lower_bound(n - s, n, alpha)


def quantile_ranks(n: int, p: float, alpha: float) -> tuple[int | None, int | None]:
    """1-based ranks (k, j) so that x_(k) and x_(j) of n i.i.d. samples are anytime-valid lower
    and upper (1 - alpha) bounds of the p-quantile; None where n is too small for a bound.

    Lower: x_(k) > q means fewer than k samples fell at or below q, whose count is
    Bernoulli(>= p): the 'less' test rejects for every count <= k - 1. Upper: x_(j) < q means at
    least j samples fell strictly below q, whose count is Bernoulli(<= p): the 'greater' test
    rejects for every count >= j."""
    if n <= 0:
        return None, None
    counts = np.arange(n + 1)
    threshold = math.log(1 / alpha)
    low = log_evidence(counts, n, p, "less") >= threshold
    high = log_evidence(counts, n, p, "greater") >= threshold
    k = int(np.nonzero(low)[0].max()) + 1 if low[0] else None
    j = int(np.nonzero(high)[0].min()) if high[-1] else None
    if k is not None and k > n:
        k = None
    if j is not None and (j < 1 or j > n):
        j = None
    return k, j


def quantile_bounds(
    values: np.ndarray, p: float, alpha: float
) -> tuple[float | None, float | None]:
    """Anytime-valid (1 - alpha) lower and upper bounds of the p-quantile of the values."""
    ordered = np.sort(np.asarray(values, dtype=float))
    k, j = quantile_ranks(len(ordered), p, alpha)
    return (
        float(ordered[k - 1]) if k is not None else None,
        float(ordered[j - 1]) if j is not None else None,
    )

"""The judge: one engine for every automatic decision (canary steps, verification, the bake,
rollback verification). Pure: numpy, scipy and pydantic; no I/O, no clock.

    from prefect_delivery.tasks.judge import Analysis, JudgePolicy, Observations
    analysis = Analysis(JudgePolicy(kind="step"))
    verdict = analysis.update(new_observations, stable_observations)  # every interval

Modules: ``bounds`` (anytime-valid Bernoulli bounds), ``evidence`` (the tests),
``observations``, ``policy``, ``verdict``, ``analysis`` (the stateful judge).
"""

from prefect_delivery.tasks.judge.analysis import Analysis
from prefect_delivery.tasks.judge.observations import Observations, PathCounts
from prefect_delivery.tasks.judge.policy import JudgePolicy, ReferenceFigures, ServiceMetric
from prefect_delivery.tasks.judge.verdict import MetricResult, Outcome, Verdict

__all__ = [
    "Analysis",
    "JudgePolicy",
    "MetricResult",
    "Observations",
    "Outcome",
    "PathCounts",
    "ReferenceFigures",
    "ServiceMetric",
    "Verdict",
]

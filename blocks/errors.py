"""The kinds of failure the pipeline knows, and how each is treated.

- ``ConfigError``: bad input (a manifest, a block, a parameter). Raised before anything live
  changes; the message names where, what and how to fix it. Never retried.
- ``InfrastructureError``: a fault of the machinery (network, registry, a process or container
  that did not start, a socket that did not answer). Stage tasks retry these with backoff.
- ``VerdictError``: the pipeline judged the release (a failing test, a failed verification, a
  rejected approval). A verdict is never retried away.
- ``InternalError``: a fault of prefect-delivery's own code (a bug), never the user's input:
  said as such, with where to look (the run's logs, a traceback file). Never retried.

Tasks decide whether to retry with :func:`is_retryable`, so the rule lives in one place.
"""

from __future__ import annotations

from typing import Any

#: The most an error message quotes of something else's output (an instance's log tail).
MAX_QUOTE = 2000


class DeliveryError(Exception):
    """Base class of every error this project raises on purpose. Its message is masked: a
    secret value the process knows (blocks/secrets.py) never leaves in an error, a state
    message, a ledger line or an event built from it."""

    def __init__(self, *args: object):
        from prefect_delivery.blocks.secrets import mask

        super().__init__(*(mask(a) if isinstance(a, str) else a for a in args))


def quoted(text: str, limit: int = MAX_QUOTE) -> str:
    """Output of something else (an instance's log) as an error quotes it: masked, bounded."""
    from prefect_delivery.blocks.secrets import mask

    cleaned = mask(text)
    return cleaned if len(cleaned) <= limit else "[...] " + cleaned[-limit:]


class ConfigError(DeliveryError):
    """Bad input, reported as: where, what is wrong, and how to fix it."""

    def __init__(self, where: str, problem: str, fix: str | None = None):
        from prefect_delivery.blocks.secrets import mask

        self.where = mask(where)
        self.problem = mask(problem)
        self.fix = mask(fix) if fix else fix
        text = f"{where}: {problem}"
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


class InfrastructureError(DeliveryError):
    """A transient fault of the machinery; worth a retry."""


class VerdictError(DeliveryError):
    """The release was judged and failed a gate; never retried."""


class InternalError(DeliveryError):
    """A fault of prefect-delivery's own code, not of the input nor of the machinery."""

    @classmethod
    def of(cls, exc: BaseException, where: str) -> InternalError:
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        return cls(
            f"internal error in prefect-delivery (a bug, not your input): {detail}. Where to "
            f"look: {where}; please report it with that traceback."
        )


class GateFailed(VerdictError):
    """A named gate (tests, verification, approval, analysis) said no."""

    def __init__(self, gate: str, reason: str, details: dict[str, Any] | None = None):
        from prefect_delivery.blocks.secrets import mask

        self.gate = gate
        self.reason = mask(reason)
        self.details = details or {}
        super().__init__(f"{gate} failed: {reason}")


def is_retryable(exc: BaseException | None) -> bool:
    """Only infrastructure faults (and plain OS/network errors) deserve a retry."""
    if exc is None:
        return False
    if isinstance(exc, (ConfigError, VerdictError)):
        return False
    if isinstance(exc, InfrastructureError):
        return True
    # Connection resets, timeouts and refused sockets surface as OSError subclasses.
    return isinstance(exc, (ConnectionError, TimeoutError))

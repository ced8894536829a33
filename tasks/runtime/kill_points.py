"""Fault injection for crash tests: ``DELIVERY_KILL_AT=<point>`` SIGKILLs the process there.

The crash-safety tests kill a delivery at every stage boundary and in the middle of a canary
step, then re-run it and check that nothing was lost. Unset (always, outside those tests), a
kill point does nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "DELIVERY_KILL_AT"


def kill_point(name: str) -> None:
    """Die here, without any clean-up, when the tests ask for it."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)

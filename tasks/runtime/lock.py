"""One delivery per environment: a Prefect global concurrency limit with one slot per environment.

The slot is a lease on the Prefect server (``delivery-env-<name>``, limit 1), so it holds across
processes and workers; a second delivery waits for it (default) or is refused with a clear
message. The lease is renewed in the background while the holder works.

A holder killed with SIGKILL cannot release its lease; the server would only reclaim it when it
expires (a minute or more). A local ``flock`` beside the environment's state, which the kernel
releases when the holder dies, tells the next holder on the same machine that the lease it
finds recorded there is stale, and it releases it at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from uuid import UUID

from prefect.client.orchestration import get_client

from prefect_delivery.blocks.errors import InfrastructureError
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.traffic import preempted_error, preemption, traffic_lock

LEASE_S = 60.0  # the server's minimum lease
POLL_S = 0.5


class SlotLost(InfrastructureError):
    """The environment's slot is no longer this run's (its lease could not be renewed and may
    be another delivery's now): no traffic change may follow."""


class _Held:
    def __init__(self, lease: UUID, state_dir: str):
        self.lease = lease
        self.state_dir = state_dir
        self.since = time.time()  # wall clock: compared with a rollback's preemption marker
        self.last_ok = time.monotonic()
        self.lost: str | None = None


#: Slots this process holds: environment name -> its lease.
_HELD: dict[str, _Held] = {}
_HELD_LOCK = threading.Lock()


def assert_not_preempted(environment: str) -> None:
    """A safe point: stop if a rollback preempted this process's hold on the environment."""
    with _HELD_LOCK:
        held = _HELD.get(environment)
    if held is None:
        return
    marker = preemption(held.state_dir, environment, held.since)
    if marker is not None:
        raise preempted_error(environment, marker)


def assert_slot_held(environment: str) -> None:
    """Before a traffic change (under the traffic lock): stop if a rollback preempted this
    delivery; renew this process's lease on the environment's slot now, and if the lease is
    gone (expired, released, taken), stop with the reason. A caller that holds no slot (a
    test calling a task directly, a read-only command) is not checked."""
    assert_not_preempted(environment)
    with _HELD_LOCK:
        held = _HELD.get(environment)
    if held is None:
        return
    if held.lost is None:
        try:
            with get_client(sync_client=True) as client:
                client.renew_concurrency_lease(held.lease, LEASE_S)
            held.last_ok = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - any failure: the lease is not ours for sure
            held.lost = f"renewing its lease failed ({type(exc).__name__}: {str(exc)[:160]})"
    if held.lost is not None:
        raise SlotLost(
            f"environment {environment!r}: this run no longer holds its delivery slot: "
            f"{held.lost}. Another delivery may hold it now, so this run stops before its next "
            "traffic change. Check `delivery status`, then deliver again."
        )


class EnvironmentBusy(InfrastructureError):
    """Another delivery holds the environment and the caller chose not to wait (a transient
    condition of the machinery: the same run later finds it free)."""


def limit_name(environment: str) -> str:
    return f"delivery-env-{environment}"


def _acquire_lease(client, name: str, holder: str) -> UUID | None:
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        response = client.increment_concurrency_slots_with_lease(
            names=[name],
            slots=1,
            mode="concurrency",
            lease_duration=LEASE_S,
            holder=ConcurrencyLeaseHolder(type="flow_run", id=UUID(holder))
            if _is_uuid(holder)
            else None,
        )
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 423:  # slots taken right now
            return None
        raise
    return UUID(response.json()["lease_id"])


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except (ValueError, TypeError):
        return False
    return True


@contextmanager
def environment_lock(
    environment: str,
    state_dir: str,
    holder: str,
    on_busy: Literal["wait", "refuse"] = "wait",
    timeout_s: float | None = None,
) -> Iterator[None]:
    """Hold the environment's single delivery slot for the duration of the block."""
    logger = run_logger()
    path = Path(state_dir) / "locks" / f"{environment}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held for the whole block
    started = time.monotonic()
    try:
        if not _flock(handle, wait=False, timeout_s=None):
            if on_busy == "refuse":
                raise EnvironmentBusy(
                    f"environment {environment!r} is being delivered by {_describe(path)}; "
                    "wait for it to finish, or run again without refusing (the default waits)."
                )
            logger.info(
                "%s is busy with another delivery (%s); waiting for it",
                environment,
                _describe(path),
            )
            if not _flock(handle, wait=True, timeout_s=timeout_s):
                raise EnvironmentBusy(
                    f"environment {environment!r} stayed busy for {timeout_s:.0f}s "
                    f"({_describe(path)})."
                )
        with get_client(sync_client=True) as client:
            name = limit_name(environment)
            client.upsert_global_concurrency_limit_by_name(name, 1)
            stale = _read(handle).get("lease_id")
            if stale:
                logger.warning(
                    "%s: the previous holder (%s) died holding the slot; releasing its lease",
                    environment,
                    _read(handle).get("holder"),
                )
                try:
                    client.release_concurrency_slots_with_lease(UUID(stale))
                except Exception:  # noqa: BLE001 - already expired or released
                    pass
            lease = _acquire_lease(client, name, holder)
            announced = False
            while lease is None:
                if on_busy == "refuse":
                    raise EnvironmentBusy(
                        f"environment {environment!r} is being delivered elsewhere (its Prefect "
                        f"concurrency limit {name!r} is taken); wait for it, or run again "
                        "without refusing."
                    )
                if timeout_s is not None and time.monotonic() - started > timeout_s:
                    raise EnvironmentBusy(
                        f"environment {environment!r} stayed busy for {timeout_s:.0f}s "
                        f"(concurrency limit {name!r})."
                    )
                if not announced:
                    logger.info("%s is busy with another delivery; waiting for it", environment)
                    announced = True
                time.sleep(POLL_S)
                lease = _acquire_lease(client, name, holder)
        _write(handle, {"lease_id": str(lease), "holder": holder, "pid": os.getpid()})
        waited = time.monotonic() - started
        if waited > 1:
            logger.info("%s: got the delivery slot after %.1fs", environment, waited)
        stop = threading.Event()
        held = _Held(lease, state_dir)
        with _HELD_LOCK:
            _HELD[environment] = held
        renewer = threading.Thread(target=_renew, args=(held, stop), daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(5)
            with _HELD_LOCK:
                if _HELD.get(environment) is held:
                    del _HELD[environment]
            with get_client(sync_client=True) as client:
                try:
                    client.release_concurrency_slots_with_lease(lease)
                except Exception as exc:  # noqa: BLE001 - it expires by itself
                    logger.warning("could not release the slot of %s: %s", environment, exc)
            _write(handle, {})
    finally:
        handle.close()  # also drops the flock


def _renew(held: _Held, stop: threading.Event) -> None:
    """Renew every third of the lease; a lease not renewed for a whole lease period has
    expired on the server (another delivery may have it): it is lost, said at the next
    traffic change."""
    while not stop.wait(LEASE_S / 3) and held.lost is None:
        try:
            with get_client(sync_client=True) as client:
                client.renew_concurrency_lease(held.lease, LEASE_S)
            held.last_ok = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - retried at the next tick, until too late
            if time.monotonic() - held.last_ok >= LEASE_S:
                held.lost = (
                    f"its lease was not renewed for {LEASE_S:.0f}s and has expired "
                    f"({type(exc).__name__}: {str(exc)[:160]})"
                )


def _flock(handle, wait: bool, timeout_s: float | None) -> bool:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if not wait or (deadline is not None and time.monotonic() > deadline):
                return False
            time.sleep(POLL_S)


def _read(handle) -> dict:
    handle.seek(0)
    try:
        return json.loads(handle.read() or "{}")
    except ValueError:
        return {}


def _write(handle, data: dict) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(data))
    handle.flush()
    os.fsync(handle.fileno())


def _describe(path: Path) -> str:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        data = {}
    holder = data.get("holder")
    return f"flow run {holder}" if holder else "another delivery"


@contextmanager
def traffic_change(environment: str, state_dir: str) -> Iterator[None]:
    """One traffic change: under the environment's traffic lock, after checking that this
    delivery was not preempted and still holds its slot."""
    with traffic_lock(state_dir, environment):
        assert_slot_held(environment)
        yield

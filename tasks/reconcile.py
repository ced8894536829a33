"""Reconciliation, decided from the live state alone (pure): who is stable, which weights to
restore, which leftovers to retire. The reconcile task (tasks/deploy.py) reads the live state
and carries the plan out."""

from __future__ import annotations

from pydantic import BaseModel

from prefect_delivery.blocks.live import LiveState
from prefect_delivery.tasks.strategies import weights_for_share


class ReconcilePlan(BaseModel):
    """What reconciliation decided (pure): who is stable, which weights to restore, what to stop."""

    stable_digest: str | None
    already_live: bool
    weights: dict[str, int]  # address -> weight to apply (empty when nothing to change)
    stop: list[str]  # instance ids to retire
    notes: list[str]


def decide_reconcile(
    live: LiveState, new_digest: str, verified: list[str], keep_warm: bool = False
) -> ReconcilePlan:
    """Decide from the live state alone how to start a deploy of ``new_digest``.

    ``verified`` lists the digests the ledger says passed verification here, newest first.
    The stable release is the newest verified release (other than the new one) that still
    runs here, serving or warm: what holds traffic proves nothing by itself. A release that
    holds traffic without being verified here is in flight (an interrupted rollout, whoever
    ran it): its traffic goes back to the stable release and it is retired, so the deploy
    starts from a clean, verified state. When no verified release runs, the traffic there is
    stays where it is (there is nothing better to send it to).
    ``keep_warm`` keeps the newest verified release other than the stable one running (the
    rollback flow needs it; a deploy does not).
    """
    notes: list[str] = []
    shares = live.shares()
    alive = [li for li in live.instances if li.instance.alive]
    dead = [li for li in live.instances if not li.instance.alive]
    stop = [li.instance.id for li in dead]
    for li in dead:
        notes.append(f"instance {li.instance.id} is gone (exited); forgetting it")

    new_share = shares.get(new_digest, 0.0)
    if new_share >= 99.999 and verified and verified[0] == new_digest:
        stray = [
            li.instance.id
            for li in alive
            if li.instance.release.digest != new_digest and li.weight == 0 and not keep_warm
        ]
        return ReconcilePlan(
            stable_digest=new_digest,
            already_live=True,
            weights={},
            stop=stop,
            notes=notes
            + [f"release {new_digest[:19]} is already live and verified here"]
            + ([f"{len(stray)} idle instance(s) kept warm"] if stray else []),
        )

    running = {li.instance.release.digest for li in alive}
    stable = next((d for d in verified if d in running and d != new_digest), None)
    if stable is not None and not shares.get(stable):
        notes.append(f"the stable release {stable[:19]} had no traffic; restoring it")
    for digest, share in shares.items():
        if digest not in (stable, new_digest) and digest not in verified and stable is not None:
            notes.append(
                f"release {digest[:19]} holds {share:.0f}% of traffic but was never verified "
                f"here (in flight); traffic back to {stable[:19]}"
            )
    if new_share:
        notes.append(
            f"new release already had {new_share:.0f}% of traffic (an interrupted run); "
            "taking it back before starting over"
        )

    weights: dict[str, int] = {}
    if stable is not None:
        stable_alive = [li for li in alive if li.instance.release.digest == stable]
        target = weights_for_share(100, len(stable_alive))
        for li, weight in zip(stable_alive, target, strict=True):
            if li.slot is not None and li.weight != weight:
                weights[li.instance.address] = weight
        for li in alive:
            if li.instance.release.digest != stable and li.slot is not None and li.weight:
                weights[li.instance.address] = 0
    warm = None
    if keep_warm:
        warm = next((d for d in verified if d != stable), None)
    for li in alive:
        digest = li.instance.release.digest
        if digest == stable or digest == warm:
            continue
        if stable is None and li.weight and digest != new_digest:
            continue  # never cut the only traffic there is
        stop.append(li.instance.id)
        notes.append(f"retiring {li.instance.id} ({li.instance.release.version}), not stable")
    return ReconcilePlan(
        stable_digest=stable, already_live=False, weights=weights, stop=stop, notes=notes
    )

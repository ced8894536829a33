"""LiveState: the join of what the router routes and what the target runs, at one moment."""

from __future__ import annotations

from pydantic import BaseModel

from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.blocks.routing import SlotState


class LiveInstance(BaseModel):
    instance: Instance
    slot: str | None = None  # backend slot holding it, None when not attached
    weight: int = 0
    router_status: str = "detached"


class LiveState(BaseModel):
    environment: str
    url: str
    router_running: bool
    instances: list[LiveInstance]
    unknown_servers: list[str] = []  # slots routing to an address no instance of ours holds

    def shares(self) -> dict[str, float]:
        """Traffic share (percent) per release digest, from live weights."""
        total = sum(li.weight for li in self.instances if li.instance.alive)
        result: dict[str, float] = {}
        if total == 0:
            return result
        for li in self.instances:
            if li.instance.alive and li.weight:
                digest = li.instance.release.digest
                result[digest] = result.get(digest, 0.0) + 100.0 * li.weight / total
        return result

    def releases(self) -> dict[str, Release]:
        return {li.instance.release.digest: li.instance.release for li in self.instances}

    def serving(self) -> Release | None:
        """The release with the largest share of traffic, or None when nothing is served."""
        shares = self.shares()
        if not shares:
            return None
        digest = max(shares, key=lambda d: shares[d])
        return self.releases()[digest]

    def of_release(self, digest: str) -> list[LiveInstance]:
        return [li for li in self.instances if li.instance.release.digest == digest]

    def attached(self) -> list[LiveInstance]:
        return [li for li in self.instances if li.slot is not None]

    @property
    def dead(self) -> list[LiveInstance]:
        return [li for li in self.instances if not li.instance.alive]


def join_live_state(
    environment: str,
    url: str,
    slots: list[SlotState],
    instances: list[Instance],
    router_running: bool,
) -> LiveState:
    by_address = {s.address: s for s in slots if s.in_use}
    live = []
    known = set()
    for instance in instances:
        server = by_address.get(instance.address)
        if server is not None:
            known.add(instance.address)
            live.append(
                LiveInstance(
                    instance=instance,
                    slot=server.name,
                    weight=server.weight,
                    router_status=server.status,
                )
            )
        else:
            live.append(LiveInstance(instance=instance))
    unknown = [f"{s.name}={s.address}" for s in slots if s.in_use and s.address not in known]
    return LiveState(
        environment=environment,
        url=url,
        router_running=router_running,
        instances=live,
        unknown_servers=unknown,
    )

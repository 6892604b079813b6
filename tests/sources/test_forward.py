"""The forwarder: the spool's deliveries to Kafka in order, the cursor moved only once a batch
is taken, retries while Kafka refuses, dead letters to their topic."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cs_pulse.sources.webhooks.forward import (
    Batch,
    Forwarder,
    dead_letter_record,
    events_record,
)
from cs_pulse.sources.webhooks.spool import Spool


class FlakySender:
    """Refuses the first ``failures`` sends (a broker away), records the rest."""

    def __init__(self, log: list[Batch], failures: int) -> None:
        self.log, self.failures = log, failures

    async def send(self, batch: Batch) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.log.append(batch)

    async def close(self) -> None:
        pass


async def test_forwarded_in_order_once_taken_and_retried_while_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, fsync=False)
    for i in range(5):
        await spool.append(events_record([{"event_id": f"e{i}"}]), i)
    await spool.append(dead_letter_record("chatwoot", "not an object", b"[1]"), 5)
    await spool.append(b"not json at all", 6)   # never written so; kept as a dead letter
    sent: list[Batch] = []
    connects = 0

    async def connect() -> FlakySender:
        nonlocal connects
        connects += 1
        if connects == 1:
            raise ConnectionError("no broker")       # Kafka down at start
        return FlakySender(sent, failures=1 if connects == 2 else 0)

    forwarder = Forwarder(spool, connect, batch=3, first_backoff=0.01)
    task = asyncio.create_task(forwarder.run())
    for _ in range(200):
        if not spool.depth:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert spool.depth == 0 and connects == 3 and forwarder.failures == 2
    assert [e["event_id"] for b in sent for e in b.events] == [f"e{i}" for i in range(5)]
    letters = [(body, dict(headers)["reason"]) for b in sent for body, headers in b.dead_letters]
    assert letters == [(b"[1]", b"webhook_malformed"),
                       (b"not json at all", b"webhook_spool_unreadable")]
    assert (forwarder.forwarded_deliveries, forwarder.forwarded_events,
            forwarder.dead_letters) == (7, 5, 2)
    spool.close()
    assert Spool(tmp_path, 1 << 20, fsync=False).depth == 0   # the cursor was kept

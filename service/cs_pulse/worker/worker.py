"""What a worker does around the engine: deliver each stage's output, flush state to the
changelog, catch up gaps, release idle partitions, watch for stalls. No Faust here: the Kafka
side is a ``Bus`` (``app.py`` wires Faust's to it; tests use an in-memory one), so every
guarantee below can be unit-tested without a broker.

Guarantees:

* A stage's output is delivered before the stage's lock is released, so a flush (which takes
  every lock) never persists a cursor past input whose output could still be lost.
* An idle release's markers are in the changelog before anything the release caused.
* A flush is a consistent cut of the three stages, cursors last (``Engine.take_changes``).
* Output or changelog writes that fail stop the process without flushing (``fail``): the
  restarted worker redoes the records from its last flush.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import NoReturn, Protocol

from cs_pulse.worker.engine import CUSTOMERS, EVENTS, FACTS, Change, Engine, Output, Record

log = logging.getLogger("cs_pulse")
SOURCES = (EVENTS, CUSTOMERS, FACTS)
EXIT_UNFLUSHED = 75   # EX_TEMPFAIL: restart me
# Looked at per partition by each sweep (every 10 s): 50,000 customers of a partition are
# gone through in 100 sweeps (17 minutes), 500 series in 10; a sweep costs ~4 ms per
# partition whatever the state's size.
SWEEP_CUSTOMERS = 500
SWEEP_SERIES = 50


class Bus(Protocol):
    """The Kafka side of a worker, per source (``EVENTS``, ``CUSTOMERS``, ``FACTS``)."""

    def active(self) -> bool:
        """False while the group rebalances (partitions may move)."""

    def assigned(self) -> dict[str, set[int]]:
        """Partitions of each source this worker owns now."""

    def read_offsets(self, source: str) -> dict[int, int | None]:
        """The last offset the consumer handed over, per owned partition."""

    def unread(self, source: str) -> set[int]:
        """Owned partitions with records past the last one handed over (as far as the
        consumer knows the log's end)."""

    async def persist(self, source: str, changes: Iterable[Change]) -> None:
        """Write changelog rows and return once the broker has them."""

    async def publish(self, out: Output) -> None:
        """Send facts, customer records and dead letters; return once all are delivered."""

    async def earliest(self, source: str, partition: int) -> int:
        """The oldest offset retention has kept."""

    def read(self, source: str, partition: int, offset: int) -> AsyncIterator[list[Record]]:
        """Chunks of one partition from ``offset`` to its end as of the call, with a reader of
        its own (a seek of the group's consumer races with records it already fetched)."""


def exit_unflushed(what: str, exc: BaseException) -> NoReturn:
    """The engine has moved past records whose output did not reach the broker: exit at once,
    without flushing, so that the restarted worker redoes them from its last flush. (Carrying
    on would persist a cursor past lost output; Faust would restart the agent and carry on.)"""
    log.critical("%s (%r): exiting; a restart resumes from the last flush", what, exc)
    logging.shutdown()
    os._exit(EXIT_UNFLUSHED)


class PauseGuard:
    """After this process was stopped (SIGSTOP, a VM freeze) for a third of the session
    timeout, it may no longer own its partitions: hold idle releases and flushes for one
    session timeout, until the group has told it. (A release there would number outputs
    differently from the new owner's; full fencing is a separate matter.)"""

    def __init__(self, session_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = max(2.0, session_timeout / 3)
        self.session_timeout = session_timeout
        self.clock = clock
        self.last = clock()
        self.hold_until = 0.0

    def tick(self) -> None:
        now = self.clock()
        if now - self.last > self.threshold:
            log.warning("paused for %.1f s: holding idle releases and flushes for %.0f s",
                        now - self.last, self.session_timeout)
            self.hold_until = now + self.session_timeout
        self.last = now

    def holding(self) -> bool:
        return self.clock() < self.hold_until

    def reset(self) -> None:
        """The group has just told this worker what it owns (an assignment, a recovery over):
        nothing before counts as a pause. Without this, a start or a recovery longer than the
        threshold (the loop does not tick meanwhile) held flushes for a whole session timeout
        after it, and a worker killed then had flushed nothing."""
        self.last = self.clock()
        self.hold_until = 0.0


class Worker:
    def __init__(self, engine: Engine, bus: Bus, session_timeout: float,
                 fail: Callable[[str, BaseException], NoReturn] = exit_unflushed,
                 clock: Callable[[], float] = time.monotonic,
                 hold_flushes: bool = True) -> None:
        self.engine = engine
        self.bus = bus
        self.fail = fail
        # One writer per stage; a flush takes all three locks for a consistent cut.
        self.locks = {source: asyncio.Lock() for source in SOURCES}
        self.flush_lock = asyncio.Lock()
        self.pause = PauseGuard(session_timeout, clock)
        self.hold_flushes = hold_flushes   # off only to test zombie fencing
        self.owned: dict[str, set[int]] | None = None   # None: not told yet (take everything)

    async def handle(self, source: str, records: Iterable[Record],
                     catching_up: bool = False) -> None:
        if self.owned is not None and not catching_up:
            # A batch fetched before a rebalance may hold partitions now owned by another
            # worker: their state must not come back here (a flush would write it).
            owned = self.owned[source]
            records = [r for r in records if r[0] in owned]
        async with self.locks[source]:
            if source == EVENTS:
                out = self.engine.on_events(records)
            elif source == CUSTOMERS:
                out = self.engine.on_customers(records)
            else:
                out = Output(rewinds=self.engine.on_facts(records))
            await self._deliver(out)
        if not catching_up:
            await self.catch_up(source, out.rewinds)

    async def _deliver(self, out: Output) -> None:
        try:
            if out.markers:   # an idle release is durable before anything it caused
                await self.bus.persist(EVENTS, out.markers)
            await self.bus.publish(out)
        except Exception as exc:
            self.fail("output not delivered", exc)

    def _may_move(self) -> bool:
        """Partitions are not moving and this process was not just paused."""
        return self.bus.active() and not self.pause.holding()

    async def flush(self) -> None:
        """Persist the state changed since the last flush, cursors last. Records processed
        but not yet flushed when a worker dies are re-read from the persisted cursor."""
        self.pause.tick()   # a flush that runs first after a pause must see it too
        async with self.flush_lock:
            if not self.bus.active() or (self.hold_flushes and self.pause.holding()):
                return
            async with self.locks[EVENTS], self.locks[CUSTOMERS], self.locks[FACTS]:
                rows = dict(zip(SOURCES, self.engine.take_changes(), strict=True))
            try:
                await asyncio.gather(*(self.bus.persist(s, r) for s, r in rows.items()))
            except Exception as exc:
                self.fail("changelog not written", exc)

    async def catch_up(self, source: str, gaps: dict[int, int]) -> None:
        """Read each gap from its offset to the partition's end, through the stage."""
        for partition, offset in gaps.items():
            earliest = await self.bus.earliest(source, partition)
            if offset < earliest:
                log.error("%s %s: offsets %s..%s deleted before being processed", source,
                          partition, offset, earliest - 1)
                self.engine.skip_to(source, partition, earliest)
                offset = earliest
            log.warning("catching up %s %s from offset %s", source, partition, offset)
            async for chunk in self.bus.read(source, partition, offset):
                await self.handle(source, chunk, catching_up=True)

    async def release_idle(self) -> None:
        """Events partitions quiet for the grace period take effect up to their newest time,
        and their conversations past the event clock expire; a partition with records still
        to read is not quiet, only slow: its release carries no clock."""
        self.pause.tick()
        if not self._may_move():
            return
        async with self.locks[EVENTS]:
            await self._deliver(self.engine.release_idle(unclocked=self.bus.unread(EVENTS)))

    async def sweep(self) -> None:
        """A share of the state each time (``SWEEP_CUSTOMERS``, ``SWEEP_SERIES``): its cost
        does not grow with the state (bench.scale)."""
        async with self.locks[CUSTOMERS], self.locks[FACTS]:
            self.engine.sweep(customers=SWEEP_CUSTOMERS, series=SWEEP_SERIES)

    async def watchdog(self) -> None:
        """Catch up partitions with records waiting whose cursor does not move (the consumer
        was moved past it, e.g. by Faust's seek to committed offsets after a rebalance)."""
        if not self.bus.active():
            return
        for source in SOURCES:
            await self.catch_up(source, self.engine.stalled(source,
                                                            self.bus.read_offsets(source)))

    async def on_revoked(self) -> None:
        """Let a flush under way finish before this worker rejoins the group (flushes are off
        until the rebalance is over): the next owner of a partition recovers only after every
        member has rejoined, so it never misses rows still in flight."""
        async with self.flush_lock:
            pass

    async def forget_state(self) -> None:
        """Drop all state (this worker missed generations of the group: ``fencing.py``); the
        recovery that follows rebuilds it from the changelogs and the cursors in them."""
        async with self.flush_lock, self.locks[EVENTS], self.locks[CUSTOMERS], \
                self.locks[FACTS]:
            self.engine.retain({})

    def on_assigned(self) -> None:
        """Drop working state of partitions this worker no longer owns. (The revoke signal is
        no place for this: with eager rebalancing it names every partition, also those kept.)"""
        self.owned = self.bus.assigned()
        self.engine.retain(self.owned)
        self.pause.reset()

    def on_recovered(self, source: str, rows: list[tuple[bytes, bytes | None]],
                     stale_keys: dict[int, set[bytes]] | None = None) -> None:
        """Recovery replayed changelog rows of newly assigned partitions (and this worker's own
        writes its standby had not read yet, which ``Engine.load`` skips: the engine is as far).
        The keys of rows it dropped as fenced off go out again with the next flush
        (``fencing.py``)."""
        self.on_assigned()
        # Loading creates most of the state's objects at once: with the collector on, its full
        # collections walk the growing heap again and again (a third of the load's time at
        # 20,000 conversations, more the larger the state); nothing else runs meanwhile.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.engine.load(source, rows)
        finally:
            if collecting:
                gc.enable()
        self.engine.rewrite(source, stale_keys or {})
        self.pause.reset()

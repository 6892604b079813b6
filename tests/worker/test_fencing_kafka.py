"""Zombie fencing against a real broker: a worker stopped past the session timeout wakes up
and flushes what it held, after the new owner fenced its partitions; no reader applies those
rows (README "Zombie fencing")."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.worker.app import TABLE_NAMES
from cs_pulse.worker.fencing import FENCE_SUFFIX, epoch_of
from harness import Topology, WorkerProcess, recompute, value
from test_fencing import Row, admitted, compacted
from test_workers_kafka import FAST_REBALANCE, owned, produce_simulation, wait_for_match

pytestmark = pytest.mark.kafka


async def _stale_rows(bootstrap: str, topics: list[str], partitions: int
                      ) -> tuple[int, int, dict[str, list[Row]]]:
    """(fences, rows written under an epoch below a fence earlier in their partition, every
    row by topic and partition), read straight from the changelog topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    fences = stale = 0
    logs: dict[str, list[Row]] = {}
    try:
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                fence, position = 0, 0
                while position < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=2000)
                    for record in batch.get(tp, []):
                        position = record.offset + 1
                        logs.setdefault(f"{topic}/{tp.partition}", []).append(
                            (record.offset, record.key, record.value, record.headers))
                        if record.key is not None and record.key.endswith(FENCE_SUFFIX):
                            fences += 1
                            fence = max(fence, int(record.value or b"0"))
                        elif epoch_of(record.headers) < fence:
                            stale += 1
    finally:
        await consumer.stop()
    return fences, stale, logs


def _changed_by_compaction(logs: dict[str, list[Row]]) -> list[str]:
    """Changelog partitions a reader would rebuild differently once Kafka's cleaner kept only
    each key's newest row."""
    return [name for name, log in logs.items()
            if admitted(compacted(log))[0] != admitted(log)[0]]


def test_a_zombie_flush_after_the_new_owner_fenced_is_never_applied(kafka: KafkaBroker,
                                                                     tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap, partitions=4)
    # The zombie: without the pause's hold on flushes, it flushes as soon as it wakes, as a
    # worker cut off from the group coordinator (but not from the partition leaders) would.
    zombie = WorkerProcess(topo, tmp_path, "zombie", CS_PULSE_PAUSE_HOLDS_FLUSHES="false",
                           **FAST_REBALANCE).start()
    workers = [zombie]
    try:
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=51, minutes=30)
        # Stopped while working through the backlog: it holds processed, unflushed state.
        zombie.wait_until(lambda s: value(s, "cs_events_processed_total") > 2000, timeout=90)
        zombie.kill(signal.SIGSTOP)
        owner = WorkerProcess(topo, tmp_path, "owner", **FAST_REBALANCE).start()
        workers.append(owner)
        deadline = time.monotonic() + 60   # the zombie's session (6 s) expires: owner takes all
        while time.monotonic() < deadline and owned(owner) != (4.0, 4.0, 4.0):
            time.sleep(0.5)
        assert owned(owner) == (4.0, 4.0, 4.0)
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=52, minutes=5)
        owner.wait_until(lambda s: value(s, "cs_ready") == 1.0, timeout=60)
        zombie.kill(signal.SIGCONT)   # wakes, flushes, then learns it lost its partitions
        time.sleep(5)
        wait_for_match(workers, recompute(kafka.bootstrap, topo), timeout=150)

        changelogs = [f"{topo.name}-{table}-changelog" for table in TABLE_NAMES.values()]
        fences, stale, logs = asyncio.run(_stale_rows(kafka.bootstrap, changelogs, 4))
        assert fences >= 3 * 4 * 2          # every assignment fenced every changelog
        assert stale > 0, "the zombie wrote nothing after the fence: nothing was tested"
        print(f"fences {fences}, stale rows {stale}")
        # The keys of the stale rows were written again by whoever recovered past them (with
        # its next flush), so compaction will not change what a reader rebuilds.
        deadline = time.monotonic() + 30
        while _changed_by_compaction(logs) and time.monotonic() < deadline:
            time.sleep(2)
            _, _, logs = asyncio.run(_stale_rows(kafka.bootstrap, changelogs, 4))
        assert _changed_by_compaction(logs) == []

        # A worker recovering everything from the changelogs drops exactly those rows, and
        # its numbers equal the recomputation from the raw topic.
        for worker in workers:
            worker.stop()
        fresh = WorkerProcess(topo, tmp_path, "fresh", **FAST_REBALANCE).start()
        workers.append(fresh)
        wait_for_match([fresh], recompute(kafka.bootstrap, topo), timeout=120)
        assert value(fresh.scrape(), "cs_changelog_fenced_rows_total") == stale
        assert value(fresh.scrape(), "cs_events_processed_total") == 0   # all from the changelog
        # Caught up, it stays quiet: an idle restarted worker once saw every partition as
        # stalled and "caught up" each one every watchdog round (5 s), forever.
        rewinds = value(fresh.scrape(), "cs_input_rewinds_total")
        time.sleep(12)
        assert value(fresh.scrape(), "cs_input_rewinds_total") == rewinds
    finally:
        zombie.kill(signal.SIGCONT)
        for worker in workers:
            worker.stop()

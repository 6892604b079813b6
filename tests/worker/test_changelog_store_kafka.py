"""The stages' store reading a real changelog (worker/changelog_store.py): it ends with what a
reader of the whole log, a row at a time through the fences, ends with (test_fencing.admitted),
reads a kept partition on from where it stopped, and a forgotten one from its start; as a warm
standby it follows the changelog as it is written, so a takeover reads only the tail."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.worker.changelog_store import STORE_URL, ChangelogStore, store_of
from cs_pulse.worker.fencing import Fences, epoch_headers, fence_key
from test_fencing import Row, admitted

pytestmark = pytest.mark.kafka


def rows(partition: int, start: int, spec: list[tuple[str, bytes | None, int]]) -> list[Row]:
    """(key, value, epoch) to rows at consecutive offsets; key "fence" is the partition's fence
    at that epoch."""
    out: list[Row] = []
    for i, (key, value, epoch) in enumerate(spec):
        k = fence_key(partition) if key == "fence" else f"{partition}/{key}".encode()
        v = str(epoch).encode() if key == "fence" else value
        out.append((start + i, k, v, epoch_headers(epoch)))
    return out


async def _store(kafka: KafkaBroker, standby: bool = False) -> ChangelogStore:
    """A store of a 2-partition table, its changelog topic created."""
    app = faust.App(f"store-{uuid.uuid4().hex[:8]}", broker=f"kafka://{kafka.bootstrap}",
                    store=STORE_URL, web_enabled=False, autodiscover=False)
    store = store_of(app.Table("conversations", partitions=2, key_type=bytes,
                               value_type=bytes))
    store.attach(Fences(), {"bootstrap_servers": kafka.bootstrap}, standby=standby)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(store.changelog(), 2, 1)])
    finally:
        await admin.close()
    return store


async def test_the_store_reads_what_a_row_at_a_time_reader_reads(kafka: KafkaBroker) -> None:
    store = await _store(kafka)
    topic = store.changelog()
    # Partition 0: rows, a new owner's fence, a zombie's rows after it (dropped), a tombstone.
    log = {0: rows(0, 0, [("c|a", b"a1", 1), ("c|b", b"b1", 1), ("fence", None, 2),
                          ("c|a", b"zombie", 1), ("c|c", b"c2", 2), ("c|b", None, 2),
                          ("o|", b"cursor", 2)]),
           1: rows(1, 0, [(f"c|{i}", b"x" * (i % 7), 1) for i in range(5000)])}
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()

    async def write(partition: int, new: list[Row]) -> None:
        for _, key, value, headers in new:
            await producer.send(topic, value, key=key, partition=partition, headers=headers)
        await producer.flush()

    def expected() -> dict[bytes, bytes]:
        return {0: admitted(log[0])[0], 1: admitted(log[1])[0]}

    try:
        for partition, written in log.items():
            await write(partition, written)
        await store.read([0, 1])
        assert store.partitions == expected()
        assert store.rows_read == 5007 and store.fences is not None
        assert store.fences.offsets == {0: 6, 1: 4999} and store.fences.epochs == {0: 2}

        more = rows(1, 5000, [("c|1", b"again", 1), ("fence", None, 3), ("c|2", b"late", 1)])
        log[1] += more
        await write(1, more)
        await store.read([0, 1])                       # kept: only what was written since
        assert store.rows_read == 5010
        assert store.partitions == expected()

        store.forget({0})                              # lost and got back: from its start
        assert sorted(store.partitions) == [1]
        await store.read([0])
        assert store.rows_read == 5017
        assert store.partitions == expected()
    finally:
        await producer.stop()


async def test_a_standby_follows_the_changelog_and_a_takeover_reads_only_the_tail(
        kafka: KafkaBroker) -> None:
    store = await _store(kafka, standby=True)
    topic = store.changelog()
    store.app.assignor = SimpleNamespace(assigned_standbys=set)  # type: ignore[misc]
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    log: dict[int, list[Row]] = {0: [], 1: []}

    async def write(partition: int, spec: list[tuple[str, bytes | None, int]]) -> None:
        new = rows(partition, len(log[partition]), spec)
        log[partition] += new
        for _, key, value, headers in new:
            await producer.send(topic, value, key=key, partition=partition, headers=headers)
        await producer.flush()

    async def followed(partition: int) -> None:
        assert store.fences is not None
        deadline = time.monotonic() + 30
        while store.fences.offsets.get(partition, -1) < len(log[partition]) - 1:
            assert time.monotonic() < deadline, "the standby did not follow"
            await asyncio.sleep(0.1)

    try:
        # This worker recovered partition 0 (it holds it); partition 1 is another worker's.
        await store.on_recovery_completed({TP(topic, 0)}, set())
        await write(0, [("c|a", b"mine", 1), ("o|", b"cursor", 1)])
        await write(1, [("c|a", b"a1", 1), ("fence", None, 2), ("c|a", b"zombie", 1)]
                    + [(f"c|{i}", b"x", 2) for i in range(3000)])
        await followed(0)
        await followed(1)
        assert store.partitions == {1: admitted(log[1])[0]}    # its own rows: not kept
        assert store.standby_rows() == 3001 and store.standby_lag == 0
        assert store.take_stale_keys() == {}                    # partition 1 is not its own
        # The other worker dies after two more rows; this one takes partition 1 over.
        await write(1, [("c|b", b"last", 2), ("o|", b"its cursor", 2)])
        await followed(1)
        await write(0, [("c|a", b"mine again", 1)])
        await store.on_rebalance({TP(topic, 0), TP(topic, 1)}, set(), {TP(topic, 1)}, 3)
        assert store.following is None and store.rows_read <= 1  # the tail alone
        await store.on_recovery_completed({TP(topic, 0), TP(topic, 1)}, set())
        taken = dict(store.take_rows())
        assert {k: v for k, v in taken.items() if k.startswith(b"1/")} == admitted(log[1])[0]
        assert store.take_stale_keys() == {1: {b"1/c|a"}}      # the zombie's key, to rewrite
        assert store.partitions == {}
    finally:
        await store.stop_following()
        await producer.stop()

"""The stages' store reading a real changelog (worker/changelog_store.py): it ends with what a
reader of the whole log, a row at a time through the fences, ends with (test_fencing.admitted),
reads a kept partition on from where it stopped, and a forgotten one from its start."""

from __future__ import annotations

import uuid

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.worker.changelog_store import STORE_URL, store_of
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


async def test_the_store_reads_what_a_row_at_a_time_reader_reads(kafka: KafkaBroker) -> None:
    app = faust.App(f"store-{uuid.uuid4().hex[:8]}", broker=f"kafka://{kafka.bootstrap}",
                    store=STORE_URL, web_enabled=False, autodiscover=False)
    store = store_of(app.Table("conversations", partitions=2, key_type=bytes,
                               value_type=bytes))
    store.attach(Fences(), {"bootstrap_servers": kafka.bootstrap})
    topic = store.changelog()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
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

        store.fences.forget({0})                       # lost and got back: from its start
        store.take_rows()
        await store.read([0])
        assert store.rows_read == 5017
        assert store.partitions == {0: admitted(log[0])[0]}
    finally:
        await producer.stop()

"""A warm standby taking over from a worker killed in the middle of a flush: the standby's
stores (worker/changelog_store.py) followed the changelogs as they were written, the last flush
reached only some partitions, and the engine loaded from the standby ends with the numbers of
one that never crashed (no broker: the log is test_engine_cursors.Log; the same takeover
against a real broker and real processes: test_workers_kafka.py)."""

from __future__ import annotations

import faust
import pytest

from cs_pulse.settings import Settings
from cs_pulse.worker.app import TABLE_NAMES
from cs_pulse.worker.changelog_store import STORE_URL, ChangelogStore, store_of
from cs_pulse.worker.engine import Engine
from cs_pulse.worker.fencing import Fences, epoch_headers
from cs_pulse.worker.worker import SOURCES
from test_engine_cursors import Log, assert_recovered, crashed

PARTITIONS = 3


def follow(log: Log) -> dict[str, ChangelogStore]:
    """Stores of a worker that owned none of the partitions, having read every batch written,
    in order, through the fences, with its own offsets."""
    app = faust.App("standby-test", broker="kafka://127.0.0.1:1", store=STORE_URL,
                    web_enabled=False, autodiscover=False)
    stores = {source: store_of(app.Table(TABLE_NAMES[source], partitions=PARTITIONS,
                                         key_type=bytes, value_type=bytes))
              for source in SOURCES}
    offsets: dict[tuple[str, int], int] = {}
    for store in stores.values():
        store.attach(Fences(), {})
    for source, partition, batch in log.batches:
        for key, value in batch:
            offset = offsets.get((source, partition), -1) + 1
            offsets[(source, partition)] = offset
            stores[source].apply(partition, offset, key, value, epoch_headers(1))
    return stores


@pytest.mark.parametrize("crash_after,landed", [(3, 0), (5, 1), (9, 2), (13, 1)])
def test_a_standby_promoted_after_a_kill_mid_flush_ends_with_the_uninterrupted_numbers(
        crash_after: int, landed: int) -> None:
    events, steady, log, first = crashed(7, PARTITIONS, crash_after)
    written = len(log.batches)
    # Killed part-way through a flush: only the batches of partition ``landed`` got out, in
    # every changelog (each partition's batch holds its cursor row last, so it is whole).
    log.flush(first, lands=lambda source, partition: partition == landed)
    assert 0 < len(log.batches) - written < 3 * PARTITIONS

    stores = follow(log)
    second = Engine(Settings(partitions=PARTITIONS))
    for source, store in stores.items():
        assert store.standby_rows() > 0
        store.held = frozenset(range(PARTITIONS))          # the takeover's recovery is over
        rows = store.take_rows()
        assert dict(rows) == {k: v for k, v in log.changelogs[source].items() if v is not None}
        second.load(source, rows)
    assert_recovered(second, log, events, steady)

"""The stages' table store (worker/changelog_store.py) without a broker: Faust finds it through
the entry point, applies rows through the fences, and is told where the store's own reading
stopped (the reading itself, against a real broker: test_changelog_store_kafka.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import faust.stores
import pytest
from faust.types import TP

from cs_pulse.worker.changelog_store import STORE_URL, ChangelogStore, store_of
from cs_pulse.worker.fencing import Fences, epoch_headers, fence_key


@pytest.fixture
def store() -> ChangelogStore:
    app = faust.App("store-test", broker="kafka://127.0.0.1:1", store=STORE_URL,
                    web_enabled=False, autodiscover=False)
    table = app.Table("conversations", partitions=4, key_type=bytes, value_type=bytes)
    store = store_of(table)
    store.attach(Fences(), {"bootstrap_servers": "127.0.0.1:1"})
    return store


def event(partition: int, offset: int, key: bytes, value: bytes | None, epoch: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(
        partition=partition, offset=offset, key=key, value=value, headers=epoch_headers(epoch)))


def test_faust_finds_the_store_by_its_url_through_the_entry_point() -> None:
    assert faust.stores.by_url(STORE_URL) is ChangelogStore


def test_what_faust_applies_goes_through_the_fences_and_tombstones_delete(
        store: ChangelogStore) -> None:
    store.apply_changelog_batch(
        [event(2, 0, b"2/c|a", b"a1", 4), event(2, 1, b"2/c|b", b"b1", 4),
         event(2, 2, fence_key(2), b"6", 6),
         event(2, 3, b"2/c|a", b"zombie", 4),     # below the fence: dropped
         event(2, 4, b"2/c|b", None, 6),          # a tombstone: the key goes
         event(2, 5, b"2/o|", b"7", 6)], None, None)
    assert store.partitions == {2: {b"2/c|a": b"a1", b"2/o|": b"7"}}
    assert store.fences is not None and store.fences.rejected == 1


def test_take_rows_moves_the_rows_of_the_partitions_recovered_out(store: ChangelogStore
                                                                   ) -> None:
    store.apply(0, 0, b"0/c|a", b"v", epoch_headers(1))
    store.apply(1, 0, b"1/c|a", b"w", epoch_headers(1))
    store.held = frozenset({0})
    assert store.take_rows() == [(b"0/c|a", b"v")]
    assert store.partitions == {1: {b"1/c|a": b"w"}}     # a standby's rows stay
    assert store.standby_rows() == 1


def test_faust_recovers_from_where_the_stores_reading_stopped(store: ChangelogStore) -> None:
    topic = store.changelog()
    assert topic == "store-test-conversations-changelog"
    assert store.persisted_offset(TP(topic, 1)) is None          # never read: from the start
    store.apply(1, 41, b"1/c|a", b"v", epoch_headers(1))
    store.apply(1, 42, fence_key(1), b"2", epoch_headers(2))      # a fence counts as read
    assert store.persisted_offset(TP(topic, 1)) == 42
    assert store.persisted_offset(TP("another-changelog", 1)) is None


async def test_a_rebalance_forgets_lost_partitions_and_reads_the_assigned_ones(
        store: ChangelogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = store.changelog()
    for partition in (0, 1, 2):
        store.apply(partition, 10, f"{partition}/c|a".encode(), b"v", epoch_headers(1))
    read: list[list[int]] = []

    async def record(partitions: list[int]) -> None:
        read.append(partitions)

    monkeypatch.setattr(store, "read", record)
    monkeypatch.setattr(store.app, "assignor", SimpleNamespace(
        assigned_standbys=lambda: {TP(topic, 3)}))
    assigned = {TP(topic, 0), TP(topic, 2), TP(topic, 3), TP("events", 1)}
    await store.on_rebalance(assigned, {TP(topic, 1), TP("events", 0)}, set(), 5)
    assert read == [[0, 2]]                                 # actives of this changelog only
    assert store.persisted_offset(TP(topic, 1)) is None      # lost: read from its start if back
    assert store.persisted_offset(TP(topic, 0)) == 10        # kept: read on from where it was
    assert sorted(store.partitions) == [0, 2]                # a lost partition's rows: dropped


async def test_only_the_rows_of_partitions_recovered_reach_the_engine(
        store: ChangelogStore) -> None:
    """A rebalance that took a partition away before the recovery was over: its rows would
    give the engine state of a partition another worker serves."""
    topic = store.changelog()
    for partition in (0, 1):
        store.apply(partition, 3, f"{partition}/c|a".encode(), b"v", epoch_headers(1))
    await store.on_recovery_completed({TP(topic, 1), TP("events", 0)}, set())
    assert store.take_rows() == [(b"1/c|a", b"v")]


async def test_a_failed_reading_leaves_the_rest_to_fausts_recovery(
        store: ChangelogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = store.changelog()

    async def unreachable(partitions: list[int]) -> None:
        store.apply(0, 7, b"0/c|a", b"v", epoch_headers(1))   # read before it failed
        raise TimeoutError("no broker")

    monkeypatch.setattr(store, "read", unreachable)
    monkeypatch.setattr(store.app, "assignor", SimpleNamespace(assigned_standbys=set))
    await store.on_rebalance({TP(topic, 0)}, set(), {TP(topic, 0)}, 1)
    assert store.persisted_offset(TP(topic, 0)) == 7      # Faust goes on from there
    assert store.partitions == {0: {b"0/c|a": b"v"}}


@pytest.fixture
def standby(store: ChangelogStore, monkeypatch: pytest.MonkeyPatch) -> ChangelogStore:
    """The store as a warm standby, its following replaced by a task that waits to be
    cancelled (reading a real changelog: test_changelog_store_kafka.py)."""
    store.standby = True
    store.follows = 0   # type: ignore[attr-defined]

    async def follow() -> None:
        store.follows += 1   # type: ignore[attr-defined]
        await asyncio.Event().wait()

    monkeypatch.setattr(store, "follow", follow)
    monkeypatch.setattr(store.app, "assignor", SimpleNamespace(assigned_standbys=set))
    return store


async def test_a_standby_keeps_the_rows_of_other_workers_partitions_and_follows_on(
        standby: ChangelogStore) -> None:
    topic = standby.changelog()
    for partition in (0, 1):
        standby.apply(partition, 3, f"{partition}/c|a".encode(), b"v", epoch_headers(1))
    await standby.on_recovery_completed({TP(topic, 1)}, set())
    assert standby.take_rows() == [(b"1/c|a", b"v")]
    assert standby.partitions == {0: {b"0/c|a": b"v"}}
    await asyncio.sleep(0)
    assert standby.following is not None and standby.follows == 1   # type: ignore[attr-defined]
    await standby.on_stop()
    assert standby.following is None


async def test_following_reads_the_engines_partitions_through_the_fences_only(
        standby: ChangelogStore) -> None:
    """Their rows are the engine's own writes; a zombie's row among them is found, and its key
    goes to the owner's next recovery; stale keys of another worker's partition wait until
    this worker owns it."""
    standby.held = frozenset({0})
    for partition in (0, 1):
        standby.apply(partition, 5, fence_key(partition), b"3", epoch_headers(3))
        standby.apply(partition, 6, f"{partition}/c|a".encode(), b"own", epoch_headers(3))
        standby.apply(partition, 7, f"{partition}/c|z".encode(), b"zombie", epoch_headers(2))
    assert standby.partitions == {1: {b"1/c|a": b"own"}}
    assert standby.fences is not None and standby.fences.offsets == {0: 7, 1: 7}
    assert standby.take_stale_keys() == {0: {b"0/c|z"}}
    standby.held = frozenset({0, 1})                          # taken over later
    assert standby.take_stale_keys() == {1: {b"1/c|z"}}


async def test_a_rebalance_stops_the_following_before_it_reads_and_forgets(
        standby: ChangelogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = standby.changelog()
    await standby.on_recovery_completed({TP(topic, 0)}, set())
    await asyncio.sleep(0)
    following = standby.following
    assert following is not None and not following.done()
    standby.apply(1, 9, b"1/c|a", b"v", epoch_headers(1))    # another worker's, followed
    seen: list[tuple[bool, frozenset[int]]] = []

    async def record(partitions: list[int]) -> None:
        seen.append((following.done(), standby.held))

    monkeypatch.setattr(standby, "read", record)
    await standby.on_rebalance({TP(topic, 0), TP(topic, 1)}, set(), {TP(topic, 1)}, 4)
    assert seen == [(True, frozenset())]          # stopped; the recovery keeps every row
    assert standby.persisted_offset(TP(topic, 1)) == 9   # a takeover reads on from there
    await standby.on_recovery_completed({TP(topic, 0), TP(topic, 1)}, set())
    assert standby.take_rows() == [(b"1/c|a", b"v")]
    await standby.on_stop()


async def test_forgetting_everything_drops_a_standbys_rows_too(standby: ChangelogStore
                                                               ) -> None:
    standby.apply(1, 9, b"1/c|a", b"v", epoch_headers(1))
    standby.apply(2, 4, b"2/c|a", b"v", epoch_headers(1))
    standby.forget({1})
    assert standby.partitions == {2: {b"2/c|a": b"v"}}
    standby.forget()
    assert standby.partitions == {} and standby.persisted_offset(TP(standby.changelog(), 2)) \
        is None

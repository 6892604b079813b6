"""The worker's local changelog copies (worker/local_copy.py) and the store starting from one
(worker/changelog_store.py ``restore``), without a broker: what a restart finds is whole up to
the offset it records, and a copy that is corrupt, too old or ahead of its changelog is
dropped, never used (a restart from a copy against a real broker: test_faults_kafka.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faust
import pytest
from faust.types import TP

from cs_pulse.worker.changelog_store import STORE_URL, ChangelogStore, store_of
from cs_pulse.worker.fencing import Fences, epoch_headers, fence_key
from cs_pulse.worker.local_copy import MARK_PREFIX, MAX_AGE_SECONDS, LocalCopy, Mark


def snapshot(copy: LocalCopy, partitions: range = range(12)
             ) -> dict[int, tuple[int, int | None, set[bytes], dict[bytes, bytes]]]:
    return {p: (m.offset, m.epoch, m.stale, rows) for p, (m, rows) in copy.load(partitions).items()}


def test_rows_and_marks_come_back_per_partition(tmp_path: Path) -> None:
    copy = LocalCopy(tmp_path / "c")
    copy.write(1, [(b"1/c|a", b"a1"), (b"1/c|b", b"b1")], Mark(4, 2))
    copy.write(10, [(b"10/c|a", b"x")], Mark(0))
    copy.write(1, [(b"1/c|b", None), (b"1/c|a", b"a2")], Mark(7, 3, {b"1/c|z"}))
    assert snapshot(copy) == {1: (7, 3, {b"1/c|z"}, {b"1/c|a": b"a2"}),
                              10: (0, None, set(), {b"10/c|a": b"x"})}
    copy.forget(1)                                   # "1/" only, not "10/"
    assert snapshot(copy) == {10: (0, None, set(), {b"10/c|a": b"x"})}
    copy.close()
    assert snapshot(LocalCopy(tmp_path / "c")) == {10: (0, None, set(), {b"10/c|a": b"x"})}


def test_a_process_killed_without_closing_leaves_every_batch_it_wrote(tmp_path: Path) -> None:
    script = f"""
import os
from pathlib import Path
from cs_pulse.worker.local_copy import LocalCopy, Mark
copy = LocalCopy(Path({str(tmp_path / "c")!r}))
for i in range(50):
    copy.write(0, [(f"0/c|{{j}}".encode(), str(i).encode()) for j in range(100)], Mark(i))
os.kill(os.getpid(), 9)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert run.returncode == -9, run.stderr
    got = snapshot(LocalCopy(tmp_path / "c"))
    assert got[0][0] == 49 and set(got[0][3].values()) == {b"49"} and len(got[0][3]) == 100


def test_a_copy_too_old_to_trust_is_dropped(tmp_path: Path) -> None:
    """The changelogs keep a deletion for a day: an older copy may miss one compaction has
    since removed."""
    now = [1_000_000.0]
    copy = LocalCopy(tmp_path / "c", clock=lambda: now[0])
    copy.write(0, [(b"0/c|a", b"v")], Mark(3))
    now[0] += 3600
    copy.write(1, [(b"1/c|a", b"v")], Mark(8))
    now[0] += MAX_AGE_SECONDS - 1800
    assert sorted(snapshot(copy)) == [1]
    assert sorted(snapshot(copy)) == [1]              # and it is gone from the disk
    now[0] -= 2 * MAX_AGE_SECONDS                     # written "in the future": not trusted
    assert snapshot(copy) == {}


def test_a_corrupt_block_drops_the_whole_copy(tmp_path: Path) -> None:
    copy = LocalCopy(tmp_path / "c")
    copy.write(0, [(f"0/c|{i}".encode(), b"v" * 100) for i in range(20_000)], Mark(19_999))
    assert copy.db is not None
    copy.db.flush()
    copy.close()
    [table] = list((tmp_path / "c").glob("*.sst"))
    data = bytearray(table.read_bytes())
    data[len(data) // 3:len(data) // 3 + 64] = bytes(64)
    table.write_bytes(bytes(data))
    copy = LocalCopy(tmp_path / "c")
    assert snapshot(copy) == {}                       # not the rows before the bad block
    copy.write(1, [(b"1/c|a", b"v")], Mark(0))        # a new copy, usable
    assert snapshot(copy) == {1: (0, None, set(), {b"1/c|a": b"v"})}


def test_a_copy_that_fails_while_written_is_removed_and_stays_off(tmp_path: Path) -> None:
    """Rows written after the failure alone, under a mark, would claim the rows before."""
    copy = LocalCopy(tmp_path / "c")
    copy.write(0, [(b"0/c|a", b"v")], Mark(3))
    assert copy.db is not None

    class Failing:
        def write(self, batch: object) -> None:
            raise OSError("no space left on device")

        def close(self) -> None:
            pass

    copy.db.close()
    copy.db = Failing()  # type: ignore[assignment]
    copy.write(0, [(b"0/c|b", b"w")], Mark(4))
    assert copy.db is None and not (tmp_path / "c").exists()
    copy.write(0, [(b"0/c|c", b"x")], Mark(5))           # ignored
    assert not (tmp_path / "c").exists()
    assert snapshot(LocalCopy(tmp_path / "c")) == {}     # the next start: read the changelog


def test_a_mark_that_is_not_one_drops_the_whole_copy(tmp_path: Path) -> None:
    copy = LocalCopy(tmp_path / "c")
    copy.write(0, [(b"0/c|a", b"v")], Mark(3))
    copy.write(1, [(b"1/c|a", b"v")], Mark(3))
    assert copy.db is not None
    copy.db[MARK_PREFIX + b"1"] = b'{"offset": "three"}'
    assert snapshot(copy) == {}
    assert snapshot(copy) == {}


@pytest.fixture
def store(tmp_path: Path) -> ChangelogStore:
    app = faust.App("local-test", broker="kafka://127.0.0.1:1", store=STORE_URL,
                    web_enabled=False, autodiscover=False)
    store = store_of(app.Table("conversations", partitions=4, key_type=bytes,
                               value_type=bytes))
    store.attach(Fences(), {"bootstrap_servers": "127.0.0.1:1"},
                 local=LocalCopy(tmp_path / "copy"))
    return store


def test_the_copy_holds_every_row_read_with_the_fences_where_reading_stopped(
        store: ChangelogStore) -> None:
    store.held = frozenset({0})     # the engine's partition: rows not kept in memory, but copied
    for partition in (0, 1):
        store.apply(partition, 0, f"{partition}/c|a".encode(), b"a1", epoch_headers(1))
        store.apply(partition, 1, fence_key(partition), b"2", epoch_headers(2))
        store.apply(partition, 2, f"{partition}/c|a".encode(), b"zombie", epoch_headers(1))
        store.apply(partition, 3, f"{partition}/c|b".encode(), b"b2", epoch_headers(2))
    store.persist([0, 1])
    assert store.local is not None
    assert snapshot(store.local) == {
        p: (3, 2, {f"{p}/c|a".encode()}, {f"{p}/c|a".encode(): b"a1", f"{p}/c|b".encode(): b"b2"})
        for p in (0, 1)}
    store.forget({1})
    assert sorted(snapshot(store.local)) == [0]


def offline(store: ChangelogStore, monkeypatch: pytest.MonkeyPatch,
            ends: dict[int, int] | None) -> None:
    """The broker as a restart sees it: the changelogs end at ``ends`` (None: no answer), and
    reading them reads nothing."""
    async def end_offsets(partitions: list[int]) -> dict[int, int]:
        if ends is None:
            raise OSError("no broker")
        return ends

    async def read(partitions: list[int]) -> None:
        pass

    monkeypatch.setattr(store, "_end_offsets", end_offsets)
    monkeypatch.setattr(store, "read", read)
    monkeypatch.setattr(store.app, "assignor", type("A", (), {
        "assigned_standbys": staticmethod(set)})())


async def test_a_restart_starts_from_the_copy_except_where_the_changelog_ends_before_it(
        store: ChangelogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.local is not None
    store.local.write(0, [(b"0/c|a", b"v")], Mark(5, 2, {b"0/c|z"}))
    store.local.write(2, [(b"2/c|a", b"v")], Mark(9, 3))    # the topic was recreated since
    offline(store, monkeypatch, {0: 12, 2: 4})
    topic = store.changelog()
    await store.on_rebalance({TP(topic, 0), TP(topic, 2)}, set(), set(), 1)
    assert store.fences is not None
    assert store.fences.offsets == {0: 5} and store.fences.epochs == {0: 2}
    assert store.persisted_offset(TP(topic, 0)) == 5           # Faust reads on from there
    assert store.partitions == {0: {b"0/c|a": b"v"}}
    assert sorted(snapshot(store.local)) == [0]                # partition 2: from its start
    store.held = frozenset({0, 2})
    assert store.take_stale_keys() == {0: {b"0/c|z"}}


async def test_a_copy_that_cannot_be_checked_is_dropped(store: ChangelogStore,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    assert store.local is not None
    store.local.write(0, [(b"0/c|a", b"v")], Mark(5))
    offline(store, monkeypatch, None)
    await store.on_rebalance({TP(store.changelog(), 0)}, set(), set(), 1)
    assert store.fences is not None and store.fences.offsets == {} and store.partitions == {}
    assert snapshot(store.local) == {}


def test_a_copy_another_process_has_open_is_left_alone(tmp_path: Path) -> None:
    first = LocalCopy(tmp_path / "c")
    first.write(0, [(b"0/c|a", b"v")], Mark(0))
    second = LocalCopy(tmp_path / "c")
    assert second.db is None and second.load(range(1)) == {}
    assert os.path.exists(tmp_path / "c" / "CURRENT")
    assert sorted(snapshot(first)) == [0]


async def test_without_a_standby_a_copy_of_a_partition_not_assigned_is_not_kept_in_memory(
        store: ChangelogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing follows it: were its fences kept, getting it later would read on from the
    copy's offset without the copy's rows. It is read from the copy again at a restart."""
    assert store.local is not None and not store.standby
    store.local.write(0, [(b"0/c|a", b"v")], Mark(5))
    store.local.write(1, [(b"1/c|a", b"w")], Mark(7))
    offline(store, monkeypatch, {0: 6, 1: 8})
    topic = store.changelog()
    await store.on_rebalance({TP(topic, 0)}, set(), set(), 1)
    await store.on_recovery_completed({TP(topic, 0)}, set())
    assert store.take_rows() == [(b"0/c|a", b"v")]
    assert store.partitions == {} and store.persisted_offset(TP(topic, 1)) is None
    assert sorted(snapshot(store.local)) == [0, 1]

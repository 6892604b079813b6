"""Zombie fencing of the changelogs (worker/fencing.py), without a broker (the store that
applies it in recovery: test_changelog_store.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.structs import TopicPartition as TP

from cs_pulse.worker import faust_compat
from cs_pulse.worker.fencing import Fences, epoch_headers, epoch_of, fence_key, missed_generations


def row(key: str, epoch: int | None, value: bytes = b"{}") -> tuple[bytes, bytes, Any]:
    return key.encode(), value, None if epoch is None else epoch_headers(epoch)


def test_rows_after_a_higher_fence_are_dropped_in_log_order() -> None:
    fences = Fences()
    log = [row("0/c|a", None),                       # written before fencing existed
           row("0/c|a", 3),                          # the owner of generation 3
           (fence_key(0), b"5", epoch_headers(5)),   # a new owner, generation 5
           row("0/c|a", 3),                          # the zombie: dropped
           row("0/o|", 3),                           # its cursor too
           row("0/c|b", None),                       # no header after a fence: dropped
           row("0/c|a", 5),                          # the new owner
           row("1/c|a", 3)]                          # another partition: no fence there
    kept = [(k, h) for offset, (k, v, h) in enumerate(log)
            if fences.admit(int(k.split(b"/")[0]), offset, k, v, h)]
    assert kept == [(b"0/c|a", None), (b"0/c|a", epoch_headers(3)), (b"0/c|a", epoch_headers(5)),
                    (b"1/c|a", epoch_headers(3))]
    assert fences.rejected == 3
    assert fences.epochs == {0: 5}


def test_a_lower_fence_does_not_lower_the_epoch_and_behind_says_where_to_refence() -> None:
    fences = Fences()
    assert not fences.admit(0, 0, fence_key(0), b"57", epoch_headers(57))
    assert not fences.admit(0, 1, fence_key(0), b"2", epoch_headers(2))   # generation restarted
    assert not fences.admit(0, 2, b"0/c|x", b"{}", epoch_headers(2))
    assert fences.epochs == {0: 57}
    assert fences.behind({0: 2, 1: 2}) == {0: 58}
    assert fences.behind({0: 58}) == {}


def test_a_partition_read_again_from_its_start_starts_its_fences_over() -> None:
    """Faust re-reads a partition this worker gets back from its start: the rows before a
    fence it saw last time are valid again, in their place in the log."""
    fences = Fences()
    log = [row("0/c|a", 2), (fence_key(0), b"3", epoch_headers(3)), row("0/c|a", 2)]
    first = [fences.admit(0, offset, k, v, h) for offset, (k, v, h) in enumerate(log)]
    assert first == [True, False, False]
    more = [row("0/c|b", 3), (fence_key(0), b"5", epoch_headers(5))]
    again = [fences.admit(0, offset, k, v, h) for offset, (k, v, h) in enumerate(log + more)]
    assert again == [True, False, False, True, False]
    assert fences.rejected == 2 and fences.epochs == {0: 5}


def test_a_worker_that_missed_a_generation_must_rebuild_its_state() -> None:
    assert not missed_generations(None, 7)     # the first assignment: nothing held yet
    assert not missed_generations(6, 7)        # in every rebalance since: its state is the log's
    assert missed_generations(1, 3)            # out for generation 2 (paused past its session)
    assert missed_generations(9, 1)            # the group restarted (its metadata expired)


def test_recover_from_start_forgets_where_faust_stopped_reading() -> None:
    recovery = SimpleNamespace(active_offsets={"tp0": 41, "tp1": 7})
    app: Any = SimpleNamespace(tables=SimpleNamespace(recovery=recovery))
    faust_compat.recover_from_start(app)
    assert recovery.active_offsets == {}


def test_epoch_header_parsing() -> None:
    assert epoch_of(None) == 0
    assert epoch_of([("other", b"1")]) == 0
    assert epoch_of([("cs-epoch", b"12")]) == 12
    assert epoch_of([("cs-epoch", b"x")]) == 0


def test_forget_makes_partitions_read_again_from_their_start() -> None:
    fences = Fences()
    fences.admit(0, 4, fence_key(0), b"6", epoch_headers(6))
    fences.admit(1, 9, fence_key(1), b"6", epoch_headers(6))
    fences.forget({0})
    assert fences.offsets == {1: 9} and fences.epochs == {1: 6}
    fences.forget()
    assert fences.offsets == {} and fences.epochs == {}


def test_read_offsets_tell_a_sought_position_from_a_record_read() -> None:
    """Faust's ``_read_offset`` holds the position it sought to (the next offset to read) until
    a record is read, then the record's offset; ``read_offsets`` gives the last record read."""
    sought, read, fresh = TP("events", 0), TP("events", 1), TP("events", 2)
    consumer = SimpleNamespace(_read_offset={sought: 675, read: 492, fresh: None},
                               delivered={read: 500},
                               assignment=lambda: {sought, read, fresh, TP("facts", 0)})
    app: Any = SimpleNamespace(consumer=consumer)
    assert faust_compat.read_offsets(app, "events") == {0: 674, 1: 500, 2: None}


Row = tuple[int, bytes, bytes | None, Any]   # offset, key, value, headers


def admitted(log: list[Row]) -> tuple[dict[bytes, bytes], Fences]:
    """What a reader of one changelog ends with: key -> value, and its fences."""
    fences, state = Fences(), {}
    for offset, key, value, headers in log:
        if fences.admit(int(key.split(b"/")[0]), offset, key, value, headers):
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    return state, fences


def compacted(log: list[Row]) -> list[Row]:
    """The log after Kafka's cleaner: only each key's newest row, in place."""
    newest = {key: offset for offset, key, _, _ in log}
    return [r for r in log if newest[r[1]] == r[0]]


def test_writing_the_dropped_keys_again_keeps_the_log_meaning_the_same_after_compaction(
        ) -> None:
    log: list[Row] = [(0, b"0/c|a", b"a1", epoch_headers(1)),
                      (1, b"0/c|b", b"b1", epoch_headers(1)),
                      (2, fence_key(0), b"2", epoch_headers(2)),
                      (3, b"0/c|a", b"a2", epoch_headers(2)),
                      (4, b"0/c|b", b"zombie", epoch_headers(1)),   # nobody writes b again
                      (5, fence_key(0), b"3", epoch_headers(3))]
    state, fences = admitted(log)
    assert state == {b"0/c|a": b"a2", b"0/c|b": b"b1"}
    # Compaction alone: b's valid row is gone, and the zombie's now stands before every fence.
    assert admitted(compacted(log))[0] == {b"0/c|a": b"a2", b"0/c|b": b"zombie"}
    stale = fences.take_stale_keys([0, 1])
    assert stale == {0: {b"0/c|b"}} and fences.take_stale_keys([0, 1]) == {}
    repaired = [*log, (6, b"0/c|b", state[b"0/c|b"], epoch_headers(3))]   # the reader writes
    assert admitted(compacted(repaired))[0] == admitted(repaired)[0] == state

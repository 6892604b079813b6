"""Zombie fencing of the changelogs: a worker that lost its partitions (a network partition
from the group coordinator, a long pause) may still flush state it held. Its rows must not be
applied by whoever recovers the partition later.

Every changelog row carries, in the ``cs-epoch`` header, the epoch of the worker that wrote it:
the consumer group's generation in which it was assigned the partition. Before recovering a
newly assigned partition, its new owner appends a fence row (key ``<p>/f|``, value its epoch)
and waits until the broker has it. Readers apply rows in log order and drop any row whose
epoch is below the highest fence before it: a zombie's writes after the fence. Rows before the
fence were read by the new owner's recovery, so it and every later reader rebuild the same
state. Generations only grow while the group exists; if the group's metadata expired (every
worker down past ``offsets.retention.minutes``) and its generation restarted below an old
fence, the new owner finds the higher fence in its recovery and fences again above it
(``Fences.behind``) before it writes anything.

Compaction keeps only the newest row of a key. A zombie's row nobody wrote after would then
outlive the valid row before it, and later the fence before it (a partition's fences share a
key). So whoever recovers and drops rows writes their keys again, with its own value or
deletion (``Fences.stale_keys``, ``Engine.rewrite``).

A zombie that comes back (rejoins at a later generation) gets partitions again whose changelog
it no longer knows: others may have written them, and its own last flush may lie behind a
fence. Its state says "flushed" for rows no reader applies, so it keeps nothing: it rebuilds
every partition from the changelogs, as a new owner would (``missed_generations``).

No Kafka here: ``app.py`` sends the rows and ``faust_compat`` filters recovery through this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

EPOCH_HEADER = "cs-epoch"
FENCE_SUFFIX = b"/f|"


def fence_key(partition: int) -> bytes:
    return f"{partition}".encode() + FENCE_SUFFIX


def epoch_headers(epoch: int) -> list[tuple[str, bytes]]:
    return [(EPOCH_HEADER, str(epoch).encode())]


def epoch_of(headers: Iterable[tuple[str, bytes]] | None) -> int:
    """The writer's epoch from a record's headers; 0 for rows written before fencing existed
    (they precede every fence, so they are never dropped)."""
    for name, value in headers or ():
        if name == EPOCH_HEADER:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def missed_generations(previous: int | None, generation: int) -> bool:
    """A member assigned in ``generation`` whose previous assignment was in ``previous`` was out
    of the group in between (every completed rebalance is the next generation, given to every
    member in it), or the group restarted: its state may no longer be what the changelogs hold."""
    return previous is not None and generation != previous + 1


class Fences:
    """One changelog's fences, per partition, as read in log order. Kept across recoveries:
    a partition this worker kept is read on from where reading stopped (``offsets``, the store's
    ``persisted_offset``), one it lost and got back from its start (``forget``), which starts
    that partition's fences over."""

    def __init__(self) -> None:
        self.epochs: dict[int, int] = {}
        self.offsets: dict[int, int] = {}   # the last offset read, per partition
        self.rejected = 0
        self.stale_keys: dict[int, set[bytes]] = {}   # per partition, until taken for repair

    def admit(self, partition: int, offset: int, key: bytes | None, value: bytes | None,
              headers: Sequence[tuple[str, bytes]] | None) -> bool:
        """True if the row is state to apply; False for a fence row (taken note of) or a row
        from a writer fenced off before it."""
        if offset <= self.offsets.get(partition, -1):
            self.epochs.pop(partition, None)   # read again from the start: forget its fences
        self.offsets[partition] = offset
        if key is not None and key.endswith(FENCE_SUFFIX):
            epoch = int(value or b"0")
            if epoch > self.epochs.get(partition, 0):
                self.epochs[partition] = epoch
            return False
        if epoch_of(headers) < self.epochs.get(partition, 0):
            self.rejected += 1
            if key is not None:
                self.stale_keys.setdefault(partition, set()).add(key)
            return False
        return True

    def resume(self, partition: int, offset: int, epoch: int | None, stale: set[bytes]
               ) -> None:
        """The state of a reading that stopped at ``offset`` (a local copy's mark)."""
        self.offsets[partition] = offset
        if epoch is None:
            self.epochs.pop(partition, None)
        else:
            self.epochs[partition] = epoch
        if stale:
            self.stale_keys[partition] = set(stale)
        else:
            self.stale_keys.pop(partition, None)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Partitions (None: all) to be read again from their start: lost in a rebalance, or
        the whole state rebuilt after missed generations."""
        for p in list(self.offsets) if partitions is None else partitions:
            self.offsets.pop(p, None)
            self.epochs.pop(p, None)

    def take_stale_keys(self, partitions: Iterable[int]) -> dict[int, set[bytes]]:
        """Keys of the rows dropped in ``partitions`` since they were last taken: their owner
        writes them again. (A standby keeps those of partitions it may own later.)"""
        return {p: self.stale_keys.pop(p) for p in partitions if p in self.stale_keys}

    def behind(self, epochs: dict[int, int]) -> dict[int, int]:
        """Partitions whose write epoch is below a fence read since (a generation restarted
        below an old fence): the epoch to fence again at."""
        return {p: self.epochs[p] + 1 for p, e in epochs.items()
                if self.epochs.get(p, 0) > e}

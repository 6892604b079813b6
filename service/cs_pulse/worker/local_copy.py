"""A changelog's rows on the worker's own disk, so a worker restarted on its data directory reads
only the changelog's tail instead of the whole log.

The copy is written by the changelog store as it reads (a recovery, or following as a standby),
never from the engine: every row it holds passed through the fences in log order, so the copy
of a partition is what a reader of the log from its start holds at the copy's offset, and
reading on from that offset through the same fences gives what a reader of the whole log gets.
(A copy of the engine's working state could hold a zombie's unflushed changes; this cannot.)
Each fetch of a partition is written as one RocksDB write batch together with where the reading
stopped and the fences' state there (``Mark``), so a worker killed at any point leaves a copy
that is whole up to some offset.

Never trusted blindly. A copy is dropped, and the partition read from the changelog's start,
when RocksDB or the copy's own records are unreadable (a corrupt copy), when it was last
written longer ago than ``MAX_AGE_SECONDS`` (the changelog keeps a deletion for a day,
``delete.retention.ms``: a copy older than that may miss deletions compaction has since
removed), or when the changelog ends before the copy's offset (the topic was recreated).

No Kafka here: ``changelog_store.py`` reads the changelog and writes through this.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from rocksdict import Options, Rdict, WriteBatch

log = logging.getLogger("cs_pulse")
MARK_PREFIX = b"\xffmark/"          # after every row key (rows start with "<partition>/")
# Half the changelogs' delete.retention.ms (topics.CHANGELOG_CONFIGS: one day).
MAX_AGE_SECONDS = 12 * 3600.0


@dataclass
class Mark:
    """Where the copy of a partition stopped: the last offset read, the highest fence epoch
    seen before it, and the keys of fenced-off rows its owner has not yet written again."""

    offset: int
    epoch: int | None = None
    stale: set[bytes] = field(default_factory=set)
    written: float = 0.0              # wall clock, seconds

    def encode(self) -> bytes:
        return orjson.dumps({"offset": self.offset, "epoch": self.epoch,
                             "stale": sorted(k.hex() for k in self.stale),
                             "written": self.written})

    @classmethod
    def decode(cls, raw: bytes) -> Mark:
        d = orjson.loads(raw)
        offset, epoch, written = d["offset"], d["epoch"], d["written"]
        if not (isinstance(offset, int) and offset >= -1 and (epoch is None or isinstance(
                epoch, int)) and isinstance(written, int | float)):
            raise ValueError(f"not a mark: {d!r}")
        return cls(offset, epoch, {bytes.fromhex(k) for k in d["stale"]}, float(written))


def _prefix(partition: int) -> bytes:
    return f"{partition}/".encode()


def _mark_key(partition: int) -> bytes:
    return MARK_PREFIX + str(partition).encode()


class LocalCopy:
    """One changelog's copy, a RocksDB directory; any error reading it counts as corruption
    (the copy is removed, and the caller reads the changelog instead)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.db = self._open()

    def _open(self) -> Rdict | None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            options = Options(raw_mode=True)
            options.set_paranoid_checks(True)
            return Rdict(str(self.path), options)
        except Exception as exc:   # a corrupt copy (or a disk that cannot hold one)
            if "lock" in str(exc).lower():   # another process has it open: not ours to remove
                log.warning("local changelog copy %s in use (%r): not used", self.path, exc)
                return None
            log.warning("local changelog copy %s unreadable (%r): removed, the changelog is "
                        "read instead", self.path, exc)
            self._remove()
            return None

    def _remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _discard(self, exc: BaseException, reopen: bool) -> None:
        """Remove the copy. Reopened empty only when nothing was read from it yet (``load``,
        at the start, before the store reads the changelogs from their start); a copy that
        fails while being written stays off until the next start, since new rows alone
        under a mark would claim the rows before them too."""
        log.warning("local changelog copy %s corrupt (%r): removed, the changelog is read "
                    "instead", self.path, exc)
        self.close()
        self._remove()
        if reopen:
            self.db = self._open()

    def write(self, partition: int, rows: Iterable[tuple[bytes, bytes | None]],
              mark: Mark) -> None:
        """Rows read from one fetch of ``partition`` (deletions as None), and where the
        reading stopped, in one write batch."""
        if self.db is None:
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in rows:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        mark.written = self.clock()
        batch.put(_mark_key(partition), mark.encode())
        try:
            self.db.write(batch)
        except Exception as exc:
            self._discard(exc, reopen=False)

    def forget(self, partition: int) -> None:
        """The partition is read again from its start (lost, or rebuilt)."""
        if self.db is None:
            return
        prefix = _prefix(partition)
        try:
            self.db.delete_range(prefix, prefix[:-1] + b"0")
            del self.db[_mark_key(partition)]
        except KeyError:
            pass
        except Exception as exc:
            self._discard(exc, reopen=False)

    def load(self, partitions: Iterable[int]) -> dict[int, tuple[Mark, dict[bytes, bytes]]]:
        """Each partition's copy and mark; partitions without one, or with one too old to
        trust, are left out (an old one is removed). Corruption anywhere drops the whole
        copy: nothing is returned."""
        if self.db is None:
            return {}
        db = self.db
        out: dict[int, tuple[Mark, dict[bytes, bytes]]] = {}
        try:
            for partition in partitions:
                raw = db.get(_mark_key(partition))
                if raw is None:
                    continue
                mark = Mark.decode(raw)
                age = self.clock() - mark.written
                if not 0 <= age <= MAX_AGE_SECONDS:
                    log.warning("local changelog copy %s, partition %d: last written %.0f s "
                                "ago, not trusted (deletions it missed may be compacted "
                                "away): read from the changelog", self.path, partition, age)
                    self.forget(partition)
                    continue
                out[partition] = (mark, self._rows(db, _prefix(partition)))
        except Exception as exc:
            self._discard(exc, reopen=True)
            return {}
        return out

    @staticmethod
    def _rows(db: Rdict, prefix: bytes) -> dict[bytes, bytes]:
        """A partition's rows; raises on a block whose checksum does not match (``items()``
        would end the iteration there silently)."""
        rows: dict[bytes, bytes] = {}
        it = db.iter()
        try:
            it.seek(prefix)
            while it.valid():
                key, value = it.key(), it.value()
                if not (isinstance(key, bytes) and isinstance(value, bytes)):
                    raise TypeError(f"not a raw row: {key!r}")
                if not key.startswith(prefix):
                    break
                rows[key] = value
                it.next()
            it.status()
        finally:
            del it   # a live iterator (kept by a traceback) would keep the database open
        return rows

    def close(self) -> None:
        if self.db is not None:
            with contextlib.suppress(Exception):   # already unusable: it is removed next
                self.db.close()
            self.db = None

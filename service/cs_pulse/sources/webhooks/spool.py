"""The webhook spool: a durable, bounded FIFO of deliveries on local disk.

A chat platform does not retry (Chatwoot never, Intercom and Zendesk little), so a delivery is
acknowledged only once it is here, never after a round trip to Kafka; the forwarder
(``forward.py``) produces what is here, in order, whenever Kafka takes it, and only then moves
the cursor past it. Kafka being down, slow or misconfigured costs no delivery: it costs spool
space, which is bounded (``SpoolFull``: the receiver answers 503).

On disk, a folder of segment files ``<n>.seg`` (``n`` counts up) and a ``cursor`` file naming the
first record not yet forwarded (segment, offset). A record is a 16-byte header (payload length,
CRC-32 of the rest, receipt time in epoch ms) and its payload. Appends are ``os.write`` calls
(whole, so a killed process leaves either the record or nothing of it beyond a torn tail) and,
unless ``fsync`` is off, wait for an ``fsync`` shared by every append made meanwhile (group
commit: one disk flush serves a burst). Opening a spool truncates a torn or corrupt tail of the
last segment and drops segments wholly behind the cursor.

The cursor is written after Kafka acknowledged (a rename, atomic); a crash between the two
produces those records again, which the worker drops by ``event_id`` (at least once, counted
once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("cs_pulse.sources.webhooks.spool")
HEADER = struct.Struct("<IIQ")          # payload length, crc32(receipt ms + payload), receipt ms
MAX_RECORD = 64 * 1024 * 1024
SUFFIX = ".seg"


class SpoolFull(Exception):
    """The spool holds its maximum: the delivery is refused (503), not dropped silently."""


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True)
class Record:
    payload: bytes
    received_ms: int
    end: Position          # where the next record starts: the cursor once this one is taken


def _frame(payload: bytes, received_ms: int) -> bytes:
    stamp = struct.pack("<Q", received_ms)
    return HEADER.pack(len(payload), zlib.crc32(stamp + payload), received_ms) + payload


def _read_record(data: bytes, offset: int) -> tuple[bytes, int, int] | None:
    """(payload, receipt ms, next offset) of the record at ``offset``, None if incomplete or
    corrupt."""
    end = offset + HEADER.size
    if end > len(data):
        return None
    length, crc, received = HEADER.unpack_from(data, offset)
    if length > MAX_RECORD or end + length > len(data):
        return None
    payload = data[end:end + length]
    if zlib.crc32(struct.pack("<Q", received) + payload) != crc:
        return None
    return payload, received, end + length


class Spool:
    """Append (``append``), read from the cursor (``read``), move the cursor (``commit``).

    One process owns a spool folder; appends and reads run on one event loop."""

    def __init__(self, folder: Path | str, max_bytes: int, *, segment_bytes: int = 16 << 20,
                 fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.max_bytes, self.segment_bytes, self.fsync = max_bytes, segment_bytes, fsync
        self.folder.mkdir(parents=True, exist_ok=True)
        self.truncated = 0             # bytes of torn or corrupt tails cut at opening
        self._sizes: dict[int, int] = {}      # segment -> bytes written
        self._cursor = Position(0, 0)
        self._depth = 0                # records after the cursor
        self._head_ms: int | None = None      # receipt time of the record at the cursor
        self._fd = -1
        self._written = self._synced = 0      # appends made / made durable (counts)
        self._sync_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sync_task: asyncio.Task[None] | None = None
        self._retired: list[int] = []         # file descriptors of rolled segments
        self._data_ready = asyncio.Event()
        self._open()

    # --- opening -----------------------------------------------------------------------------

    def _open(self) -> None:
        self._cursor = self._read_cursor()
        segments = sorted(int(p.stem) for p in self.folder.glob(f"*{SUFFIX}")
                          if p.stem.isdigit())
        for n in segments:
            if n < self._cursor.segment:
                self._path(n).unlink()
        segments = [n for n in segments if n >= self._cursor.segment]
        if not segments:
            segments = [self._cursor.segment]
            self._path(segments[0]).touch()
        if segments[0] != self._cursor.segment:   # its segment is gone: start at the next
            self._cursor = Position(segments[0], 0)
        for n in segments:
            data = self._path(n).read_bytes()
            start = self._cursor.offset if n == self._cursor.segment else 0
            good = self._scan(data, min(start, len(data)))
            if good < len(data):   # a torn tail (killed mid-write) or a damaged disk
                self.truncated += len(data) - good
                log.warning("spool segment %s: %d bytes after offset %d are torn or corrupt; "
                            "cut", n, len(data) - good, good)
                os.truncate(self._path(n), good)
            self._sizes[n] = good
        if self._cursor.offset > self._sizes[self._cursor.segment]:
            self._cursor = Position(self._cursor.segment, self._sizes[self._cursor.segment])
        last = segments[-1]
        self._fd = os.open(self._path(last), os.O_WRONLY | os.O_APPEND)
        self._active = last
        if self._depth:
            self._data_ready.set()

    def _scan(self, data: bytes, start: int) -> int:
        """Count the records from ``start``; the offset where valid records end."""
        offset = start
        while (found := _read_record(data, offset)) is not None:
            _, received, offset = found
            if self._head_ms is None:
                self._head_ms = received
            self._depth += 1
        return offset

    def _read_cursor(self) -> Position:
        try:
            segment, offset = (int(x) for x in (self.folder / "cursor").read_text().split())
            return Position(segment, offset)
        except (OSError, ValueError):
            return Position(0, 0)

    def _path(self, segment: int) -> Path:
        return self.folder / f"{segment:012d}{SUFFIX}"

    # --- state -------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Deliveries held, not yet forwarded."""
        return self._depth

    @property
    def size(self) -> int:
        """Bytes held on disk from the cursor on."""
        return sum(self._sizes.values()) - self._cursor.offset

    def oldest_age(self, now_ms: int) -> float:
        """Seconds since the oldest held delivery was received (0 if none)."""
        return 0.0 if self._head_ms is None or not self._depth else \
            max(0.0, (now_ms - self._head_ms) / 1000.0)

    # --- appending ---------------------------------------------------------------------------

    async def append(self, payload: bytes, received_ms: int) -> None:
        """Hold ``payload``; returns once it is on disk (durable if ``fsync``). Raises
        ``SpoolFull`` past ``max_bytes``, ``OSError`` if the disk refuses."""
        frame = _frame(payload, received_ms)
        if self.size + len(frame) > self.max_bytes:
            raise SpoolFull(f"spool holds {self.size} bytes (max {self.max_bytes})")
        if self._sizes[self._active] and \
                self._sizes[self._active] + len(frame) > self.segment_bytes:
            self._roll()
        written = os.write(self._fd, frame)
        if written != len(frame):   # a full disk mid-record: cut it, refuse the delivery
            os.ftruncate(self._fd, self._sizes[self._active])
            raise OSError(f"spool: short write ({written} of {len(frame)} bytes)")
        self._sizes[self._active] += len(frame)
        if not self._depth:
            self._head_ms = received_ms
        self._depth += 1
        self._written += 1
        self._data_ready.set()
        if self.fsync:
            await self._durable(self._written)

    def _roll(self) -> None:
        """Start the next segment; the full one is flushed first (rare: every
        ``segment_bytes``)."""
        if self.fsync:
            os.fsync(self._fd)
            self._synced = self._written
            self._wake_waiters()
        self._retired.append(self._fd)
        if self._sync_task is None or self._sync_task.done():
            self._close_retired()
        self._active += 1
        self._sizes[self._active] = 0
        self._fd = os.open(self._path(self._active), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           0o600)
        if self.fsync:   # the new file's name, durable too
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    async def _durable(self, count: int) -> None:
        if self._synced >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sync_waiters.append((count, future))
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._sync_loop())
        await future

    async def _sync_loop(self) -> None:
        """One fsync covers every append written before it started (group commit)."""
        try:
            while self._sync_waiters:
                target, fd = self._written, self._fd
                try:
                    await asyncio.to_thread(os.fsync, fd)
                except OSError as exc:
                    for _, future in self._sync_waiters:
                        if not future.done():
                            future.set_exception(exc)
                    self._sync_waiters.clear()
                    return
                self._synced = max(self._synced, target)
                self._wake_waiters()
        finally:
            self._close_retired()

    def _wake_waiters(self) -> None:
        still = []
        for count, future in self._sync_waiters:
            if count <= self._synced:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((count, future))
        self._sync_waiters = still

    def _close_retired(self) -> None:
        for fd in self._retired:
            os.close(fd)
        self._retired.clear()

    # --- reading and the cursor --------------------------------------------------------------

    async def wait(self) -> None:
        """Until there is something after the cursor."""
        while not self._depth:
            self._data_ready.clear()
            await self._data_ready.wait()

    def read(self, max_records: int = 500, max_bytes: int = 4 << 20) -> list[Record]:
        """Up to ``max_records`` records from the cursor, in order (the cursor does not move)."""
        out: list[Record] = []
        segment, offset = self._cursor.segment, self._cursor.offset
        size = 0
        while len(out) < max_records and size < max_bytes:
            end = self._sizes.get(segment)
            if end is None:
                break
            if offset >= end:
                if segment == self._active:
                    break
                segment, offset = segment + 1, 0
                continue
            with open(self._path(segment), "rb") as f:
                f.seek(offset)
                while offset < end and len(out) < max_records and size < max_bytes:
                    header = f.read(HEADER.size)
                    length = HEADER.unpack(header)[0] if len(header) == HEADER.size else 0
                    found = _read_record(header + f.read(length), 0)
                    if found is None:   # cannot happen for bytes this process wrote whole
                        raise OSError(f"spool segment {segment}: unreadable record at {offset}")
                    payload, received, taken = found
                    offset += taken
                    size += len(payload)
                    out.append(Record(payload, received, Position(segment, offset)))
        return out

    def commit(self, records: list[Record]) -> None:
        """The records (from the cursor on, as ``read`` gave them) are in Kafka: move the
        cursor past them and delete the segments left behind."""
        if not records:
            return
        position = records[-1].end
        tmp = self.folder / "cursor.tmp"
        tmp.write_text(f"{position.segment} {position.offset}\n")
        os.replace(tmp, self.folder / "cursor")
        for n in [n for n in self._sizes if n < position.segment]:
            del self._sizes[n]
            self._path(n).unlink(missing_ok=True)
        self._cursor = position
        self._depth -= len(records)
        self._head_ms = None
        if self._depth:
            self._head_ms = self._peek_received()

    def _peek_received(self) -> int | None:
        following = self.read(max_records=1)
        return following[0].received_ms if following else None

    def close(self) -> None:
        if self._fd >= 0:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._close_retired()


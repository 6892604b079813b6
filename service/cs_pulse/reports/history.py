"""Durable event history: the events topic copied record for record into JSONL files.

Monthly figures (the agent scorecard) cannot come from Prometheus gauges, so a sink keeps the raw
log, valid and invalid records alike, for as long as the user chooses. Layout::

    DIR/2026-11-28/p003.jsonl     one line per record: {"p": 3, "o": 1042, "t": <record ms>,
                                  "k": key, "v": value} (strings; "kb"/"vb" base64 if not UTF-8)

Files are grouped by the UTC day of the record's Kafka timestamp, so retention deletes whole
days. The files are the sink's only cursor: data is fsynced before ``cursors.json`` is
replaced, and on start each partition resumes after the highest offset found in either, after
cutting a line a kill left half-written. Nothing is lost and nothing is written twice; readers
also drop a repeated (partition, offset), so even a copied-over directory reads back once.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from cs_pulse.worker.engine import Record

if TYPE_CHECKING:
    from cs_pulse.kafka_client import KafkaTarget

log = logging.getLogger("cs_pulse.reports.history")
CURSORS = "cursors.json"
TAIL_BYTES = 512 * 1024   # longer than any line: a record is at most 64 KiB before escaping


def _text(raw: bytes | None, field: str) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        return {field: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {field + "b": base64.b64encode(raw).decode()}


def _raw(line: dict[str, Any], field: str) -> bytes | None:
    if field in line:
        return str(line[field]).encode("utf-8")
    if field + "b" in line:
        return base64.b64decode(line[field + "b"])
    return None


def encode(partition: int, offset: int, timestamp_ms: int, key: bytes | None,
           value: bytes | None) -> bytes:
    return orjson.dumps({"p": partition, "o": offset, "t": timestamp_ms,
                         **_text(key, "k"), **_text(value, "v")}) + b"\n"


def day_of(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000.0, UTC).strftime("%Y-%m-%d")


class HistoryWriter:
    """Appends records to the day files and remembers how far each partition got."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.done: dict[int, int] = {}          # partition -> highest offset on disk
        self._files: dict[tuple[str, int], BinaryIO] = {}
        self._recover()

    def _recover(self) -> None:
        cursors = self.root / CURSORS
        if cursors.exists():
            self.done = {int(p): int(o) for p, o in orjson.loads(cursors.read_bytes()).items()}
        for path in sorted(self.root.glob("*/p*.jsonl")):
            last = _cut_partial_line(path)
            if last is not None:
                p, o = last
                self.done[p] = max(self.done.get(p, -1), o)

    def write(self, records: Iterable[tuple[int, int, int, bytes | None, bytes | None]]) -> int:
        """Append (partition, offset, timestamp ms, key, value) records not yet on disk."""
        n = 0
        for partition, offset, ts, key, value in records:
            if offset <= self.done.get(partition, -1):
                continue   # already copied (a re-read after a restart)
            self._file(day_of(ts), partition).write(encode(partition, offset, ts, key, value))
            self.done[partition] = offset
            n += 1
        return n

    def _file(self, day: str, partition: int) -> BinaryIO:
        f = self._files.get((day, partition))
        if f is None:
            folder = self.root / day
            folder.mkdir(exist_ok=True)
            f = self._files[(day, partition)] = open(folder / f"p{partition:03d}.jsonl", "ab")  # noqa: SIM115
        return f

    def sync(self) -> None:
        """Make everything written durable, then record the cursors (never ahead of data)."""
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
        tmp = self.root / (CURSORS + ".tmp")
        tmp.write_bytes(orjson.dumps({str(p): o for p, o in sorted(self.done.items())}))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.root / CURSORS)
        # Yesterday's files are complete once today's exist: keep only the current day open.
        newest = max((d for d, _ in self._files), default=None)
        for k in [k for k in self._files if k[0] != newest]:
            self._files.pop(k).close()

    def expire(self, keep_days: int, today: date | None = None) -> list[str]:
        """Delete day folders older than ``keep_days`` (the cursors keep the positions)."""
        limit = ((today or datetime.now(UTC).date()) - timedelta(days=keep_days)).isoformat()
        gone = []
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and folder.name < limit:
                for k in [k for k in self._files if k[0] == folder.name]:
                    self._files.pop(k).close()
                shutil.rmtree(folder)
                gone.append(folder.name)
        return gone

    def close(self) -> None:
        self.sync()
        for f in self._files.values():
            f.close()
        self._files.clear()


def _cut_partial_line(path: Path) -> tuple[int, int] | None:
    """Truncate a half-written last line; (partition, offset) of the last whole line."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES)
        f.seek(start)
        tail = f.read()
        cut = tail.rfind(b"\n") + 1
        if start + cut < size:
            log.warning("%s: cutting %d bytes of a half-written line", path, size - start - cut)
            f.truncate(start + cut)
        lines = tail[:cut].splitlines()
    if not lines:
        return None
    last = orjson.loads(lines[-1])
    return int(last["p"]), int(last["o"])


def read_history(root: Path, first_day: str = "", last_day: str = "9999") -> list[Record]:
    """Records of the day folders in [first_day, last_day], once each, in (partition, offset)
    order: what ``cs-pulse audit`` and the scorecard read."""
    seen: dict[tuple[int, int], Record] = {}
    for folder in sorted(root.iterdir()) if root.exists() else []:
        if not folder.is_dir() or not first_day <= folder.name <= last_day:
            continue
        for path in sorted(folder.glob("p*.jsonl")):
            for line in _lines(path):
                seen.setdefault((line["p"], line["o"]),
                                (line["p"], line["o"], _raw(line, "k"), _raw(line, "v")))
    return [seen[k] for k in sorted(seen)]


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):   # a half-written last line is not a record yet
                yield orjson.loads(raw)


async def run_sink(kafka: KafkaTarget, topic: str, root: Path, keep_days: int,
                   stop: asyncio.Event | None = None, idle_exit: float | None = None) -> int:
    """Copy ``topic`` into ``root`` until stopped (or idle for ``idle_exit`` seconds);
    ``kafka``: a ``Settings`` or a plaintext ``host:port``."""
    from aiokafka import AIOKafkaConsumer

    from cs_pulse.kafka_client import aiokafka_kwargs

    writer = HistoryWriter(root)
    # Without a group, a subscribed consumer is assigned every partition of the topic.
    consumer = AIOKafkaConsumer(topic, **aiokafka_kwargs(kafka), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    copied = 0
    try:
        for _ in range(100):   # metadata may lag a freshly created topic
            tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
            if tps:
                break
            await asyncio.sleep(0.2)
        if not tps:
            raise SystemExit(f"topic {topic} not found")
        for tp in tps:
            if tp.partition in writer.done:
                consumer.seek(tp, writer.done[tp.partition] + 1)
            else:
                await consumer.seek_to_beginning(tp)
        log.info("history sink: %s -> %s, resuming at %s", topic, root, writer.done)
        last_data, last_expiry = time.monotonic(), 0.0
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            rows = [(m.partition, m.offset, m.timestamp, m.key, m.value)
                    for msgs in batch.values() for m in msgs]
            if rows:
                copied += writer.write(rows)
                writer.sync()
                last_data = time.monotonic()
            elif idle_exit is not None and time.monotonic() - last_data > idle_exit:
                break
            if time.monotonic() - last_expiry > 3600:
                last_expiry = time.monotonic()
                for day in writer.expire(keep_days):
                    log.info("history sink: removed %s (older than %d days)", day, keep_days)
    finally:
        writer.close()
        await consumer.stop()
    return copied

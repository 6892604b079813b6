"""Every use of faust-streaming's private attributes, in one place and pinned to one version.

faust-streaming has no public accessor for these, and each is relied on for a guarantee
(delivery before a cursor moves, the engine holding the working copy of a table, a stall
watchdog, readiness, a quiet log). ``tests/worker/test_faust_compat.py`` checks each of them
against the installed version, so an upgrade fails there first, not in production.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.types import TableT

FAUST_VERSION = "0.15.3"   # the version these accessors were written and tested against


def kafka_producer(app: faust.App) -> Any:
    """The started aiokafka producer behind the app's producer: ``send_batches`` builds record
    batches itself, which Faust's ``send`` (one record at a time) cannot."""
    return app.producer._ensure_producer()  # type: ignore[attr-defined]


def take_rows(table: TableT) -> list[tuple[bytes, bytes | None]]:
    """Move recovered rows out of a memory-backed table's store: the engine holds the working
    copy, so Faust's copy would only double the memory."""
    store: Any = table.data
    items = list(store.data.items())
    store.data.clear()
    return items


def read_offsets(app: faust.App, topic: str) -> dict[int, int | None]:
    """The last offset Faust handed to the stream, per assigned partition of ``topic``."""
    consumer: Any = app.consumer
    return {tp.partition: consumer._read_offset.get(tp)
            for tp in consumer.assignment() if tp.topic == topic}


def recovery_done(app: faust.App) -> bool:
    """Table recovery of the current assignment has finished."""
    return bool(app.tables.recovery.completed.is_set())  # type: ignore[attr-defined]


def take_batches(stream: faust.StreamT, size: int, within: float) -> Any:
    """``Stream.take_events`` (not on the ``StreamT`` protocol): lists of events, each with
    its message (partition, offset, key, value)."""
    return stream.take_events(size, within)  # type: ignore[attr-defined]


def quiet_debug_logging() -> None:
    """Undo Faust's terminal spinner set-up, which sets the root logger to DEBUG whatever the
    --loglevel: every debug call in aiokafka (one per record sent) then builds a log record,
    which cost about a fifth of a busy worker's CPU."""
    from faust.utils.terminal.spinners import SpinnerHandler

    root = logging.getLogger()
    spinners = [h for h in root.handlers if isinstance(h, SpinnerHandler)]
    for handler in spinners:
        root.removeHandler(handler)
    if spinners and root.handlers:
        root.setLevel(min(h.level for h in root.handlers) or logging.WARNING)

"""faust_compat's private accessors against the installed faust-streaming: an upgrade that
moves one of them fails here, not in a running worker."""

from __future__ import annotations

import inspect
import logging

import faust
import pytest

from cs_pulse.worker import faust_compat


def test_the_installed_faust_is_the_version_the_accessors_were_written_for() -> None:
    assert faust.__version__ == faust_compat.FAUST_VERSION


@pytest.fixture
def app() -> faust.App:
    return faust.App("compat-test", broker="kafka://127.0.0.1:1", store="memory://",
                     web_enabled=False, autodiscover=False)


def test_producer_consumer_and_recovery_attributes_exist(app: faust.App) -> None:
    assert callable(app.producer._ensure_producer)   # type: ignore[attr-defined]
    assert isinstance(app.consumer._read_offset, dict)   # type: ignore[attr-defined]
    assert faust_compat.recovery_done(app) is False


def test_take_rows_moves_a_memory_tables_rows_out(app: faust.App) -> None:
    table = app.Table("t", partitions=1, key_type=bytes, value_type=bytes)
    table.data.data[b"k"] = b"v"   # type: ignore[attr-defined]
    assert faust_compat.take_rows(table) == [(b"k", b"v")]
    assert dict(table.data.data) == {}   # type: ignore[attr-defined]


def test_quiet_debug_logging_removes_the_spinner_handler() -> None:
    from faust.utils.terminal.spinners import Spinner, SpinnerHandler

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        root.addHandler(logging.NullHandler(logging.WARNING))
        root.addHandler(SpinnerHandler(Spinner(), level=logging.DEBUG))
        root.setLevel(logging.DEBUG)
        faust_compat.quiet_debug_logging()
        assert not any(isinstance(h, SpinnerHandler) for h in root.handlers)
        assert root.level != logging.DEBUG
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_the_batch_consumer_copies_this_faust_versions_drain_loop(app: faust.App) -> None:
    import hashlib

    from faust.transport.consumer import Consumer

    source = inspect.getsource(Consumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest() == faust_compat.DRAIN_MESSAGES_SHA256
    handled: list[object] = []

    async def handle(batch: list[object]) -> None:
        handled.extend(batch)

    faust_compat.use_batch_delivery(app, {"t": handle})
    consumer = app.consumer
    assert isinstance(consumer, faust_compat.BatchConsumer)
    assert consumer.batch_handlers == {"t": handle}

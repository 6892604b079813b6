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


def test_the_member_id_is_where_member_id_reads_it() -> None:
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, ThreadDelegateConsumer

    assert callable(AIOKafkaConsumerThread._ensure_consumer)
    assert "self._thread = " in inspect.getsource(ThreadDelegateConsumer.__init__)
    assert "self.member_id = " in inspect.getsource(GroupCoordinator.__init__)


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

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cs_pulse.devtools.children import interrupt
from cs_pulse.devtools.embedded_kafka import DEFAULT_KAFKA_VERSION, KafkaBroker

SERVICE = Path(__file__).resolve().parents[1] / "service"


def pytest_configure(config: pytest.Config) -> None:
    """A run stopped by SIGTERM or SIGHUP (a CI timeout, a closed terminal) unwinds like ^C:
    the fixtures stop the broker and the workers (which also die with this process however it
    dies: devtools/children.py)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def pytest_sessionstart(session: pytest.Session) -> None:
    """A compiled module (mypyc, built in place by ``pip install -e .``) is imported instead of
    its .py: one older than its source would test yesterday's code."""
    stale = [str(so.relative_to(SERVICE)) for so in SERVICE.rglob("*.so")
             if (py := so.with_name(so.name.split(".", 1)[0] + ".py")).exists()
             and py.stat().st_mtime > so.stat().st_mtime]
    if stale:
        pytest.exit(f"compiled modules older than their source: {', '.join(stale)}; "
                    "rebuild with ./dev setup (or .venv/bin/pip install -e .)", returncode=4)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a broker is a Kafka test, marked or not (``./dev check`` deselects
    them before any broker starts)."""
    for item in items:
        if {"kafka", "own_broker"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """One real single-node KRaft broker on 127.0.0.1 for the whole test session."""
    version = os.environ.get("CS_PULSE_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)
    broker = KafkaBroker(version=version).start()
    try:
        yield broker
    finally:
        broker.stop()

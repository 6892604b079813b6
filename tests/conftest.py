import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cs_pulse.devtools.embedded_kafka import DEFAULT_KAFKA_VERSION, KafkaBroker


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """One real single-node KRaft broker on 127.0.0.1 for the whole test session."""
    version = os.environ.get("CS_PULSE_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)
    broker = KafkaBroker(version=version).start()
    try:
        yield broker
    finally:
        broker.stop()

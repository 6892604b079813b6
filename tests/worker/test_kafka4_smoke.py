"""Opt-in smoke run of the end-to-end scenario against Kafka 4.x:
``CS_PULSE_KAFKA4=1 .venv/bin/pytest -m kafka4`` (version: ``CS_PULSE_KAFKA4_VERSION``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cs_pulse.devtools.embedded_kafka import KafkaBroker
from test_e2e_kafka import test_worker_exports_exact_first_response_and_reply_rate as scenario

pytestmark = [
    pytest.mark.kafka4,
    pytest.mark.skipif(os.environ.get("CS_PULSE_KAFKA4") != "1",
                       reason="opt-in: set CS_PULSE_KAFKA4=1"),
]


@pytest.fixture(scope="module")
def kafka4() -> Iterator[KafkaBroker]:
    with KafkaBroker(version=os.environ.get("CS_PULSE_KAFKA4_VERSION", "4.1.0")) as broker:
        yield broker


def test_end_to_end_on_kafka_4(kafka4: KafkaBroker, tmp_path: Path) -> None:
    scenario(kafka4, tmp_path)

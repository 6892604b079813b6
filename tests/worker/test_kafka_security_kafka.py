"""Kafka security against a real broker with secured listeners (``KafkaBroker(secure=True)``:
test certificates made with openssl, the SCRAM user created by Kafka's StorageTool): a worker
end to end over SASL_SSL equals the recomputation, producer and reader round trips over mTLS,
SCRAM-SHA-256, PLAIN and SASL_PLAINTEXT, and wrong credentials or an untrusted CA stop a
command at once with one line and exit code 77."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cs_pulse.audit.run import read_topic
from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.kafka_client import EX_CONFIG, EX_NOPERM, KafkaAccessError, check_connection
from cs_pulse.settings import Settings
from cs_pulse.sources.produce import EventProducer
from cs_pulse.topics import create_topic
from harness import Topology, WorkerProcess, recompute
from test_workers_kafka import FAST_REBALANCE, produce_simulation, wait_for_match

pytestmark = pytest.mark.kafka
REFUSED_WITHIN = 20.0   # seconds, interpreter start and imports included


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(secure=True).start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_worker_over_sasl_ssl_equals_the_recomputation(secure_kafka: KafkaBroker,
                                                         tmp_path: Path) -> None:
    """Topics, producer, the Faust consumer/producer/changelogs, the catch-up reader and the
    recomputation's reader all over TLS with SCRAM-SHA-512; nothing on the plaintext
    listener."""
    settings = secure_kafka.client_settings("SASL_SSL")
    env = secure_kafka.client_env("SASL_SSL")
    topo = Topology(settings.bootstrap, partitions=4)
    worker = WorkerProcess(topo, tmp_path, "w", **env, **FAST_REBALANCE).start()
    try:
        produce_simulation(settings, topo.events_topic, seed=51, minutes=10)  # type: ignore[arg-type]
        wait_for_match([worker], recompute(settings, topo), timeout=120)  # type: ignore[arg-type]
    finally:
        worker.stop()
    assert "Traceback" not in worker.log_path.read_text(errors="replace")


async def round_trip(settings: Settings, topic: str) -> list[bytes]:
    await create_topic(settings, topic, 2)
    events = [{"schema_version": 1, "event_id": f"e{i}", "type": "conversation.started",
               "ts": 1_700_000_000_000 + i, "shop_id": "s", "conversation_id": f"c{i}",
               "channel": "chat", "queue": "q"} for i in range(20)]
    async with EventProducer(settings, topic) as producer:
        await producer.send_all(events)
    return sorted(value for _, _, _, value in await read_topic(settings, topic))


@pytest.mark.parametrize(("protocol", "mechanism"), [
    ("SSL", ""),                        # mTLS: the listener requires the client certificate
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "PLAIN"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
])
def test_producer_and_reader_round_trip(secure_kafka: KafkaBroker, protocol: str,
                                        mechanism: str) -> None:
    settings = secure_kafka.client_settings(protocol, mechanism or "SCRAM-SHA-512")
    topic = f"rt-{protocol.lower()}-{mechanism.lower()}-{os.getpid()}"
    got = asyncio.run(round_trip(settings, topic))
    assert len(got) == 20 and all(b'"shop_id":"s"' in v for v in got)


def refused(secure_kafka: KafkaBroker, args: list[str], env: dict[str, str]
            ) -> tuple[int, list[str], float]:
    """Run ``cs-pulse ARGS``: exit code, stderr lines and seconds taken."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cs_pulse.cli", *args],
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stderr.splitlines(), time.monotonic() - start


def test_a_worker_with_a_wrong_password_stops_with_one_line(secure_kafka: KafkaBroker,
                                                            tmp_path: Path) -> None:
    topo = Topology(secure_kafka.client_settings().bootstrap)
    env = topo.env(0, str(tmp_path)) | secure_kafka.client_env("SASL_SSL", password="wrong")
    code, err, took = refused(secure_kafka, ["worker"], env)
    port = secure_kafka.secured_ports["SASL_SSL"]
    assert (code, err) == (EX_NOPERM, [
        f"Error: cannot connect to Kafka at 127.0.0.1:{port}: SASL authentication failed "
        "(check CS_PULSE_KAFKA_SASL_USERNAME/PASSWORD)"])
    assert took < REFUSED_WITHIN


def test_a_worker_that_does_not_trust_the_broker_stops_with_one_line(
        secure_kafka: KafkaBroker, tmp_path: Path) -> None:
    assert secure_kafka.certificates is not None
    topo = Topology(secure_kafka.client_settings().bootstrap)
    env = topo.env(0, str(tmp_path)) | secure_kafka.client_env(
        "SASL_SSL", cafile=secure_kafka.certificates.other_ca)
    code, err, took = refused(secure_kafka, ["worker"], env)
    assert code == EX_NOPERM and len(err) == 1, err
    assert err[0].startswith("Error: cannot connect to Kafka at 127.0.0.1:")
    assert "TLS certificate is not trusted" in err[0] and "CS_PULSE_KAFKA_SSL_CAFILE" in err[0]
    assert took < REFUSED_WITHIN


def test_a_producer_command_with_a_wrong_password_stops_with_one_line(
        secure_kafka: KafkaBroker) -> None:
    env = secure_kafka.client_env("SASL_SSL", "SCRAM-SHA-256", password="wrong")
    code, err, took = refused(secure_kafka, ["simulate", "--duration", "1"], env)
    assert code == EX_NOPERM and len(err) == 1, err
    assert err[0].endswith(": SASL authentication failed (check "
                           "CS_PULSE_KAFKA_SASL_USERNAME/PASSWORD)")
    assert took < REFUSED_WITHIN


def test_mtls_without_a_client_certificate_is_refused(secure_kafka: KafkaBroker) -> None:
    settings = secure_kafka.client_settings("SSL", client_cert=False)
    start = time.monotonic()
    with pytest.raises(KafkaAccessError) as refusal:
        asyncio.run(check_connection(settings))
    assert refusal.value.exit_code == EX_NOPERM
    assert "refused the client certificate" in str(refusal.value)
    assert "CS_PULSE_KAFKA_SSL_CERTFILE" in str(refusal.value)
    assert time.monotonic() - start < 5


LISTENERS = ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")


@pytest.mark.parametrize(("client", "listener"), [
    (c, li) for c in LISTENERS for li in LISTENERS if c != li])
def test_a_client_of_another_protocol_is_refused_at_once(secure_kafka: KafkaBroker,
                                                         client: str, listener: str) -> None:
    """Every mismatch of client and listener protocols: one line naming the variable to check,
    77 or 78 (not retried: a restart will not fix it), in seconds, not a hang."""
    port = secure_kafka.port if listener == "PLAINTEXT" else secure_kafka.secured_ports[listener]
    settings = secure_kafka.client_settings(client).model_copy(
        update={"broker": f"127.0.0.1:{port}"})
    start = time.monotonic()
    with pytest.raises(KafkaAccessError) as refusal:
        asyncio.run(check_connection(settings, timeout=30))
    assert refusal.value.exit_code in (EX_NOPERM, EX_CONFIG), refusal.value
    message = str(refusal.value)
    assert message.startswith(f"cannot connect to Kafka at 127.0.0.1:{port}: ")
    assert "\n" not in message and "(check CS_PULSE_KAFKA_" in message
    assert time.monotonic() - start < 5

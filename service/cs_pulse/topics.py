"""Topic creation (idempotent): every topic and changelog a worker uses, and the topics the
webhook receiver produces to."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from cs_pulse.kafka_client import KafkaTarget, aiokafka_kwargs
from cs_pulse.settings import Settings

CHANGELOG_TABLES = ("conversations", "customers", "aggregates")
# Compaction that runs (the broker's defaults roll a segment after 7 days or 1 GiB, so until
# then a takeover replays every row ever written): a segment every 10 minutes, cleaned once a
# tenth of it is superseded. A row stays 15 minutes before it may be compacted, longer than a
# recovery, so a new owner has rewritten a zombie's keys before their valid rows can go
# (fencing.py); deletions stay a day for readers part-way through a recovery.
CHANGELOG_CONFIGS = {"cleanup.policy": "compact", "segment.ms": "600000",
                     "min.cleanable.dirty.ratio": "0.1", "min.compaction.lag.ms": "900000",
                     "delete.retention.ms": "86400000"}


class TopicMismatch(RuntimeError):
    """A topic the worker needs exists with another partition count (co-partitioned stages
    and changelogs would silently mix keys): fix the topic or ``CS_PULSE_PARTITIONS``."""


def worker_topics(settings: Settings) -> list[str]:
    return [settings.events_topic, settings.dlq_topic, settings.customers_topic,
            settings.facts_topic] + [f"{settings.app_id}-{t}-changelog" for t in CHANGELOG_TABLES]


def producer_topics(settings: Settings) -> list[str]:
    """What an edge producer writes (the webhook receiver): created with the configured
    partitions, never left to the broker's auto-creation (its default count would make the
    workers refuse to start)."""
    return [settings.events_topic, settings.dlq_topic]


async def ensure_topics(settings: Settings, timeout: float = 30.0,
                        names: list[str] | None = None) -> None:
    """Create every topic a worker reads or writes (or ``names``), and wait until each has
    the configured partitions with a leader, before any consumer subscribes: a topic missing
    when the group assigns partitions is ignored until the next metadata refresh (five
    minutes)."""
    n = settings.partitions
    names = worker_topics(settings) if names is None else names
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(name, n, 1, topic_configs=CHANGELOG_CONFIGS
                           if name.endswith("-changelog") else {})
                  for name in names if name not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
        deadline = time.monotonic() + timeout
        while True:
            described = {t["topic"]: t for t in await admin.describe_topics(names)}
            wrong = [f"{name} has {len(described[name]['partitions'])}"
                     for name in names if name in described
                     and described[name]["error_code"] == 0
                     and len(described[name]["partitions"]) != n]
            if wrong:
                raise TopicMismatch(f"topics not of CS_PULSE_PARTITIONS={n} partitions: "
                                    + ", ".join(wrong))
            ready = all(name in described and described[name]["error_code"] == 0
                        and all(p["leader"] >= 0 for p in described[name]["partitions"])
                        for name in names)
            if ready:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics without a leader after {timeout:.0f} s: {names}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def create_topic(kafka: KafkaTarget, name: str, partitions: int,
                       configs: dict[str, str] | None = None) -> None:
    """Create one topic (replication 1); fails if it exists. ``kafka``: a ``Settings`` or a
    plaintext ``host:port``."""
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(kafka))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        await admin.close()

"""Topic creation (idempotent): every topic and changelog a worker uses."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from cs_pulse.settings import Settings

CHANGELOG_TABLES = ("conversations", "customers", "aggregates")


async def ensure_topics(settings: Settings) -> None:
    """Create every topic a worker reads or writes before any consumer subscribes: a topic
    missing when the group assigns partitions is ignored until the next metadata refresh."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        n = settings.partitions
        wanted = [NewTopic(name, n, 1) for name in (
            settings.events_topic, settings.dlq_topic, settings.customers_topic,
            settings.facts_topic)]
        wanted += [NewTopic(f"{settings.app_id}-{table}-changelog", n, 1,
                            topic_configs={"cleanup.policy": "compact"})
                   for table in CHANGELOG_TABLES]
        wanted = [t for t in wanted if t.name not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create one topic (replication 1); fails if it exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()

"""The topics a worker creates on the real broker: its changelogs compact for real (segments
that roll, a cleaner that runs), with the settings ``topics.CHANGELOG_CONFIGS`` gives."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cs_pulse import topics
from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.settings import Settings


def test_changelogs_are_created_with_compaction_that_runs(kafka: KafkaBroker) -> None:
    settings = Settings(broker=kafka.bootstrap, app_id=f"topics-{uuid.uuid4().hex[:8]}",
                        events_topic=f"ev-{uuid.uuid4().hex[:8]}", partitions=2)

    async def configs() -> dict[str, dict[str, str]]:
        await topics.ensure_topics(settings)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            names = topics.worker_topics(settings)
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
        finally:
            await admin.close()
        out: dict[str, dict[str, str]] = {}
        for response in responses:
            for _, _, _, name, entries in response.resources:
                out[name] = {entry[0]: entry[1] for entry in entries}
        return out

    described = asyncio.run(configs())
    changelogs = [n for n in described if n.endswith("-changelog")]
    assert len(changelogs) == len(topics.CHANGELOG_TABLES)
    for name in changelogs:
        assert described[name].items() >= topics.CHANGELOG_CONFIGS.items(), name
    assert described[settings.events_topic]["cleanup.policy"] == "delete"

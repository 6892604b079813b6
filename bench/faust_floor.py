"""Faust's own per-record floor: an agent that only counts the events topic's records, with the
worker's batching (``take_events``). Run by ``bench.run`` as a subprocess; writes events/s to
the file named by ``FLOOR_OUT`` and exits once ``FLOOR_EVENTS`` records have been counted."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import faust

from cs_pulse.kafka_client import faust_credentials
from cs_pulse.settings import Settings


def main() -> None:
    settings = Settings()
    target = int(os.environ["FLOOR_EVENTS"])
    out = Path(os.environ["FLOOR_OUT"])
    app = faust.App(settings.app_id, broker=settings.broker_url, store="memory://",
                    broker_credentials=faust_credentials(settings),
                    web_enabled=False, datadir=settings.data_dir, autodiscover=False,
                    consumer_auto_offset_reset="earliest", stream_buffer_maxsize=8192)
    topic = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw")
    seen: dict[str, Any] = {"n": 0, "start": None}

    @app.agent(topic)
    async def count(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(  # type: ignore[attr-defined]
                settings.batch_size, 0.05):
            if seen["start"] is None:
                seen["start"] = time.perf_counter()
            seen["n"] += len(batch)
            if seen["n"] >= target:
                out.write_text(str(seen["n"] / (time.perf_counter() - seen["start"])))
                os._exit(0)

    sys.argv = ["faust-floor", "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()

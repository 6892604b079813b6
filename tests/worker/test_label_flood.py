"""A producer floods 100k distinct agent ids: the label guard keeps the page's series and the
engine's memory bounded (README "Limits: label cardinality and label values")."""

from __future__ import annotations

import gc
import sys

import orjson

from cs_pulse.domain.labels import OVERFLOW
from cs_pulse.settings import Settings
from cs_pulse.worker.engine import Record
from cs_pulse.worker.inprocess import InProcess
from factory import T0, event_dict

CHUNK = 10_000


def _flood(run: InProcess, chunks: int) -> list[int]:
    """``chunks`` x 10k agent.status events, each from a new agent id; the interpreter's
    allocated blocks after each chunk."""
    blocks, offset = [], 0
    for chunk in range(chunks):
        records: list[Record] = []
        for i in range(CHUNK):
            n = chunk * CHUNK + i
            event = event_dict("agent.status", n * 0.01, "", agent_id=f"flood-{n}",
                               status="online", queue="presale")
            records.append((0, offset, None, orjson.dumps(event)))
            offset += 1
        run.feed(records)
        run.release_all()
        gc.collect()
        blocks.append(sys.getallocatedblocks())
    return blocks


def test_100k_agent_ids_keep_series_and_memory_bounded() -> None:
    run = InProcess(Settings(max_agents=1000, grace_seconds=0))
    blocks = _flood(run, 10)
    page = run.samples(now=T0 + 1000)
    agents = {labels["agent"] for _, labels, _ in page if "agent" in labels}
    assert len(agents) == 1001 and OVERFLOW in agents
    overflow = {lb["label"]: v for n, lb, v in page if n == "cs_label_overflow_total"}
    assert overflow["agent"] == 99_000
    # Flat: the last 80k events (all folded) add under 1 % to what the first 20k left.
    assert blocks[-1] - blocks[1] < 0.01 * blocks[1], blocks
    per_agent = len([1 for _, labels, _ in page if labels.get("agent") == "flood-0"])
    assert len(page) <= 200 + per_agent * len(agents)


def test_without_the_limit_the_same_flood_grows_memory() -> None:
    """The control: a limit above the flood keeps every id, and memory grows with them."""
    run = InProcess(Settings(max_agents=10**6, grace_seconds=0))
    blocks = _flood(run, 3)
    assert blocks[-1] - blocks[0] > 2 * CHUNK * 3, blocks   # > 3 blocks per new agent

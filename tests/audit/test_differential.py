"""Differential tests: on generated stories, every number the engine exports equals the DuckDB
SQL recomputation (``cs_pulse.audit.recompute``, written from the README alone), at several
reading instants; and the invariants every story must keep.

CI runs ``CS_PULSE_STORIES`` examples (default 200); a long search:
``CS_PULSE_STORIES=5000 .venv/bin/pytest tests/test_differential.py``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs_pulse.audit.compare import compared, differences, table
from cs_pulse.audit.recompute import recompute
from cs_pulse.settings import Settings
from cs_pulse.worker.inprocess import InProcess, Sample
from stories import SHOPS, Story, generate

EXAMPLES = int(os.environ.get("CS_PULSE_STORIES", "200"))
STORIES = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 200,
                   suppress_health_check=[HealthCheck.too_slow])


def story_settings(story: Story) -> Settings:
    return Settings(grace_seconds=story.grace, partitions=story.partitions, shops=SHOPS)


def readings(story: Story) -> list[tuple[float, list[Sample], list[Sample]]]:
    """(instant, engine samples, SQL samples) at every probe of the story."""
    cfg = story_settings(story)
    ip = InProcess(cfg)
    fed = 0
    out = []
    for probe in story.probes:
        ip.feed(story.records[fed:probe.after])
        fed = probe.after
        ip.release_all(probe.now)   # a reading: a release with its instant as the clock
        engine = ip.samples(probe.now)
        sql = recompute(story.records[:probe.after], probe.now, grace_seconds=story.grace,
                        shops=SHOPS, releases=story.releases(probe.after))
        out.append((probe.now, engine, sql))
    return out


@STORIES
@given(seed=st.integers(0, 2**32 - 1), conversations=st.integers(1, 8),
       disorder=st.booleans())
def test_every_number_equals_the_sql_recomputation(seed: int, conversations: int,
                                                   disorder: bool) -> None:
    story = generate(seed, conversations, disorder=disorder)
    for now, engine, sql in readings(story):
        diffs = differences(compared(sql), compared(engine), tolerance=1e-9)
        assert not diffs, f"seed {seed} at {now}:\n{table(diffs)}"


@STORIES
@given(seed=st.integers(0, 2**32 - 1), conversations=st.integers(1, 8))
def test_ratios_stay_in_bounds_and_live_gauges_return_to_zero(seed: int,
                                                               conversations: int) -> None:
    story = generate(seed, conversations)
    cfg = story_settings(story)
    ip = InProcess(cfg)
    ip.feed(story.records)
    last = max(p.now for p in story.probes)
    ip.release_all(last)
    for name, labels, v in ip.samples(last):
        if name.endswith("_ratio"):
            assert 0.0 <= v <= 1.0, (name, labels, v)
    # Nothing more arrives: read 9 days later (no event moves any watermark), everything left
    # open has expired at its deadline.
    end = last + 9 * 86400
    ip.release_all(end)
    for name, labels, v in ip.samples(end):
        if name in ("cs_waiting_conversations", "cs_agent_waiting_conversations",
                    "cs_oldest_waiting_seconds", "cs_agent_oldest_waiting_seconds",
                    "cs_agent_open_sessions"):
            assert v == 0, (name, labels, v)
        if name.endswith("_ratio"):
            assert 0.0 <= v <= 1.0, (name, labels, v)

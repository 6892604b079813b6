"""The seeds' catalogue, live part (README "Resolution rate, handled conversations, reviews,
forbidden phrases"): hand-computed cases through the whole engine, and the ingest edge's
phrase matcher."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from cs_pulse.domain.model import Event
from cs_pulse.ingest import phrases
from cs_pulse.ingest.decode import Decoder
from cs_pulse.ingest.phrases import PhraseMatcher
from cs_pulse.settings import forbidden_phrases_config
from factory import event_dict
from shapes.chatwoot import Agent, Conversation
from story import Story
from webhook_harness import receiver, signed

Q = {"shop": "s1", "queue": "presale", "channel": "chat"}
A1 = {"shop": "s1", "team": "", "agent": "a1"}
A2 = {"shop": "s1", "team": "", "agent": "a2"}


def test_resolution_ratio_and_time_from_the_segment_start() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.add("conversation.assigned", 1, agent_id="a1")
    s.cust(2)
    s.agent(5)
    s.add("conversation.closed", 100, closed_by="agent", resolved=True)     # 100 s
    s.add("conversation.reopened", 200)
    s.add("conversation.closed", 250, closed_by="customer", resolved=False)
    s.add("conversation.reopened", 300)
    s.add("conversation.closed", 420, closed_by="agent", resolved=True)     # 420 - 300
    m = s.run(now=430)
    assert m("cs_resolution_seconds_count", **Q) == 2
    assert m("cs_resolution_seconds_sum", **Q) == 220.0
    assert m("cs_agent_resolution_seconds_sum", **A1) == 220.0
    assert m.get("cs_resolution_ratio", window="15m", **Q) == pytest.approx(2 / 3)
    assert m.get("cs_agent_resolution_ratio", window="today", **A1) == pytest.approx(2 / 3)
    assert m.get("cs_resolution_window_seconds", window="15m", stat="avg", **Q) == 110.0
    # The 1m window at 430 s holds only the last close: resolved, 1 of 1.
    assert m.get("cs_resolution_ratio", window="1m", **Q) == 1.0


def test_a_conversation_is_handled_once_per_agent() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.add("conversation.assigned", 1, agent_id="a1")
    s.add("conversation.transferred", 10, to_agent_id="a2")
    s.add("conversation.transferred", 20, to_agent_id="a1")                 # back: not again
    s.add("conversation.closed", 30, closed_by="agent", resolved=True)
    s.add("conversation.reopened", 40)                                      # held again: no
    s.add("conversation.closed", 50, closed_by="agent", resolved=True)
    # Closed conversations are forgotten 25 h after their last event; the same id is then a
    # new conversation, handled anew.
    later = 50 + 25 * 3600 + 60
    s.add("conversation.started", later)
    s.add("conversation.assigned", later + 1, agent_id="a1")
    m = s.run(now=later + 10)
    assert m("cs_agent_conversations_handled_total", **A1) == 2
    assert m("cs_agent_conversations_handled_total", **A2) == 1
    assert m.get("cs_agent_handled_conversations", window="60m", **A1) == 1
    assert m.get("cs_agent_handled_conversations", window="60m", **A2) == 0   # 0 is exported
    # today (Shanghai) began after the first life's holdings: only the new conversation.
    assert m.get("cs_agent_handled_conversations", window="today", **A1) == 1


def test_negative_reviews_blamed_on_attitude_count_apart() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.add("conversation.assigned", 1, agent_id="a1")
    s.add("conversation.closed", 10, closed_by="agent", resolved=True)
    s.add("satisfaction.rated", 20, score=1, scale=5, attitude="negative")
    s.add("satisfaction.rated", 21, score=2, scale=5, attitude="neutral")
    s.add("satisfaction.rated", 22, score=5, scale=5, attitude="negative")   # not negative
    m = s.run(now=30)
    assert m("cs_csat_dissatisfied_total", **Q) == 2
    assert m("cs_csat_dissatisfied_attitude_total", **Q) == 1
    assert m("cs_agent_csat_dissatisfied_attitude_total", **A1) == 1
    assert m("cs_csat_satisfied_total", **Q) == 1


def test_violations_of_agent_messages_are_summed_and_text_is_ignored() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.cust(1, violations=5)                               # customers cannot violate
    s.agent(2, violations=2)
    s.agent(3, agent="a2", violations=1)
    s.agent(4, text="this has badword twice: badword")    # the worker never reads text
    m = s.run(now=10)
    assert m("cs_forbidden_phrases_total", **Q) == 3
    assert m("cs_agent_forbidden_phrases_total", **A1) == 2
    assert m("cs_agent_forbidden_phrases_total", **A2) == 1
    assert m.get("cs_agent_forbidden_phrase_uses", window="60m", **A1) == 2
    assert m.get("cs_agent_forbidden_phrase_uses", window="today", **A2) == 1


def test_the_decoder_drops_text_before_anything_keeps_it() -> None:
    raw = orjson.dumps(event_dict("message.sent", 0, sender="agent", agent_id="a1", chars=3,
                                  text="secret words"))
    event = Decoder().decode(raw)
    assert isinstance(event, Event) and "text" not in event.attrs


def test_phrase_matcher_counts_every_occurrence_in_chinese_and_latin_text() -> None:
    m = PhraseMatcher(["不知道", "你自己看", "Stupid", "  ", "aa"])
    assert m.count("我不知道，你自己看吧。不知道！") == 3   # noqa: RUF001 (real punctuation)
    assert m.count("STUPID question, stupid answer") == 2
    assert m.count("aaa") == 2                            # overlapping occurrences each count
    assert m.count("") == 0 and PhraseMatcher([]).count("anything") == 0
    agent = {"type": "message.sent", "sender": "agent", "violations": 1, "text": "不知道"}
    assert m.redact(agent) == {"type": "message.sent", "sender": "agent", "violations": 2}
    customer = {"type": "message.sent", "sender": "customer", "text": "stupid"}
    assert m.redact(customer) == {"type": "message.sent", "sender": "customer"}
    clean = {"type": "message.sent", "sender": "agent", "text": "您好"}
    assert m.redact(clean) == {"type": "message.sent", "sender": "agent"}


def test_phrases_come_from_a_file_or_inline_json(tmp_path: Path) -> None:
    path = tmp_path / "phrases.txt"
    path.write_text("# 违规用语\n不知道\n\n  你自己看  \n", encoding="utf-8")
    assert forbidden_phrases_config(str(path)) == ["不知道", "你自己看"]
    assert forbidden_phrases_config('["a", "b"]') == ["a", "b"]
    assert forbidden_phrases_config("") == []


async def test_the_webhook_receiver_counts_phrases_and_spools_no_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_PULSE_FORBIDDEN_PHRASES", '["不知道"]')
    phrases.configured.cache_clear()
    try:
        c = Conversation(42, created=time.time())
        body = orjson.dumps(c.reply(7, time.time(), Agent(3, "Wu"), "不知道, 真的不知道"))
        async with receiver() as rx:
            assert (await rx.post(body, signed(body)))[0] == 200
            [[event]] = rx.sent
            spooled = b"".join(r.payload for r in rx.spool.read())
        assert event["violations"] == 2 and "text" not in event
        assert "不知道".encode() not in spooled and "不知道" not in orjson.dumps(event).decode()
    finally:
        phrases.configured.cache_clear()

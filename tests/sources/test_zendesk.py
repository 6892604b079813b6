"""Zendesk as Zendesk sends it: event-webhook bodies in Zendesk's shape (``shapes/zendesk.py``),
mapped and folded through the whole engine, in the order Zendesk sent them and in others;
the figures are computed by hand in comments."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

import orjson
import pytest

from cs_pulse.ingest.decode import Decoder, Rejected
from cs_pulse.ingest.phrases import PhraseMatcher
from cs_pulse.sources.webhooks.platform import Delivery, Malformed, Refused
from cs_pulse.sources.webhooks.zendesk import CHANNELS, MESSAGING, Zendesk, sign
from factory import T0
from shapes import zendesk as zd
from shapes.stories import (
    AGENT1,
    AGENT2,
    INTEGRATION,
    REQUESTER,
    ZENDESK_FIGURES,
    ZENDESK_MESSAGING_FIGURES,
    ZENDESK_SHOP,
    ZENDESK_WEB_FORM_FIGURES,
    check,
    zendesk_messaging_story,
    zendesk_story,
    zendesk_web_form_story,
)
from story import Metrics, Story
from webhook_harness import receiver

Body = dict[str, Any]


def platform(shop: str = ZENDESK_SHOP) -> Zendesk:
    return Zendesk(b"zd-secret", shop, frozenset({INTEGRATION}))


def events(body: Body, zendesk: Zendesk | None = None) -> list[Body]:
    # As the receiver parses it: wide integers exact.
    payload = json.loads(zd.dumps(body))
    return (zendesk or platform()).map(payload, Delivery({}, b"", 0)).events


def fold(bodies: list[Body], now: float) -> Metrics:
    story, redact = Story(), PhraseMatcher([]).redact
    for body in bodies:
        for event in events(body):
            story.raw(orjson.dumps(redact(event)))
    return story.run(now)


def test_an_email_ticket_with_an_auto_reply_a_note_a_retry_and_a_transfer() -> None:
    """Figures by hand in ``shapes/stories``."""
    updates = zendesk_story(T0)
    m = fold([b for update in updates for b in update], now=2500)
    assert check(m, ZENDESK_FIGURES) == {}
    # Applied once: the retried reply and its reopen (2), the transfer told by its two changes
    # (1), the reopen told by both events of the two updates that leave the ticket open (2).
    assert m("cs_events_duplicate_total") == 5


@pytest.mark.parametrize("seed", range(6))
def test_the_events_of_one_update_in_any_order_give_the_same_numbers(seed: int) -> None:
    updates = zendesk_story(T0)
    orders = list(itertools.permutations(range(2)))
    shuffled = [update if len(update) < 2 else [update[i] for i in orders[(seed + n) % 2]]
                for n, update in enumerate(updates)]
    m = fold([b for update in shuffled for b in update], now=2500)
    assert check(m, ZENDESK_FIGURES) == {}


def test_a_messaging_ticket_with_a_bot_a_trigger_and_messages_told_twice() -> None:
    """Figures by hand in ``shapes/stories``."""
    m = fold(zendesk_messaging_story(T0), now=300)
    assert check(m, ZENDESK_MESSAGING_FIGURES) == {}


def test_a_reopened_web_form_ticket_whatever_order_its_updates_arrive_in() -> None:
    for reverse in (False, True):
        m = fold(zendesk_web_form_story(T0, reverse), now=700)
        assert check(m, ZENDESK_WEB_FORM_FIGURES) == {}, reverse


def test_assignment_changes() -> None:
    t = zd.Ticket("7", created=T0, group="1")
    [first] = events(t.update(T0, AGENT1, ("agent", AGENT1))[0])
    assert (first["type"], first["agent_id"]) == ("conversation.assigned", f"zd-agent-{AGENT1}")
    [routed] = events(zd.Ticket("8", created=T0).update(T0, AGENT1, ("group", "2"))[0])
    assert (routed["type"], routed["queue"]) == ("conversation.queued", "group-2")
    both = t.update(T0 + 10, AGENT1, ("agent", AGENT2), ("group", "3"))
    transfers = [e for b in both for e in events(b)]
    assert {e["event_id"] for e in transfers} == {transfers[0]["event_id"]}   # one transfer
    assert transfers[0] == transfers[1]                                      # either first
    assert (transfers[0]["to_agent_id"], transfers[0]["to_queue"]) == (
        f"zd-agent-{AGENT2}", "group-3")
    # ids as numbers or strings: the same events
    as_number = t.update(T0 + 20, AGENT1, ("agent", "7003"))[0]
    as_number["event"] |= {"current": 7003, "previous": int(AGENT2)}
    as_string = as_number | {"event": as_number["event"] | {"current": "7003",
                                                           "previous": AGENT2}}
    assert events(as_number) == events(as_string)


def test_wide_sequence_ids_stay_exact_through_the_receiver() -> None:
    """Two updates whose sequence ids differ beyond a float's precision are two transfers,
    not one (orjson alone would make both ids the same float)."""
    t = zd.Ticket("9", created=T0, group="1", assignee=AGENT1)
    first = t.update(T0 + 1, AGENT1, ("agent", AGENT2))[0]
    second = t.update(T0 + 2, AGENT1, ("agent", AGENT1))[0]
    first["event"]["meta"]["sequence"]["id"] = 39313930383633353634323835
    second["event"]["meta"]["sequence"]["id"] = 39313930383633353634323836

    async def send() -> list[list[Body]]:
        now = time.time()
        async with receiver([Zendesk(b"zd-secret", ZENDESK_SHOP)]) as rx:
            for body in (first, second):
                raw = zd.dumps(body)
                stamp = zd.whole(now)
                headers = {"x-zendesk-webhook-signature-timestamp": stamp,
                           "x-zendesk-webhook-signature": sign(b"zd-secret", stamp, raw)}
                assert (await rx.post(raw, headers, path="/zendesk"))[0] == 200
            return rx.sent

    import asyncio
    sent = asyncio.run(send())
    ids = [e["event_id"] for batch in sent for e in batch]
    assert ids == ["zd-9-transferred-39313930383633353634323835",
                   "zd-9-transferred-39313930383633353634323836"]


@pytest.mark.parametrize(("actor", "status", "want"), [
    (AGENT1, "SOLVED", ("agent", True)),
    (REQUESTER, "SOLVED", ("customer", True)),
    ("-1", "SOLVED", ("system", True)),
    (INTEGRATION, "SOLVED", ("bot", True)),
    (AGENT1, "CLOSED", ("agent", False)),    # closed without solving: a merge, a trigger
])
def test_who_closed_and_whether_it_was_solved(actor: str, status: str,
                                              want: tuple[str, bool]) -> None:
    t = zd.Ticket("10", created=T0, status="OPEN")
    [closed] = events(t.update(T0 + 5, actor, ("status", status))[0])
    assert (closed["closed_by"], closed["resolved"]) == want
    assert closed["ts"] == round((T0 + 5) * 1000) + 1   # after the rest of its update


def test_statuses_among_the_open_ones_change_nothing_and_solved_to_closed_neither() -> None:
    t = zd.Ticket("11", created=T0, status="NEW")
    for status in ("OPEN", "PENDING", "HOLD", "OPEN"):
        moved = [e["type"] for e in events(t.update(T0, AGENT1, ("status", status))[0])]
        assert moved == ["conversation.reopened"]   # no effect on an open conversation
    assert [e["type"] for e in events(t.update(T0, AGENT1, ("status", "SOLVED"))[0])] == [
        "conversation.closed"]
    assert events(t.update(T0, AGENT1, ("status", "CLOSED"))[0]) == []


@pytest.mark.parametrize(("score", "reason", "want"), [
    ("GOOD", 0, {"score": 5, "scale": 5}),
    ("BAD", 5, {"score": 1, "scale": 5}),
    ("BAD", 8, {"score": 1, "scale": 5, "attitude": "negative"}),
    (4, 0, {"score": 4, "scale": 5}),
    (9, 0, {"score": 9, "scale": 10, "scale_min": 0}),
])
def test_csat(score: Any, reason: int, want: dict[str, Any]) -> None:
    t = zd.Ticket("12", created=T0, status="SOLVED", assignee=AGENT2)
    [rated] = events(t.csat(T0 + 10, score, reason))
    assert {k: rated[k] for k in want} == want
    assert "attitude" not in rated or "attitude" in want
    assert rated["agent_id"] == f"zd-agent-{AGENT2}"
    assert events(t.csat(T0, "OFFERED")) == []
    with pytest.raises(Malformed):
        events(t.csat(T0, "MEH"))


def test_comments_who_spoke() -> None:
    t = zd.Ticket("13", created=T0, status="OPEN")
    said = {}
    for name, author in {"customer": (REQUESTER, False, True, "hi"),
                         "note": (AGENT1, True, False, "internal"),
                         "agent": (AGENT1, True, True, "hello"),
                         "integration": (INTEGRATION, True, True, "auto")}.items():
        said[name] = [e.get("sender") for e in events(t.update(T0, author[0],
                                                               ("comment", author))[0])]
    assert said == {"customer": [None, "customer"], "note": [None], "agent": [None, "agent"],
                    "integration": [None, "bot"]}   # None: the update's (no-op) reopen


def test_channels() -> None:
    assert CHANNELS["mail"] == CHANNELS["web_form"] == "email"
    assert CHANNELS["native_messaging"] == CHANNELS["whatsapp"] == "chat"
    assert CHANNELS["phone_call_inbound"] == CHANNELS["voicemail"] == "phone"
    assert CHANNELS["instagram_dm"] == CHANNELS["twitter_dm"] == "social"
    assert "email" not in CHANNELS and "web" not in CHANNELS and "voice" not in CHANNELS
    assert set(CHANNELS) >= MESSAGING


def test_everything_else_is_acknowledged_and_ignored() -> None:
    t = zd.Ticket("14", created=T0)
    for kind in ("ticket.priority_changed", "ticket.tags_changed", "ticket.merged",
                 "ticket.custom_status_changed", "ticket.soft_deleted"):
        mapped = platform().map(json.loads(zd.dumps(t.body(kind, T0, {"current": "x"}))),
                                Delivery({}, b"", 0))
        assert (mapped.kind, mapped.events) == (kind.removeprefix(""), [])
        assert mapped.delivery_ids


def test_shop_from_the_account_unless_configured() -> None:
    t = zd.Ticket("15", created=T0)
    [started, _] = events(t.update(T0, REQUESTER, ("created", None))[0], platform(""))
    assert started["shop_id"] == str(zd.ACCOUNT)


def test_every_mapped_event_is_valid_for_the_worker() -> None:
    decoder = Decoder(now=lambda: 4.0e9)
    for update in zendesk_story(T0):
        for body in update:
            for event in events(body):
                decoded = decoder.decode(orjson.dumps(PhraseMatcher([]).redact(event)))
                assert not isinstance(decoded, Rejected), event


def test_the_signature_as_zendesk_makes_it() -> None:
    body = b'{"say": "hello"}'
    stamp = "2021-07-25T10:00:00Z"
    ts = 1627207200.0
    # "Verifying webhook authenticity": base64(HMAC-SHA256(the secret as its literal
    # string, timestamp + body)); the builder's test secret is not decoded.
    secret = zd.TEST_SECRET.encode()
    want = base64.b64encode(hmac.new(secret, stamp.encode() + body,
                                     hashlib.sha256).digest()).decode()
    assert sign(secret, stamp, body) == want
    z = Zendesk(secret)
    good = {"x-zendesk-webhook-signature-timestamp": stamp, "x-zendesk-webhook-signature": want}
    verdict = z.authenticate(Delivery(good, body, 0), ts + 60, 300)
    assert not isinstance(verdict, Refused) and verdict.keys == ()   # retries are re-signed
    refused = {
        "unsigned": z.authenticate(Delivery({}, body, 0), ts, 300),
        "stale": z.authenticate(Delivery(good, body, 0), ts + 301, 300),
        "forged": z.authenticate(Delivery(good, body + b" ", 0), ts, 300),
        "bad time": z.authenticate(Delivery(good | {
            "x-zendesk-webhook-signature-timestamp": "yesterday"}, body, 0), ts, 300),
    }
    assert {k: getattr(v, "reason", None) for k, v in refused.items()} == {
        "unsigned": "unsigned", "stale": "stale", "forged": "forged", "bad time": "unsigned"}

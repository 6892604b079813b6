"""Intercom as Intercom sends it: notifications in Intercom's shape (``shapes/intercom.py``),
mapped and folded through the whole engine; the figures are computed by hand in comments."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest

from cs_pulse.ingest.decode import Decoder, Rejected
from cs_pulse.ingest.phrases import PhraseMatcher
from cs_pulse.sources.webhooks.intercom import CHANNELS, MAX_DELAY, Intercom, plain, sign
from cs_pulse.sources.webhooks.platform import Delivery, Malformed, Refused
from factory import T0
from shapes.intercom import FIN, OPERATOR, Admin, Conversation
from shapes.stories import INTERCOM_FIGURES, check, intercom_story
from story import Metrics, Story

SHOP = "shop-ic"
ALICE, BOB, CAROL = Admin("101", "Alice"), Admin("102", "Bob"), Admin("103", "Carol")
TEAM5 = {"type": "team", "id": "5"}


def platform() -> Intercom:
    return Intercom(b"client-secret", SHOP)


def events(body: dict[str, Any]) -> list[dict[str, Any]]:
    return platform().map(body, Delivery({}, b"", 0)).events


def fold(bodies: list[dict[str, Any]], now: float) -> Metrics:
    story, redact = Story(), PhraseMatcher([]).redact
    for body in bodies:
        for event in events(body):
            story.raw(orjson.dumps(redact(event)))
    return story.run(now)


def test_a_messenger_conversation_with_fin_a_hand_off_a_transfer_and_a_rating() -> None:
    """Figures by hand in ``shapes/stories``."""
    m = fold(intercom_story(T0), now=600)
    assert check(m, INTERCOM_FIGURES) == {}
    assert m("cs_events_duplicate_total") == 2   # the part under two topics, the redelivery


def test_an_outbound_conversation_has_no_wait_until_the_customer_writes() -> None:
    c = Conversation("77", created=T0, delivered_as="admin_initiated",
                     source_author=ALICE.author(), source_body="<p>Your order shipped</p>")
    bodies = [c.notification("conversation.admin.single.created", T0),
              c.user_replied("1", T0 + 50, "Where is the tracking number?"),
              c.admin_replied("2", T0 + 80, ALICE, "Here it is")]
    m = fold(bodies, now=100)
    q = {"shop": SHOP, "queue": "unassigned", "channel": "chat"}
    assert m("cs_queued_total", **q) == 1
    assert m("cs_first_response_seconds_sum", **q) == 30.0          # from the customer's 50
    assert m("cs_messages_total", sender="agent", **q) == 2


def test_a_campaign_answered_by_the_customer_waits_for_the_humans() -> None:
    """A series message sent "on behalf of" an admin is automated: a bot message, and the
    customer's answer waits for a human (not self-service until someone replies)."""
    c = Conversation("78", created=T0, delivered_as="automated",
                     source_author=ALICE.author(), source_body="<p>20% off today</p>")
    bodies = [c.user_created(), c.user_replied("1", T0 + 10, "Does it apply to shoes?"),
              c.admin_replied("2", T0 + 70, BOB, "Yes")]
    m = fold(bodies, now=100)
    q = {"shop": SHOP, "queue": "unassigned", "channel": "chat"}
    assert m("cs_messages_total", sender="bot", **q) == 1
    assert m("cs_first_response_seconds_sum", **q) == 60.0


def test_an_email_routed_reassigned_when_away_and_transferred_to_another_team() -> None:
    c = Conversation("79", created=T0, source_type="email",
                     source_author={"type": "lead", "id": "5f1", "name": "Li",
                                    "email": "li@example.com"})
    routed = c.assigned("1", T0, OPERATOR, TEAM5, "default_assignment")
    routing = routed["data"]["item"]["conversation_parts"]["conversation_parts"]
    bodies = [c.user_created(routing),                               # routed at creation
              c.assigned("2", T0 + 10, ALICE.author(), ALICE.reference()),
              c.assigned("3", T0 + 20, OPERATOR, {"type": "nobody_admin", "id": None},
                         "away_mode_assignment"),
              c.assigned("4", T0 + 30, CAROL.author(), {"type": "team", "id": "6"}),
              c.admin_replied("5", T0 + 3600, BOB, "Sorry for the wait")]
    m = fold(bodies, now=4000)
    email = {"shop": SHOP, "channel": "email"}
    assert m("cs_conversations_total", queue="team-5", **email) == 1
    assert m("cs_queued_total", queue="team-5", **email) == 1       # the wait starts at 0
    assert m("cs_first_response_seconds_sum", queue="team-5", **email) == 3600.0
    assert m("cs_transferred_total", queue="team-5", **email) == 1  # counted once, at creation
    assert [e["type"] for e in events(bodies[2])] == ["conversation.transferred"]
    assert [(e["type"], e.get("to_queue")) for e in events(bodies[3])] == [
        ("conversation.transferred", "team-6")]


def test_parts_by_type_and_author() -> None:
    c = Conversation("80", created=T0)
    note = events(c.noted("1", T0, ALICE, "internal"))
    bot_as_admin_topic = events(c.bot_replied("2", T0, "hi", topic="conversation.admin.replied"))
    snooze = events(c.snoozed("3", T0, ALICE))
    unsnooze = events(c.unsnoozed("4", T0))
    reopen = events(c.opened("5", T0, ALICE))
    to_bot = events(c.assigned("6", T0, OPERATOR, {"type": "bot", "id": "6827949"}))
    assert (note, snooze, unsnooze, to_bot) == ([], [], [], [])
    assert [e["sender"] for e in bot_as_admin_topic] == ["bot"]
    assert [e["type"] for e in reopen] == ["conversation.reopened"]


def test_bodies_in_html_become_plain_text_for_counting() -> None:
    assert plain('<p class="no-margin">Hi &amp; welcome<br>there</p>') == "Hi & welcomethere"
    assert plain("plain 2.15 text") == "plain 2.15 text"
    c = Conversation("81", created=T0)
    [event] = events(c.admin_replied("1", T0, ALICE, "Hello"))
    assert (event["chars"], event["text"]) == (5, "Hello")


def test_what_is_not_a_conversation_event_is_ignored_and_the_unknown_refused() -> None:
    ping = {"type": "notification_event", "app_id": "x", "data": {
        "type": "notification_event_data", "item": {"type": "ping", "message": "hi"}},
        "links": {}, "id": None, "topic": "ping", "delivery_status": None,
        "delivery_attempts": 1, "delivered_at": 0, "first_sent_at": 1, "created_at": 1,
        "self": None}
    mapped = platform().map(ping, Delivery({}, b"", 0))
    assert (mapped.kind, mapped.events, mapped.delivery_ids) == ("ping", [], ())
    c = Conversation("82", created=T0)
    deleted = c.notification("conversation.deleted", T0) | {"data": {"item": {
        "type": "conversation", "conversation_id": "82"}}}
    assert events(deleted) == []
    legacy = c.user_created()
    legacy["data"]["item"]["conversation_message"] = {"type": "conversation_message"}
    for bad in ({"type": "event", "topic": "x"}, legacy,
                c.user_created() | {"data": {"item": c.item([]) | {
                    "conversation_parts": {"conversation_parts": "x"}}}},
                c.rated(T0, 9, ALICE)):
        with pytest.raises(Malformed):
            events(bad)


def test_channels_from_the_source_type() -> None:
    assert CHANNELS == {"conversation": "chat", "push": "chat", "whatsapp": "chat",
                        "sms": "chat", "phone_switch": "chat", "email": "email",
                        "facebook": "social", "instagram": "social", "twitter": "social",
                        "phone_call": "phone"}
    c = Conversation("83", created=T0, source_type="whatsapp")
    assert {e["channel"] for e in events(c.user_created())} == {"chat"}


def test_every_mapped_event_is_valid_for_the_worker() -> None:
    decoder = Decoder()
    c = Conversation("84", created=T0)
    bodies = [c.user_created(), c.bot_replied("1", T0 + 1, "hi"),
              c.assigned("2", T0 + 2, FIN, TEAM5, "workflow_assignment"),
              c.admin_replied("3", T0 + 3, ALICE, "hello"),
              c.assigned("4", T0 + 4, ALICE.author(), BOB.reference()),
              c.closed("5", T0 + 5, BOB.author()), c.rated(T0 + 6, 3, BOB),
              c.user_replied("6", T0 + 7, "again")]
    mapped = [e for b in bodies for e in events(b)]
    assert [e["type"].split(".")[1] for e in mapped] == [
        "started", "sent", "sent", "queued", "sent", "transferred", "closed", "rated",
        "reopened", "sent"]
    for event in mapped:
        assert not isinstance(decoder.decode(orjson.dumps(event)), Rejected), event


def test_the_signature_and_freshness_as_intercom_signs() -> None:
    c = Conversation("85", created=T0)
    body = orjson.dumps(c.user_created())
    good = {"X-Hub-Signature": sign(b"client-secret", body)}
    assert good["X-Hub-Signature"] == "sha1=" + hmac.new(
        b"client-secret", body, hashlib.sha1).hexdigest()   # the docs' "Signed notifications"
    ic = platform()
    verdict = ic.authenticate(Delivery(good, body, 0), T0 + 70, 300)   # retried after 1 min
    assert not isinstance(verdict, Refused) and verdict.fresh_until == int(T0) + MAX_DELAY
    assert ic.authenticate(Delivery({}, body, 0), T0, 300).reason == "unsigned"
    forged = {"X-Hub-Signature": sign(b"other", body)}
    assert ic.authenticate(Delivery(forged, body, 0), T0, 300).reason == "forged"
    late = ic.authenticate(Delivery(good, body, 0), T0 + MAX_DELAY + 1, 300)
    assert late.reason == "stale"
    # Intercom may hold a throttled notification for up to 2 h: still taken.
    assert not isinstance(ic.authenticate(Delivery(good, body, 0), T0 + 7200, 300), Refused)

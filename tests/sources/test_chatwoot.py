"""Chatwoot as Chatwoot sends it: bodies in Chatwoot's own shapes (``shapes/chatwoot.py``),
mapped and folded through the whole engine; the figures are computed by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from cs_pulse.ingest.decode import Decoder, Rejected
from cs_pulse.ingest.phrases import PhraseMatcher
from cs_pulse.sources.webhooks.chatwoot import CHANNELS, Chatwoot, sign
from cs_pulse.sources.webhooks.platform import Delivery, Malformed, Refused
from factory import T0
from shapes.chatwoot import Agent, Contact, Conversation, Inbox
from shapes.stories import CHATWOOT_FIGURES, chatwoot_story, check
from story import Metrics, Story

SHOP = "shop-cw"
ALICE, BOB = Agent(2, "Alice"), Agent(4, "Bob")
WEB = {"shop": SHOP, "queue": "inbox-3", "channel": "chat"}
SAMPLES = Path(__file__).parents[1] / "data" / "chatwoot"


def platform(**kw: Any) -> Chatwoot:
    return Chatwoot(b"secret", SHOP, **kw)


def fold(bodies: list[tuple[float, dict[str, Any]]], now: float, cw: Chatwoot | None = None,
         grace: float = 5.0) -> Metrics:
    """Each (receipt time, body) mapped as the receiver maps it, its events folded in that
    order through the engine, read at T0 + ``now``."""
    cw = cw or platform()
    story, redact = Story(grace=grace), PhraseMatcher([]).redact
    for received, body in bodies:
        for event in cw.map(body, Delivery({}, b"", round((T0 + received) * 1000))).events:
            story.raw(orjson.dumps(redact(event)))
    return story.run(now)


def events(body: dict[str, Any], cw: Chatwoot | None = None,
           received: float = 0.0) -> list[dict[str, Any]]:
    return (cw or platform()).map(body, Delivery({}, b"", round((T0 + received) * 1000))).events


def test_an_automation_reply_is_a_bot_message_and_the_first_response_is_the_human_one() -> None:
    """The issue's headline: an automation rule's auto-reply 0.8 s after the question used to
    count as the first response (0.8 s, within 30 s). Figures by hand in ``shapes/stories``."""
    story = chatwoot_story(T0)
    m = fold([(received - T0, body) for received, body in story], now=300)
    assert check(m, CHATWOOT_FIGURES) == {}


def test_a_twilio_whatsapp_conversation_waits_from_the_bot_hand_off_and_after_a_reopen() -> None:
    """A bot inbox on Twilio WhatsApp: chat, not phone (no 0 s first response), the bot's
    time is self-service, pending → open is a hand-off, not a reopen; the customer writing
    to the resolved conversation reopens it before the message counts."""
    inbox = Inbox(7, "Support WhatsApp", "Channel::TwilioSms", "whatsapp:+15551234567")
    c = Conversation(43, created=T0, inbox=inbox, status="pending",
                     contact=Contact(78, "Li Wei", "+15551234567"))
    q = {"shop": SHOP, "queue": "inbox-7", "channel": "chat"}
    bodies = [(0.0, c.created_body())]
    bodies.append((0.5, c.incoming(601, T0 + 0.5, "Hi, I need help with a return")))
    bodies.append((2.0, c.bot_reply(602, T0 + 2.0, "Sure! What is your order number?")))
    bodies.append((30.0, c.incoming(603, T0 + 30.0, "Talk to a human please")))
    bodies.append((31.0, c.bot_reply(604, T0 + 31.0, "Transferring you to an agent")))
    bodies += [(32.0, b) for b in c.set_status("open", T0 + 32.0)]    # the hand-off
    bodies.append((32.5, c.assign(ALICE, T0 + 32.5)))
    bodies.append((332.0, c.reply(605, T0 + 332.0, ALICE, "Hi, I'm Alice")))
    bodies += [(400.0, b) for b in c.set_status("resolved", T0 + 400.0)]
    # The customer writes again at 500.5; Chatwoot reopens in the same request (5 ms later):
    # the reopen's push data shows that message as the last one.
    message = c.incoming(606, T0 + 500.5, "One more thing")
    reopen = c.set_status("open", T0 + 500.505)
    bodies += [(500.6, message)] + [(500.7, b) for b in reopen]
    bodies.append((520.0, c.reply(607, T0 + 520.0, ALICE, "Of course")))
    bodies += [(600.0, b) for b in c.set_status("resolved", T0 + 600.0)]
    m = fold(bodies, now=700)
    assert m("cs_conversations_total", channel="phone") == 0
    assert m("cs_queued_total", **q) == 2
    # 332 - 32 (the hand-off: the customer wrote while the bot had it) and 520 - 500.5.
    assert m("cs_first_response_seconds_sum", **q) == pytest.approx(319.5)
    assert m("cs_service_level_contacts_total", outcome="answered_after", **q) == 1
    assert m("cs_service_level_contacts_total", outcome="answered_within", **q) == 1
    assert m("cs_messages_total", sender="bot", **q) == 2
    assert m("cs_reopened_total", **q) == 1                       # not the hand-off
    assert m("cs_resolved_total", **q) == 2
    assert m("cs_abandoned_total", **q) == 0


def test_who_closed_decides_abandonment() -> None:
    """Resolved while the bot had it (pending): by the bot; by Chatwoot's auto-resolve
    (configured: a resolve 60 min after the last activity): a timeout, so the customer who
    waited unanswered abandoned; a blocked contact's conversation is born resolved."""
    cw = platform(auto_resolve_ms=60 * 60_000)
    bot = Conversation(50, created=T0, status="pending")
    idle = Conversation(51, created=T0)
    blocked = Conversation(52, created=T0, status="resolved")
    bodies = [(0.0, bot.created_body()), (0.0, idle.created_body()),
              (0.0, blocked.created_body())]
    bodies.append((1.0, bot.incoming(701, T0 + 1.0, "Opening hours?")))
    bodies.append((2.0, bot.bot_reply(702, T0 + 2.0, "9 to 18")))
    bodies += [(3.0, b) for b in bot.set_status("resolved", T0 + 3.0)]
    bodies.append((1.0, idle.incoming(711, T0 + 1.0, "Hello?")))
    bodies += [(3700.0, b) for b in idle.set_status("resolved", T0 + 3700.0)]
    bodies.append((5.0, blocked.incoming(721, T0 + 5.0, "spam spam")))
    m = fold(bodies, now=4000, cw=cw)
    assert m("cs_resolved_total", **WEB) == 1                      # the bot's
    assert m("cs_queued_total", **WEB) == 1                        # the idle one's wait only
    assert m("cs_abandoned_total", **WEB) == 1
    assert m("cs_abandon_wait_seconds_sum", **WEB) == 3699.0
    assert m("cs_service_level_contacts_total", outcome="abandoned_after", **WEB) == 1
    assert m("cs_waiting_conversations", **WEB) == 0
    without = fold(bodies, now=4000)   # auto-resolve not configured: an agent's resolve
    assert without("cs_resolved_total", **WEB) == 2
    assert without("cs_abandoned_total", **WEB) == 0


def test_assignment_changes_are_assignments_transfers_and_routing() -> None:
    c = Conversation(60, created=T0)
    first = events(c.assign(ALICE, T0 + 10))
    team = events(c.assign_team((8, "Returns"), BOB, T0 + 20))   # agent and team, one save
    unassigned = events(c.assign(None, T0 + 30))
    other = Conversation(61, created=T0)
    routed = events(other.assign_team((8, "Returns"), None, T0 + 5))
    assert [(e["type"], e["ts"], e.get("agent_id")) for e in first] == [
        ("conversation.assigned", round((T0 + 10) * 1000), "cw-agent-2")]
    assert [(e["type"], e.get("to_agent_id"), e.get("to_team")) for e in team] == [
        ("conversation.transferred", "cw-agent-4", "cw-team-8")]
    assert [(e["type"], e.get("to_queue")) for e in unassigned] == [
        ("conversation.transferred", "inbox-3")]
    assert [(e["type"], e["team"]) for e in routed] == [("conversation.queued", "cw-team-8")]


def test_the_status_change_webhook_adds_nothing_and_agrees_when_it_carries_the_change() -> None:
    c = Conversation(62, created=T0)
    updated, status_changed = c.set_status("resolved", T0 + 50.25)
    assert events(status_changed) == []    # Chatwoot renders its changed_attributes as null
    # Some versions fill it (PR #14002): the same save gives the same events, ids included.
    filled = status_changed | {"changed_attributes": [
        {"status": {"previous_value": "open", "current_value": "resolved"}}]}
    assert events(filled) == events(updated)
    [closed] = events(updated)
    assert (closed["type"], closed["ts"], closed["closed_by"]) == (
        "conversation.closed", round((T0 + 50.25) * 1000), "agent")


@pytest.mark.parametrize(("sender", "extra", "want"), [
    ({"id": 2, "name": "A", "email": "a@x", "type": "user"}, {}, ("agent", "cw-agent-2")),
    ({"id": 5, "name": "Bot", "type": "agent_bot"}, {}, ("bot", None)),
    ({"id": 1, "name": "Captain", "type": "captain_assistant"}, {}, ("bot", None)),
    (None, {"content_attributes": {"automation_rule_id": 9}}, ("bot", None)),
    ({"id": 2, "name": "A", "email": "a@x", "type": "user"},
     {"additional_attributes": {"campaign_id": 4}}, ("bot", None)),
    (None, {"content_attributes": {"external_echo": True}}, ("agent", "cw-agent-external")),
    (None, {}, ("bot", None)),
])
def test_who_sent_an_outgoing_message(sender: Any, extra: dict[str, Any],
                                      want: tuple[str, str | None]) -> None:
    c = Conversation(63, created=T0)
    body = c.message(800, T0 + 1, "outgoing", "hello", sender=sender) | extra
    [event] = events(body)
    assert (event["sender"], event.get("agent_id")) == want


def test_every_channel_type_and_its_cs_pulse_channel() -> None:
    assert CHANNELS == {
        "Channel::WebWidget": "chat", "Channel::Api": "chat", "Channel::Whatsapp": "chat",
        "Channel::TwilioSms": "chat", "Channel::Sms": "chat", "Channel::Telegram": "chat",
        "Channel::Line": "chat", "Channel::Email": "email", "Channel::FacebookPage": "social",
        "Channel::Instagram": "social", "Channel::TwitterProfile": "social",
        "Channel::Tiktok": "social", "Channel::Voice": "phone"}
    c = Conversation(64, created=T0, inbox=Inbox(9, "Mail", "Channel::Email"))
    assert {e["channel"] for e in events(c.created_body())} == {"email"}


def test_what_carries_no_kpi_is_acknowledged_and_ignored() -> None:
    c = Conversation(65, created=T0)
    plain_update = c.message(900, T0 + 1, "outgoing", "hi", sender=ALICE.webhook_data(),
                             event="message_updated")   # a delivery receipt, an edit
    survey_unanswered = c.csat_survey(901, T0 + 2) | {"event": "message_updated"}
    label_change = c._save(T0 + 3, label_list=([], ["vip"]))
    snooze = c.set_status("snoozed", T0 + 4)[0]
    unsnooze = c.set_status("open", T0 + 5)[0]
    for body in (plain_update, survey_unanswered, label_change, snooze, unsnooze,
                 {"event": "contact_created", "id": 1}, {"event": "conversation_typing_on"}):
        assert events(body) == [], body["event"]


def test_malformed_bodies_are_refused_not_crashed_on() -> None:
    c = Conversation(66, created=T0)
    broken = [
        c.incoming(1, T0, "x") | {"created_at": "yesterday"},
        c.incoming(1, T0, "x") | {"conversation": "not an object"},
        c.created_body() | {"id": None},
        c.csat_answer(2, T0, rating=4) | {"content_attributes": {"submitted_values": {
            "csat_survey_response": {"rating": 11}}}},
    ]
    for body in broken:
        with pytest.raises(Malformed):
            events(body)


def test_every_mapped_event_is_valid_for_the_worker() -> None:
    decoder = Decoder()
    c = Conversation(67, created=T0, status="pending")
    bodies = [c.created_body(), c.incoming(1, T0 + 1, "hi"), c.bot_reply(2, T0 + 2, "hey"),
              *c.set_status("open", T0 + 3), c.assign(ALICE, T0 + 4),
              c.reply(3, T0 + 5, ALICE, "hello"), c.assign_team((1, "T"), BOB, T0 + 6),
              *c.set_status("resolved", T0 + 7), c.csat_answer(4, T0 + 8, rating=2)]
    mapped = [e for b in bodies for e in events(b)]
    assert [e["type"].split(".")[1] for e in mapped] == [
        "started", "sent", "sent", "queued", "assigned", "sent", "transferred", "closed", "rated"]
    for event in mapped:
        assert not isinstance(decoder.decode(orjson.dumps(event)), Rejected), event


def test_chatwoot_docs_samples_map_without_error() -> None:
    """The samples of Chatwoot's documentation (older shapes: conversation_resolved and
    conversation_opened go to agent bots only since 2022, sender with a ``type``)."""
    decoder = Decoder()
    mapped = {}
    for path in sorted(SAMPLES.glob("*.json")):
        result = events(json.loads(path.read_bytes()))
        mapped[path.name.split(".")[0]] = [e["type"] for e in result]
        for e in result:
            assert not isinstance(decoder.decode(orjson.dumps(e)), Rejected), e
    assert mapped == {"conversation_opened": [], "conversation_resolved": [],
                      "conversation_status_changed": [], "message_created": ["message.sent"],
                      "message_updated": [], "webwidget_triggered": []}


def test_signature_as_chatwoot_makes_it_and_the_url_token_opt_in() -> None:
    body = b'{"event":"message_created"}'
    cw = platform(url_token="t0k3n")

    def delivery(headers: dict[str, str], token: str | None = None) -> Delivery:
        return Delivery(headers, body, 0, token)

    now = 1_800_000_000.0
    good = {"X-Chatwoot-Timestamp": str(int(now)),
            "X-Chatwoot-Signature": sign(b"secret", str(int(now)), body)}
    verdict = cw.authenticate(delivery(good), now, 300)
    assert not isinstance(verdict, Refused) and verdict.fresh_until == now + 300
    # Chatwoot's own: "sha256=" + hex(HMAC-SHA256(secret, "<ts>.<body>")) (trigger.rb)
    import hashlib
    import hmac
    assert good["X-Chatwoot-Signature"] == "sha256=" + hmac.new(
        b"secret", f"{int(now)}.".encode() + body, hashlib.sha256).hexdigest()
    refused = {
        "unsigned": cw.authenticate(delivery({}), now, 300),
        "stale": cw.authenticate(delivery(good), now + 301, 300),
        "forged": cw.authenticate(delivery(good | {"X-Chatwoot-Signature": "sha256=00"}),
                                  now, 300),
        "wrong token": cw.authenticate(delivery({}, "guess"), now, 300),
    }
    assert {k: getattr(v, "reason", None) for k, v in refused.items()} == {
        "unsigned": "unsigned", "stale": "stale", "forged": "forged", "wrong token": "forged"}
    assert not isinstance(cw.authenticate(delivery({}, "t0k3n"), now, 300), Refused)
    no_token = platform()   # the opt-in is off by default: no token route at all
    assert isinstance(no_token.authenticate(delivery({}, ""), now, 300), Refused)


def test_a_timestamp_that_is_not_a_finite_number_is_stale() -> None:
    cw = platform()
    for stamp in ("nan", "inf", "-inf", "1e400"):
        headers = {"X-Chatwoot-Timestamp": stamp,
                   "X-Chatwoot-Signature": sign(b"secret", stamp, b"{}")}
        verdict = cw.authenticate(Delivery(headers, b"{}", 0), 1e9, 300)
        assert getattr(verdict, "reason", None) == "stale", stamp

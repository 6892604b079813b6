"""Intercom webhook notifications → cs-pulse events (``POST /intercom``).

Followed: Intercom's REST API 2.x conversation and conversation-part models
(intercom/Intercom-OpenAPI ``descriptions/2.11`` … ``2.15``) and the developer docs' "Webhook
topics" and "Webhook notification object"; README "Chat platforms" has the table. An app on
API 1.x sends another shape (``conversation_message``) and is refused as malformed.

* Authenticity: ``X-Hub-Signature: sha1=<hex HMAC-SHA1(client secret, raw body)>``. It signs no
  time, so freshness comes from the body's ``created_at``: Intercom retries once after a
  minute and may hold a throttled notification up to two hours (``MAX_DELAY``).
* The notification carries the conversation as it is now, with the part(s) the event added:
  every part is read by ``part_type`` and author, never by topic (Intercom sends a bot's reply
  under ``conversation.admin.replied`` too), and event ids come from part ids, so a part
  reported twice, or a redelivery (``delivery_attempts`` > 1), counts once.
* Who spoke: ``user``/``lead`` are the customer, ``admin`` a human agent, ``bot`` (Fin,
  Operator, workflows, custom bots) a bot. Notes are not replies; snoozing is not closing.
* A customer's reply reopens a closed conversation (Intercom does so without a part of its
  own): each customer message is preceded by a reopen, which changes nothing on an open one.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import orjson

from cs_pulse.settings import Settings
from cs_pulse.sources.webhooks.platform import (
    Authentic,
    Delivery,
    Event,
    Malformed,
    Mapped,
    Payload,
    Refused,
    epoch_ms,
    fresh,
    hmac_hex,
    label,
    obj,
    opt_obj,
    same,
    word,
)

NAME = "intercom"
MAX_DELAY = 3 * 3600.0   # throttled notifications are delivered up to 2 h late (docs)
KINDS = frozenset({
    "conversation.user.created", "conversation.user.replied", "conversation.admin.replied",
    "conversation.admin.single.created", "conversation.admin.assigned",
    "conversation.admin.open.assigned", "conversation.admin.noted",
    "conversation.admin.closed", "conversation.admin.opened", "conversation.admin.snoozed",
    "conversation.admin.unsnoozed", "conversation.operator.replied",
    "conversation.rating.added", "conversation.priority.updated", "conversation.read",
    "conversation.deleted", "conversation.contact.attached", "conversation.contact.detached",
    "conversation_part.tag.created", "conversation_part.redacted", "ping",
})
# conversation.source.type → cs-pulse channel ("conversation" is the Messenger; "phone_switch"
# a call switched to messaging).
CHANNELS = {
    "conversation": "chat", "push": "chat", "whatsapp": "chat", "sms": "chat",
    "phone_switch": "chat", "email": "email", "facebook": "social", "instagram": "social",
    "twitter": "social", "phone_call": "phone",
}
CUSTOMERS = frozenset({"user", "lead", "contact"})
MESSAGES = frozenset({"comment", "quick_reply"})
ROUTING = frozenset({"default_assignment", "workflow_assignment", "message_strategy_assignment"})
ASSIGNMENTS = ROUTING | {"assignment", "assign_and_reopen", "assign_and_unsnooze",
                         "away_mode_assignment"}
REOPENS = frozenset({"open", "assign_and_reopen", "note_and_reopen"})
# Outbound starts that reach the humans' inbox when the customer answers (a custom bot's,
# "operator_initiated", stays with the bot until it hands off).
OUTBOUND_TO_HUMANS = frozenset({"automated", "campaigns_initiated"})
_TAG = re.compile(r"<[^>]*>")


def sign(secret: bytes, body: bytes) -> str:
    return "sha1=" + hmac_hex("sha1", secret, body)


def plain(body: Any) -> str:
    """A part's text: HTML (API < 2.15) without its tags and entities, or plain text."""
    if not isinstance(body, str):
        return ""
    return html.unescape(_TAG.sub("", body)) if "<" in body or "&" in body else body


@dataclass(frozen=True)
class Intercom:
    secret: bytes
    shop: str
    name: str = NAME
    kinds: frozenset[str] = KINDS

    def authenticate(self, delivery: Delivery, now: float, window: float
                     ) -> Authentic | Refused:
        signature = delivery.headers.get("X-Hub-Signature")
        if not signature:
            return Refused("unsigned", "no X-Hub-Signature")
        if not same(sign(self.secret, delivery.body), signature):
            return Refused("forged", "signature does not match")
        try:   # the signature covers no time: the notification's own creation time
            created = orjson.loads(delivery.body).get("created_at")
        except (orjson.JSONDecodeError, AttributeError):
            return Authentic(None)   # authentic, but not an object: mapping refuses it
        if isinstance(created, int | float) and not isinstance(created, bool):
            horizon = max(window, MAX_DELAY)
            if not fresh(float(created), now, horizon):
                return Refused("stale", f"notification created {now - created:.0f} s ago")
            return Authentic(float(created) + horizon)
        return Authentic(None)

    def map(self, payload: Payload, delivery: Delivery) -> Mapped:
        if payload.get("type") != "notification_event":
            raise Malformed("not an Intercom notification (type is not notification_event)")
        topic = str(payload.get("topic"))
        notification = payload.get("id")
        ids = (str(notification),) if notification else ()
        item = opt_obj(opt_obj(payload.get("data")).get("item"))
        if item.get("type") != "conversation" or topic in ("conversation.deleted",
                                                          "conversation.read"):
            return Mapped(topic, [], ids)
        if "conversation_message" in item:
            raise Malformed("an API 1.x conversation: set the app's webhooks to API 2.x")
        conv = Conversation(self.shop, item)
        events: list[Event] = []
        if topic in ("conversation.user.created", "conversation.admin.single.created"):
            events += conv.start()
        parts = opt_obj(item.get("conversation_parts")).get("conversation_parts") or []
        if not isinstance(parts, list):
            raise Malformed("conversation_parts is not a list")
        for part in parts:
            events += conv.part(obj(part, "conversation part"))
        if topic == "conversation.rating.added":
            events += conv.rating(payload)
        return Mapped(topic, events, ids)


class Conversation:
    """One notification's conversation: its labels, and its parts as events."""

    def __init__(self, shop: str, item: dict[str, Any]) -> None:
        self.item = item
        source = opt_obj(item.get("source"))
        self.source = source
        team = item.get("team_assignee_id")
        self.team = label("team", team) if team not in (None, 0, "0", "") else ""
        self.common: Event = {
            "schema_version": 1, "shop_id": shop,
            "conversation_id": label("ic", item.get("id")),
            "channel": CHANNELS.get(word(source.get("type")) or "", "chat"),
            "queue": self.team or "unassigned",
        }
        if self.team:
            self.common["team"] = self.team
        contacts = opt_obj(item.get("contacts")).get("contacts")
        if isinstance(contacts, list) and contacts:
            contact = opt_obj(contacts[0]).get("id")
            if contact:
                self.common["customer_id"] = label("ic-contact", contact)

    @property
    def cid(self) -> str:
        return str(self.common["conversation_id"])

    def _event(self, event_id: str, type_: str, ts: int, **fields: Any) -> Event:
        return self.common | {"event_id": event_id, "type": type_, "ts": ts} | fields

    def start(self) -> list[Event]:
        """The conversation and its first message (``source``): the customer's, an admin's
        (an outbound conversation: no customer is waiting) or an automated one's."""
        at = epoch_ms(self.item.get("created_at"))
        events = [self._event(f"{self.cid}-started", "conversation.started", at)]
        delivered = word(self.source.get("delivered_as"))
        author = opt_obj(self.source.get("author"))
        if delivered in OUTBOUND_TO_HUMANS:
            events.append(self._event(f"{self.cid}-queued", "conversation.queued", at))
        if self.source.get("id") is None:
            return events
        message_id = label(f"{self.cid}-src", self.source["id"])
        text = plain(self.source.get("body"))
        if delivered == "customer_initiated" or (delivered is None and
                                                  word(author.get("type")) in CUSTOMERS):
            events.append(self._message(message_id, at, "customer", text))
        elif delivered == "admin_initiated" and author.get("type") == "admin":
            events.append(self._message(message_id, at, "agent", text, author.get("id")))
        else:   # a campaign, a series or a custom bot sent it (maybe "on behalf of" an admin)
            events.append(self._message(message_id, at, "bot", text))
        return events

    def _message(self, event_id: str, at: int, sender: str, text: str,
                 agent: Any = None) -> Event:
        event = self._event(event_id, "message.sent", at, sender=sender, chars=len(text))
        if sender == "agent":
            event |= {"agent_id": label("ic-admin", agent), "text": text}
        return event

    def part(self, part: dict[str, Any]) -> list[Event]:
        kind = word(part.get("part_type"))
        author = opt_obj(part.get("author"))
        who = word(author.get("type"))
        at = epoch_ms(part.get("created_at"))
        pid = label(f"{self.cid}-part", part.get("id"))
        events: list[Event] = []
        if kind in REOPENS:
            events.append(self._event(f"{pid}-reopened", "conversation.reopened", at))
        if kind in MESSAGES:
            text = plain(part.get("body"))
            if who in CUSTOMERS:   # a reply to a closed conversation reopens it
                events.append(self._event(f"{pid}-reopened", "conversation.reopened", at))
                events.append(self._message(pid, at, "customer", text))
            elif who == "admin":
                events.append(self._message(pid, at, "agent", text, author.get("id")))
            else:
                events.append(self._message(pid, at, "bot", text))
        elif kind in ASSIGNMENTS:
            events += self._assignment(pid, kind, author, opt_obj(part.get("assigned_to")), at)
        elif kind == "close":
            closed_by = {"admin": "agent", "bot": "bot"}.get(str(who), "customer")
            events.append(self._event(f"{pid}-closed", "conversation.closed", at,
                                      resolved=closed_by != "customer", closed_by=closed_by))
        return events   # notes, snoozes, tags, attributes, SLA and priority parts: nothing

    def _assignment(self, pid: str, kind: str | None, author: dict[str, Any],
                    target: dict[str, Any], at: int) -> list[Event]:
        """Intercom does not say who held the conversation before, so who assigns decides:
        routing (assignment rules, workflows, Fin handing off) and an admin taking it
        themselves are assignments; a teammate's assignment to someone else, and an away
        teammate's conversations reassigned, are transfers."""
        to, to_id = word(target.get("type")), target.get("id")
        moved = kind == "away_mode_assignment" or (
            kind not in ROUTING and author.get("type") == "admin"
            and not (to == "admin" and str(author.get("id")) == str(to_id)))
        if to == "admin" and to_id is not None:
            agent = label("ic-admin", to_id)
            if moved:
                return [self._event(f"{pid}-transferred", "conversation.transferred", at,
                                    to_agent_id=agent)]
            return [self._event(f"{pid}-assigned", "conversation.assigned", at,
                                agent_id=agent)]
        if to == "team" and to_id is not None:
            team = label("team", to_id)
            if moved:
                return [self._event(f"{pid}-transferred", "conversation.transferred", at,
                                    to_queue=team, to_team=team)]
            return [self._event(f"{pid}-queued", "conversation.queued", at, queue=team,
                                team=team)]
        if to == "nobody_admin" and moved:   # unassigned: back to its queue
            return [self._event(f"{pid}-transferred", "conversation.transferred", at,
                                to_queue=self.common["queue"])]
        return []   # assigned to a bot (self-service goes on), or nothing to say

    def rating(self, payload: Payload) -> list[Event]:
        rating = opt_obj(self.item.get("conversation_rating"))
        score = rating.get("rating")
        if score is None:
            return []
        if isinstance(score, bool) or not isinstance(score, int | float) \
                or not 1 <= score <= 5:
            raise Malformed(f"rating {score!r} is not 1-5")
        # When it was rated: the rating's updated_at (API 2.14+; its created_at is when it
        # was asked for), else the notification's creation.
        when = rating.get("updated_at") or payload.get("created_at")
        return [self._event(f"{self.cid}-rating", "satisfaction.rated", epoch_ms(when),
                            score=score, scale=5)]


def platform(settings: Settings) -> Intercom | None:
    secret = settings.intercom_client_secret.get_secret_value()
    return Intercom(secret.encode(), settings.intercom_shop) if secret else None

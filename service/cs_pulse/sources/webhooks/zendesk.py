"""Zendesk event webhooks → cs-pulse events (``POST /zendesk``).

For a webhook *subscribed to Zendesk events* (``zen:event-type:...``), whose body Zendesk writes;
not one connected to a trigger, whose body the admin writes freely. Followed: Zendesk's
developer docs ("Webhook event types", "Ticket events", "Messaging events", "Verifying webhook
authenticity", "Via types") and public captures; README "Chat platforms" has the table.

* Authenticity: ``x-zendesk-webhook-signature`` = base64(HMAC-SHA256(the signing secret as its
  literal string, ``x-zendesk-webhook-signature-timestamp`` + raw body)). Zendesk retries a
  delivery with the same event ``id`` and a new timestamp: the body's ``id`` is the replay
  key, never the signature.
* An update of a ticket arrives as several webhooks (a comment, a status, an assignment...),
  in no guaranteed order, sharing ``event.meta.sequence.id``; ``detail`` is the ticket after
  the whole update. So every event of an update carries the labels of ``detail``, a reopen is
  emitted by every event whose ``detail`` shows the ticket open (the same id from each, applied
  once, before the rest of the update), a close is dated a millisecond after the update (after
  its comments), and an agent and a group change of one update are one transfer: whichever
  webhook arrives first, the numbers are the same.
* Times are the event's ``time`` (up to nine fractional digits, truncated to the ms), never the
  delivery time or ``detail.updated_at``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

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
    label,
    obj,
    opt_obj,
    same,
    shop_label,
    word,
)

NAME = "zendesk"
PREFIX = "zen:event-type:"
TICKET_EVENTS = frozenset({
    "ticket.created", "ticket.comment_added", "ticket.agent_assignment_changed",
    "ticket.group_assignment_changed", "ticket.status_changed", "ticket.csat_received",
})
KINDS = TICKET_EVENTS | {
    "messaging_ticket.message_added", "ticket.merged", "ticket.priority_changed",
    "ticket.tags_changed", "ticket.custom_status_changed", "ticket.custom_field_changed",
    "ticket.subject_changed", "ticket.description_changed", "ticket.comment_made_private",
    "ticket.comment_redacted", "ticket.attachment_linked_to_comment", "ticket.type_changed",
    "ticket.requester_changed", "ticket.organization_changed", "ticket.brand_changed",
    "ticket.form_changed", "ticket.followers_changed", "ticket.email_ccs_changed",
    "ticket.external_id_changed", "ticket.problem_link_changed", "ticket.soft_deleted",
    "ticket.permanently_deleted", "ticket.undeleted", "ticket.marked_as_spam",
    "ticket.csat_requested",
}
OPEN_AGAIN = frozenset({"OPEN", "PENDING", "HOLD"})   # statuses a solved ticket reopens to
ENDED = frozenset({"SOLVED", "CLOSED"})
# detail.via.channel: the via *type* names event webhooks send (not the REST API's email,
# web, voice). Tickets of a messaging channel carry their conversation as messaging events;
# their comments repeat those messages and are not read (but the opening one).
CHANNELS = {
    "mail": "email", "web_form": "email", "closed_ticket": "email",
    "native_messaging": "chat", "chat": "chat", "chat_transcript": "chat", "whatsapp": "chat",
    "sms": "chat", "line": "chat", "wechat": "chat", "telegram": "chat", "viber": "chat",
    "kakaotalk": "chat", "apple_business_chat": "chat", "google_business_messages": "chat",
    "web_widget": "chat", "mobile_sdk": "chat", "web_service": "chat", "api": "chat",
    "twitter": "social", "twitter_dm": "social", "twitter_favorite": "social",
    "facebook": "social", "facebook_post": "social", "facebook_message": "social",
    "facebook_messenger": "social", "instagram_dm": "social",
    "phone_call_inbound": "phone", "phone_call_outbound": "phone", "voicemail": "phone",
    "api_phone_call_inbound": "phone", "api_phone_call_outbound": "phone",
    "api_voicemail": "phone",
}
MESSAGING = frozenset({
    "native_messaging", "whatsapp", "line", "wechat", "telegram", "viber", "kakaotalk",
    "apple_business_chat", "google_business_messages", "instagram_dm", "facebook_messenger",
})
ACTORS = {"end_user": "customer", "agent": "agent", "system": "bot", "trigger": "bot"}
# CSAT reason codes (Zendesk's satisfaction reasons): 5 took too long, 6 not resolved,
# 7 knowledge, 8 attitude. Only the attitude has a field of its own in cs-pulse.
ATTITUDE_REASON = 8


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Zendesk:
    secret: bytes
    shop: str = ""                        # "": the body's account_id
    automation_authors: frozenset[str] = frozenset()
    name: str = NAME
    kinds: frozenset[str] = KINDS

    def authenticate(self, delivery: Delivery, now: float, window: float
                     ) -> Authentic | Refused:
        timestamp = delivery.headers.get("x-zendesk-webhook-signature-timestamp")
        signature = delivery.headers.get("x-zendesk-webhook-signature")
        if not timestamp or not signature:
            return Refused("unsigned", "no x-zendesk-webhook-signature")
        try:
            sent = epoch_ms(timestamp) / 1000.0
        except Malformed:
            return Refused("unsigned", "x-zendesk-webhook-signature-timestamp is not a time")
        if not fresh(sent, now, window):
            return Refused("stale", f"signed {now - sent:.0f} s before it arrived")
        if not self.secret or not same(sign(self.secret, timestamp, delivery.body), signature):
            return Refused("forged", "signature does not match")
        return Authentic(sent + window)   # retries are signed anew: no signature key

    def map(self, payload: Payload, delivery: Delivery) -> Mapped:
        full = word(payload.get("type")) or ""
        if not full.startswith(PREFIX):
            raise Malformed("not a Zendesk event (type is not zen:event-type:...)")
        kind = full.removeprefix(PREFIX)
        event_id = payload.get("id")
        ids = (str(event_id),) if isinstance(event_id, str | int) and event_id != "" else ()
        if kind not in TICKET_EVENTS and kind != "messaging_ticket.message_added":
            return Mapped(kind, [], ids)   # priority, tags, custom fields...: not KPI content
        update = Update(self, payload)
        return Mapped(kind, update.events(kind), ids)


class Update:
    """One Zendesk event: a part of an update of one ticket."""

    def __init__(self, zendesk: Zendesk, payload: Payload) -> None:
        self.zendesk = zendesk
        self.payload = payload
        self.detail = obj(payload.get("detail"), "detail")
        self.event = opt_obj(payload.get("event"))
        self.at = epoch_ms(payload.get("time"))
        ticket = self.detail.get("id")
        if ticket is None:   # "zen:ticket:<id>"
            ticket = str(payload.get("subject", "")).removeprefix("zen:ticket:")
        self.tid = label("zd", ticket)
        self.shop = shop_label(zendesk.shop or payload.get("account_id"))
        self.channel = word(opt_obj(self.detail.get("via")).get("channel"))
        self.status = word(self.detail.get("status"))
        sequence = opt_obj(opt_obj(self.event.get("meta")).get("sequence")).get("id")
        # The update's key: its sequence id, exact (wide integers are parsed as such), or
        # else its time.
        self.key = str(sequence) if isinstance(sequence, int | str) and sequence != "" \
            and not isinstance(sequence, bool) else str(self.at)
        if not (self.key.replace("-", "").isalnum() and self.key.isascii()
                and len(self.key) <= 48):
            raise Malformed(f"meta.sequence.id {sequence!r} is not an id"[:200])

    # --- labels --------------------------------------------------------------------------

    def common(self) -> Event:
        out: Event = {"schema_version": 1, "shop_id": self.shop, "conversation_id": self.tid}
        if "via" not in self.detail:   # a messaging event's detail is the ticket's id alone:
            return out                 # its labels are what the conversation already has
        out["channel"] = CHANNELS.get(self.channel or "", "chat")
        group = self.detail.get("group_id")
        out["queue"] = label("group", group) if group is not None else "unassigned"
        if group is not None:
            out["team"] = out["queue"]
        requester = self.detail.get("requester_id")
        if requester is not None:
            out["customer_id"] = label("zd-user", requester)
        return out

    def _event(self, suffix: str, type_: str, *, ts: int | None = None, **fields: Any) -> Event:
        return self.common() | {"event_id": self._id(suffix), "type": type_,
                                "ts": self.at if ts is None else ts} | fields

    def _id(self, suffix: str) -> str:
        event_id = f"{self.tid}-{suffix}"
        if len(event_id) > 128:   # the schema's bound; Zendesk's own ids are far shorter
            raise Malformed(f"ids too long to make an event id: {event_id[:80]}...")
        return event_id

    def _agent(self, user: Any) -> str:
        return label("zd-agent", user)

    def _automated(self, user: Any) -> bool:
        return str(user) in self.zendesk.automation_authors

    # --- events --------------------------------------------------------------------------

    def events(self, kind: str) -> list[Event]:
        if kind == "messaging_ticket.message_added":
            return self._message_added()
        if "via" not in self.detail:
            raise Malformed("a ticket event's detail without via: not the ticket")
        if kind == "ticket.created":
            return self._created()
        reopen = [self._event(f"reopened-{self.key}", "conversation.reopened")] \
            if self.status in OPEN_AGAIN else []   # if the update reopened it: first, always
        handler = {"ticket.comment_added": self._comment,
                   "ticket.agent_assignment_changed": self._agent_changed,
                   "ticket.group_assignment_changed": self._group_changed,
                   "ticket.status_changed": self._status_changed,
                   "ticket.csat_received": self._rating}[kind]
        return reopen + handler()

    def _created(self) -> list[Event]:
        """Started; with the humans (queued) once it has a group, and at once unless a bot
        may be serving it (a messaging ticket without a group: an AI agent's ticket)."""
        events = [self._event("started", "conversation.started")]
        messaging = self.channel in MESSAGING
        if self.detail.get("group_id") is not None or not messaging:
            events.append(self._event(f"queued-{self.key}", "conversation.queued"))
        assignee = self.detail.get("assignee_id")
        if assignee is not None:
            events.append(self._event(f"assigned-{self.key}", "conversation.assigned",
                                      agent_id=self._agent(assignee)))
        return events

    def _comment(self) -> list[Event]:
        comment = obj(self.event.get("comment"), "event.comment")
        author = opt_obj(comment.get("author"))
        staff = author.get("is_staff")
        public = comment.get("is_public")
        if not isinstance(staff, bool):
            raise Malformed("comment.author.is_staff is not a boolean")
        if self.channel in MESSAGING and not self._opening(staff):
            return []   # the messaging events carry this conversation's messages
        body = comment.get("body")
        text = body if isinstance(body, str) else ""
        message = {"type": "message.sent", "ts": self.at, "chars": len(text)}
        cid = self._id(label("comment", comment.get("id")))
        if not staff:
            return [self.common() | message | {"event_id": cid, "sender": "customer"}]
        if public is not True:
            return []   # an internal note, not a reply
        if self._automated(author.get("id")):
            return [self.common() | message | {"event_id": cid, "sender": "bot"}]
        return [self.common() | message | {"event_id": cid, "sender": "agent",
                                           "agent_id": self._agent(author.get("id")),
                                           "text": text}]

    def _opening(self, staff: bool) -> bool:
        """A messaging ticket's opening comment: the requester's, written as the ticket was
        created (the escalation from the bot). It is the customer's request: the wait starts
        there."""
        created = self.detail.get("created_at")
        return not staff and created is not None and epoch_ms(created) // 1000 == self.at // 1000

    def _message_added(self) -> list[Event]:
        actor = opt_obj(self.event.get("actor"))
        message = obj(self.event.get("message"), "event.message")
        who = ACTORS.get(word(actor.get("type")) or "")
        if who is None:
            raise Malformed(f"messaging actor type {actor.get('type')!r}"[:200])
        if who == "agent" and self._automated(actor.get("id")):
            who = "bot"
        body = message.get("body")
        text = body if isinstance(body, str) else ""
        mid = label("message", message.get("id"))
        event = self.common() | {"event_id": self._id(mid), "type": "message.sent",
                                 "ts": self.at, "sender": who, "chars": len(text)}
        if who == "agent":
            event |= {"agent_id": self._agent(actor.get("id")), "text": text}
        if who != "customer":
            return [event]
        # The customer writing to a solved ticket reopens it (a closed one starts another).
        return [self._event(f"reopened-{mid}", "conversation.reopened"), event]

    def _change(self) -> tuple[Any, Any]:
        return self.event.get("previous"), self.event.get("current")

    def _agent_changed(self) -> list[Event]:
        before, now = self._change()
        if before in (None, "") and now not in (None, ""):
            return [self._event(f"assigned-{self.key}", "conversation.assigned",
                                agent_id=self._agent(now))]
        if before in (None, "") or str(before) == str(now):
            return []
        return [self._transfer()]

    def _group_changed(self) -> list[Event]:
        before, now = self._change()
        if before in (None, "") and now not in (None, ""):   # a first group: routing
            return [self._event(f"queued-{self.key}", "conversation.queued",
                                queue=label("group", now), team=label("group", now))]
        if before in (None, "") or str(before) == str(now):
            return []
        return [self._transfer()]

    def _transfer(self) -> Event:
        """The update's transfer, from the ticket after it: the same event from its agent
        change and its group change (one id: one transfer)."""
        fields: dict[str, Any] = {}
        assignee, group = self.detail.get("assignee_id"), self.detail.get("group_id")
        if assignee is not None:
            fields["to_agent_id"] = self._agent(assignee)
        if group is not None:
            fields["to_queue"] = fields["to_team"] = label("group", group)
        if not fields:
            fields["to_queue"] = "unassigned"
        return self._event(f"transferred-{self.key}", "conversation.transferred", **fields)

    def _status_changed(self) -> list[Event]:
        before, now = (word(v.upper()) if isinstance(v, str) else None
                       for v in self._change())
        if now in ENDED and before not in ENDED:
            actor = self.detail.get("actor_id")
            if str(actor) == "-1":
                closed_by = "system"
            elif actor is not None and str(actor) == str(self.detail.get("requester_id")):
                closed_by = "customer"
            elif self._automated(actor):
                closed_by = "bot"
            else:
                closed_by = "agent"
            # After the rest of its update (a reply sent with "Submit as Solved" first).
            return [self._event(f"closed-{self.key}", "conversation.closed", ts=self.at + 1,
                                resolved=now == "SOLVED", closed_by=closed_by)]
        return []   # reopens: emitted for every event of the update; NEW/OPEN/PENDING/HOLD

    def _rating(self) -> list[Event]:
        """``satisfaction_score`` (or ``satisfaction_rating``, or the change's ``current``):
        GOOD is 5 of 5, BAD 1 of 5, a number on its own 1-5 or 0-10 scale."""
        rating = opt_obj(self.event.get("satisfaction_score")) or \
            opt_obj(self.event.get("satisfaction_rating")) or \
            opt_obj(self.event.get("current")) or self.event
        score = rating.get("score")
        fields: dict[str, Any] = {}
        if isinstance(score, str) and score.upper() in ("GOOD", "BAD"):
            fields = {"score": 5 if score.upper() == "GOOD" else 1, "scale": 5}
        elif isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 10:
            fields = {"score": score, "scale": 5} if score >= 1 and score <= 5 else \
                {"score": score, "scale": 10, "scale_min": 0}
        elif score in (None, "", "OFFERED", "UNOFFERED", "offered", "unoffered"):
            return []   # a survey sent, not answered
        else:
            raise Malformed(f"CSAT score {score!r}"[:200])
        if rating.get("reason_code") == ATTITUDE_REASON and fields["score"] <= 2:
            fields["attitude"] = "negative"
        assignee = self.detail.get("assignee_id")
        if assignee is not None:
            fields["agent_id"] = self._agent(assignee)
        return [self._event(f"rating-{self.key}", "satisfaction.rated", **fields)]


def platform(settings: Settings) -> Zendesk | None:
    secret = settings.zendesk_webhook_secret.get_secret_value()
    if not secret:
        return None
    return Zendesk(secret.encode(), settings.zendesk_shop,
                   frozenset(settings.zendesk_automation_author_ids))

"""Chatwoot account webhooks → cs-pulse events (``POST /chatwoot``).

Followed: Chatwoot's own code, 4.11.2 to 4.14 (``lib/webhooks/trigger.rb``,
``app/listeners/webhook_listener.rb``, ``app/presenters/conversations/event_data_presenter.rb``,
``app/models/message.rb``, ``app/models/conversation.rb``,
``app/services/automation_rules/action_service.rb``, ``app/listeners/csat_survey_listener.rb``,
``app/models/channel/twilio_sms.rb``; README "Chat platforms" has the table).

* Authenticity: ``X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`` with
  ``X-Chatwoot-Timestamp`` (unix seconds), from 4.11.2. Older Chatwoot signs nothing; the
  opt-in ``CS_PULSE_CHATWOOT_URL_TOKEN`` then authenticates ``POST /chatwoot/<token>``.
* Who spoke: ``incoming`` is the customer; ``outgoing`` from a ``user`` is a human agent,
  unless an automation rule (``content_attributes.automation_rule_id``) or a campaign
  (``additional_attributes.campaign_id``) sent it; an Agent Bot, Captain, no sender at all,
  and ``template`` messages (greetings, CSAT surveys) are bots. Private notes are not turns.
* Status: Chatwoot reports a change with its previous value only in ``conversation_updated``
  (``changed_attributes``): pending → open is the bot's hand-off, resolved → open/pending a
  reopen, → resolved a close at the save's ``updated_at``. A conversation created ``open`` (an
  inbox without a bot) is with the humans from its creation: queued then.
* Conversation ids are Chatwoot's display ids, unique within one account: one account per
  receiver (``CS_PULSE_CHATWOOT_SHOP`` names it).
"""

from __future__ import annotations

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
    hmac_hex,
    label,
    obj,
    opt_obj,
    same,
    word,
)

NAME = "chatwoot"
KINDS = frozenset({
    "message_created", "message_updated", "conversation_created", "conversation_updated",
    "conversation_status_changed", "webwidget_triggered", "contact_created", "contact_updated",
    "conversation_typing_on", "conversation_typing_off", "inbox_created", "inbox_updated",
})
# inbox.channel_type → cs-pulse channel. Messaging apps (WhatsApp, SMS, Telegram, Line), the
# web widget and the API inbox are chat: Twilio's WhatsApp and SMS alike, never phone (phone
# means a voice queue, whose wait starts at the hand-off).
CHANNELS = {
    "Channel::WebWidget": "chat", "Channel::Api": "chat", "Channel::Whatsapp": "chat",
    "Channel::TwilioSms": "chat", "Channel::Sms": "chat", "Channel::Telegram": "chat",
    "Channel::Line": "chat", "Channel::Email": "email", "Channel::FacebookPage": "social",
    "Channel::Instagram": "social", "Channel::TwitterProfile": "social",
    "Channel::Tiktok": "social", "Channel::Voice": "phone",
}
BOT_SENDERS = frozenset({"agent_bot", "captain_assistant"})
REOPEN_CAUSE_MS = 10_000   # an incoming message this close before a reopen caused it


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac_hex("sha256", secret, timestamp.encode() + b"." + body)


@dataclass(frozen=True)
class Chatwoot:
    secret: bytes
    shop: str
    url_token: str = ""
    auto_resolve_ms: int = 0
    name: str = NAME
    kinds: frozenset[str] = KINDS

    # --- authenticity ------------------------------------------------------------------------

    def authenticate(self, delivery: Delivery, now: float, window: float
                     ) -> Authentic | Refused:
        if delivery.token is not None:   # POST /chatwoot/<token>: unsigned Chatwoot < 4.11.2
            if self.url_token and same(delivery.token, self.url_token):
                return Authentic(None)
            return Refused("forged", "unknown URL token")
        timestamp = delivery.headers.get("X-Chatwoot-Timestamp")
        signature = delivery.headers.get("X-Chatwoot-Signature")
        if not timestamp or not signature:
            return Refused("unsigned", "no X-Chatwoot-Signature (Chatwoot < 4.11.2?)")
        try:
            sent = float(timestamp)
        except ValueError:
            return Refused("unsigned", "X-Chatwoot-Timestamp is not a number")
        if not fresh(sent, now, window):
            return Refused("stale", f"signed {now - sent:.0f} s before it arrived")
        if not self.secret or not same(sign(self.secret, timestamp, delivery.body), signature):
            return Refused("forged", "signature does not match")
        return Authentic(sent + window, keys=(signature,))

    # --- mapping -----------------------------------------------------------------------------

    def map(self, payload: Payload, delivery: Delivery) -> Mapped:
        kind = str(payload.get("event"))
        header = delivery.headers.get("X-Chatwoot-Delivery")
        ids = (header,) if header else ()
        if kind == "message_created":
            return Mapped(kind, self._message(payload), ids)
        if kind == "message_updated":
            return Mapped(kind, self._rating(payload, delivery.received_ms), ids)
        if kind == "conversation_created":
            return Mapped(kind, self._created(payload), ids)
        if kind in ("conversation_updated", "conversation_status_changed"):
            # Both report one save; the same change gives the same event ids in either.
            return Mapped(kind, _once(self._updated(payload, delivery.received_ms)), ids)
        return Mapped(kind, [], ids)

    def _common(self, conv: dict[str, Any]) -> Event:
        """The labels every event of the conversation carries."""
        meta = opt_obj(conv.get("meta"))
        out: Event = {
            "schema_version": 1, "shop_id": self.shop,
            "conversation_id": label("cw", conv.get("id")),
            "channel": CHANNELS.get(word(conv.get("channel")) or "", "chat"),
            "queue": label("inbox", conv.get("inbox_id")),
        }
        team = opt_obj(meta.get("team")).get("id")
        if team is not None:
            out["team"] = label("cw-team", team)
        contact = opt_obj(meta.get("sender")).get("id")
        if contact is not None:
            out["customer_id"] = label("cw-contact", contact)
        return out

    def _assignee(self, conv: dict[str, Any]) -> str | None:
        assignee = opt_obj(opt_obj(conv.get("meta")).get("assignee"))
        if assignee.get("id") is None or assignee.get("type", "user") != "user":
            return None
        return label("cw-agent", assignee["id"])

    def _message(self, p: Payload) -> list[Event]:
        if p.get("private"):
            return []   # a note between teammates, not a turn of the conversation
        kind = p.get("message_type")
        if kind not in ("incoming", "outgoing", "template"):
            return []
        conv = _conversation_of(p)
        content = p.get("content")
        text = content if isinstance(content, str) else ""
        event = {**self._common(conv), "event_id": label("cw-msg", p.get("id")),
                 "type": "message.sent", "ts": epoch_ms(p.get("created_at")),
                 "chars": len(text)}
        if kind == "incoming":
            return [event | {"sender": "customer"}]
        agent = self._human_sender(p, conv) if kind == "outgoing" else None
        if agent is None:
            return [event | {"sender": "bot"}]
        return [event | {"sender": "agent", "agent_id": agent, "text": text}]

    def _human_sender(self, p: Payload, conv: dict[str, Any]) -> str | None:
        """The agent of a human reply, None for an automated one (Chatwoot's own
        ``Message#human_response?``)."""
        sender = opt_obj(p.get("sender"))
        attributes = opt_obj(p.get("content_attributes"))
        extra = opt_obj(p.get("additional_attributes"))
        if attributes.get("automation_rule_id") or extra.get("campaign_id"):
            return None
        if sender.get("type") == "user":
            return label("cw-agent", sender.get("id"))
        if word(sender.get("type")) in BOT_SENDERS:
            return None
        if attributes.get("external_echo"):   # sent from the channel's own app by a person
            return self._assignee(conv) or "cw-agent-external"
        return None

    def _rating(self, p: Payload, received_ms: int) -> list[Event]:
        """A CSAT answer: the survey message updated with the contact's rating (1-5). The
        payload does not say when it was rated: the receipt time is used."""
        if p.get("content_type") != "input_csat":
            return []   # delivery receipts, edits, source ids written back: not KPI content
        submitted = opt_obj(opt_obj(p.get("content_attributes")).get("submitted_values"))
        rating = opt_obj(submitted.get("csat_survey_response")).get("rating")
        if rating is None:
            return []
        if isinstance(rating, bool) or not isinstance(rating, int | float) \
                or not 1 <= rating <= 5:
            raise Malformed(f"CSAT rating {rating!r} is not 1-5")
        conv = _conversation_of(p)
        return [{**self._common(conv), "event_id": label("cw-csat", p.get("id")),
                 "type": "satisfaction.rated", "ts": received_ms, "score": rating,
                 "scale": 5}]

    def _created(self, conv: Payload) -> list[Event]:
        common = self._common(conv)
        at = epoch_ms(conv.get("created_at"))
        cid = common["conversation_id"]
        events: list[Event] = [common | {"event_id": f"{cid}-started",
                                         "type": "conversation.started", "ts": at}]
        status = conv.get("status")
        if status == "pending":
            return events   # an inbox with a bot: self-service until the hand-off
        if status == "resolved":   # a blocked contact's conversation is born resolved
            return [*events, common | {"event_id": f"{cid}-born-closed",
                                       "type": "conversation.closed", "ts": at,
                                       "resolved": False, "closed_by": "system"}]
        return events + self._to_humans(conv, common, f"{cid}-queued", at)

    def _to_humans(self, conv: Payload, common: Event, event_id: str, at: int) -> list[Event]:
        """The hand-off (at creation without a bot, or from the bot): queued, and assigned to
        the assignee the conversation has then."""
        events = [common | {"event_id": event_id, "type": "conversation.queued", "ts": at}]
        agent = self._assignee(conv)
        if agent is not None:
            events.append(common | {"event_id": f"{common['conversation_id']}-assigned-{at}",
                                    "type": "conversation.assigned", "ts": at,
                                    "agent_id": agent})
        return events

    def _updated(self, conv: Payload, received_ms: int) -> list[Event]:
        changes = _changes(conv.get("changed_attributes"))
        common = self._common(conv)
        cid = common["conversation_id"]
        at = _updated_at(conv, changes, received_ms)
        # The payload is rendered when Chatwoot's job runs, maybe after later saves: the
        # status this save left is the change's, if it changed.
        status = changes["status"][1] if "status" in changes else conv.get("status")
        events: list[Event] = []
        if "status" in changes:
            before, now = changes["status"]
            events += self._status(conv, common, before, now, at, changes)
        if status == "pending":
            return events   # with the bot: its assignment takes effect at the hand-off
        agent_before, agent_now = changes.get("assignee_id", (None, None))
        team_before, team_now = changes.get("team_id", (None, None))
        moved_agent = "assignee_id" in changes and agent_before != agent_now
        moved_team = "team_id" in changes and team_before != team_now
        if (moved_agent and agent_before is not None) or (moved_team and team_before is not None):
            # One save that changes the agent and the team is one transfer.
            transfer: Event = {"event_id": f"{cid}-transferred-{at}",
                               "type": "conversation.transferred", "ts": at}
            if agent_now is not None:
                transfer["to_agent_id"] = label("cw-agent", agent_now)
            if team_now is not None:
                transfer["to_team"] = label("cw-team", team_now)
            if agent_now is None and team_now is None:   # back to the inbox, unassigned
                transfer["to_queue"] = common["queue"]
            events.append(common | transfer)
        elif moved_agent and agent_now is not None:
            events.append(common | {"event_id": f"{cid}-assigned-{at}",
                                    "type": "conversation.assigned", "ts": at,
                                    "agent_id": label("cw-agent", agent_now)})
        elif moved_team:   # a first team: routing, not a transfer (its label from now on)
            events.append(common | {"event_id": f"{cid}-routed-{at}",
                                    "type": "conversation.queued", "ts": at})
        return events

    def _status(self, conv: Payload, common: Event, before: Any, now: Any, at: int,
                changes: dict[str, tuple[Any, Any]]) -> list[Event]:
        cid = common["conversation_id"]
        if now == "resolved" and before != "resolved":
            closed_by, resolved = "agent", True
            if before == "pending":
                closed_by = "bot"   # resolved while the bot had it
            elif self.auto_resolve_ms and at - _last_activity_ms(conv) >= self.auto_resolve_ms:
                closed_by, resolved = "timeout", False   # Chatwoot's auto-resolve job
            return [common | {"event_id": f"{cid}-closed-{at}", "type": "conversation.closed",
                              "ts": at, "resolved": resolved, "closed_by": closed_by}]
        if before == "resolved" and now in ("open", "pending"):
            at = _reopen_time(conv, changes, at)
            events = [common | {"event_id": f"{cid}-reopened-{at}",
                                "type": "conversation.reopened", "ts": at}]
            if now == "open":   # no bot: with the humans at once
                events.append(common | {"event_id": f"{cid}-queued-{at}",
                                        "type": "conversation.queued", "ts": at})
            return events
        if before == "pending" and now == "open":   # the bot's hand-off
            return self._to_humans(conv, common, f"{cid}-handoff-{at}", at)
        return []   # snoozed and back, open → pending: no change for the KPIs


def _conversation_of(message: Payload) -> dict[str, Any]:
    conv = {**obj(message.get("conversation"), "conversation")}
    conv.setdefault("inbox_id", opt_obj(message.get("inbox")).get("id"))
    return conv


def _once(events: list[Event]) -> list[Event]:
    """Events in order, each id once (a hand-off and an assignment in one save both assign)."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    return list(unique.values())


def _changes(value: Any) -> dict[str, tuple[Any, Any]]:
    """``changed_attributes`` (``[{"status": {"previous_value": .., "current_value": ..}}]``,
    or null) as {attribute: (before, after)}."""
    out: dict[str, tuple[Any, Any]] = {}
    if not isinstance(value, list):
        return out
    for item in value:
        for key, change in opt_obj(item).items():
            change = opt_obj(change)
            out[key] = (change.get("previous_value"), change.get("current_value"))
    return out


def _updated_at(conv: Payload, changes: dict[str, tuple[Any, Any]], received_ms: int) -> int:
    """When the change was saved: the conversation's ``updated_at`` (epoch float), else the
    ``updated_at`` change (ISO), else the receipt time. Never ``timestamp``: that is the last
    message's time."""
    if conv.get("updated_at") is not None:
        return epoch_ms(conv["updated_at"])
    if changes.get("updated_at", (None, None))[1] is not None:
        return epoch_ms(changes["updated_at"][1])
    return received_ms


def _last_activity_ms(conv: Payload) -> int:
    value = conv.get("last_activity_at", conv.get("timestamp"))
    return epoch_ms(value) if value is not None else 0


def _reopen_time(conv: Payload, changes: dict[str, tuple[Any, Any]], at: int) -> int:
    """A customer writing to a resolved conversation reopens it within the same request: the
    reopen must take effect before that message (else the message falls outside the new
    segment and its wait is lost). Such a reopen is dated just before the message (the push
    data's last message: ``created_at`` in seconds, ``updated_at`` to the millisecond), but
    after the save before it (the close)."""
    messages = conv.get("messages")
    last = opt_obj(messages[0]) if isinstance(messages, list) and messages else {}
    if last.get("message_type") not in (0, "incoming") or last.get("created_at") is None:
        return at
    second = epoch_ms(last["created_at"])
    written = second
    try:
        exact = epoch_ms(last.get("updated_at"))
        if second <= exact < second + 1000:   # not updated since it was written
            written = exact
    except Malformed:
        pass
    if not at - REOPEN_CAUSE_MS <= written <= at:
        return at
    reopen = written - 1
    before = changes.get("updated_at", (None, None))[0]
    if before is not None:
        reopen = max(reopen, epoch_ms(before) + 1)
    return min(reopen, at)


def platform(settings: Settings) -> Chatwoot | None:
    secret = settings.chatwoot_secret.get_secret_value()
    token = settings.chatwoot_url_token.get_secret_value()
    if not secret and not token:
        return None
    return Chatwoot(secret.encode(), settings.chatwoot_shop, token,
                    round(settings.chatwoot_auto_resolve_minutes * 60_000))

"""Chatwoot account-webhook bodies in the exact shape Chatwoot 4.11.2-4.14 renders them, for
tests. Each builder names the Chatwoot source it copies (chatwoot/chatwoot, MIT):

* ``Message#webhook_data`` (``app/models/message.rb``): account, additional_attributes,
  content_attributes, content_type, content, conversation, created_at (ISO-8601, ms), id,
  inbox, message_type (the enum's string), private, sender (``sender.try(:webhook_data)``),
  source_id; ``event`` merged by ``app/listeners/webhook_listener.rb``.
* ``Conversations::EventDataPresenter#push_data``
  (``app/presenters/conversations/event_data_presenter.rb``): the conversation of every
  conversation event and of ``message.conversation``; ``id`` is the display id, ``messages`` the
  last chat message in ``Message#push_event_data`` form (``message_type`` an integer,
  ``created_at`` epoch seconds, ``updated_at`` ISO), ``waiting_since`` 0 when unset, epoch
  integers except ``updated_at`` (a float).
* ``changed_attributes`` (``app/listeners/base_listener.rb#extract_changed_attributes``): a list
  of one-key objects ``{attr: {previous_value, current_value}}`` from Rails'
  ``previous_changes`` (enum values as strings, times as ISO strings), or null.
* Senders (``User#webhook_data``, ``AgentBot#webhook_data``, ``Contact#webhook_data``):
  ``{id, name, email, type: "user"}``, ``{id, name, type: "agent_bot"}``, a contact without
  ``type``; an automation rule's message has no sender and
  ``content_attributes.automation_rule_id`` (``app/services/automation_rules/action_service.rb``
  ``send_message``); a CSAT survey is a ``template`` message with ``content_type: input_csat``
  (``app/services/message_templates/template/csat_survey.rb``), answered by a
  ``message_updated`` carrying ``content_attributes.submitted_values.csat_survey_response``
  (``app/builders/csat_surveys/response_builder.rb``).
* Twilio: ``Channel::TwilioSms`` for SMS and WhatsApp alike; WhatsApp shows only in
  ``contact_inbox.source_id`` ("whatsapp:+E164",
  ``app/services/twilio/incoming_message_service.rb``).

A ``Conversation`` keeps Chatwoot's state (status, assignee, team, last chat message, times) so
that each body it renders is what Chatwoot would send at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Body = dict[str, Any]
ACCOUNT = {"id": 1, "name": "Acme Shop"}
MESSAGE_TYPES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}


def iso(t: float) -> str:
    """Rails' JSON time: ISO-8601 UTC with milliseconds (truncated)."""
    ms = round(t * 1e6) // 1000
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{ms % 1000:03d}Z"


@dataclass
class Agent:
    id: int
    name: str

    def webhook_data(self) -> Body:          # User#webhook_data
        return {"id": self.id, "name": self.name, "email": f"{self.name.lower()}@acme.test",
                "type": "user"}

    def push_event_data(self) -> Body:       # User#push_event_data (conversation.meta.assignee)
        return {"id": self.id, "name": self.name, "available_name": self.name,
                "avatar_url": "", "type": "user", "availability_status": "online",
                "thumbnail": ""}


@dataclass
class Contact:
    id: int = 77
    name: str = "Jane Doe"
    phone: str | None = None

    def webhook_data(self) -> Body:          # Contact#webhook_data: no "type" (4.x)
        return {"account": ACCOUNT, "additional_attributes": {}, "avatar": "",
                "custom_attributes": {}, "email": None, "id": self.id, "identifier": None,
                "name": self.name, "phone_number": self.phone, "thumbnail": "",
                "blocked": False}

    def push_event_data(self) -> Body:       # Contact#push_event_data (meta.sender)
        return {"additional_attributes": {}, "custom_attributes": {}, "email": None,
                "id": self.id, "identifier": None, "name": self.name,
                "phone_number": self.phone, "thumbnail": "", "blocked": False,
                "type": "contact"}


@dataclass
class Inbox:
    id: int = 3
    name: str = "Website"
    channel: str = "Channel::WebWidget"
    source_id: str = "5d3c6c2e-4a1f-4c0e-9a51-7b0f3a9d2e11"   # contact_inbox.source_id


@dataclass
class Conversation:
    display_id: int
    created: float
    inbox: Inbox = field(default_factory=Inbox)
    contact: Contact = field(default_factory=Contact)
    status: str = "open"            # "pending" in an inbox with an agent bot
    assignee: Agent | None = None
    team: tuple[int, str] | None = None
    updated: float = 0.0
    last_activity: float = 0.0
    last_message: Body | None = None  # Message#push_event_data of the last chat message
    waiting_since: float = 0.0

    def __post_init__(self) -> None:
        self.updated = self.updated or self.created
        self.last_activity = self.last_activity or self.created

    # --- Conversations::EventDataPresenter#push_data --------------------------------------

    def push_data(self) -> Body:
        return {
            "additional_attributes": {},
            "can_reply": True,
            "channel": self.inbox.channel,
            "contact_inbox": {"id": 12, "contact_id": self.contact.id, "inbox_id": self.inbox.id,
                              "source_id": self.inbox.source_id, "created_at": iso(self.created),
                              "updated_at": iso(self.created), "hmac_verified": False,
                              "pubsub_token": "x2Yq7cA8pQ1mNvB3kL9sT4wE"},
            "id": self.display_id,
            "inbox_id": self.inbox.id,
            "messages": [self.last_message] if self.last_message else [],
            "labels": [],
            "meta": {"sender": self.contact.push_event_data(),
                     "assignee": self.assignee.push_event_data() if self.assignee else None,
                     "team": ({"id": self.team[0], "name": self.team[1],
                               "allow_auto_assign": True} if self.team else None),
                     "hmac_verified": False},
            "status": self.status,
            "custom_attributes": {},
            "snoozed_until": None,
            "unread_count": 0,
            "first_reply_created_at": None,
            "priority": None,
            "waiting_since": int(self.waiting_since),
            "agent_last_seen_at": 0,
            "contact_last_seen_at": 0,
            "last_activity_at": int(self.last_activity),
            "timestamp": int(self.last_activity),
            "created_at": int(self.created),
            "updated_at": self.updated,
        }

    # --- conversation events (webhook_listener.rb) ----------------------------------------

    def created_body(self) -> Body:
        return self.push_data() | {"event": "conversation_created"}

    def _save(self, at: float, **changes: tuple[Any, Any]) -> Body:
        """A save of the conversation at ``at``: ``conversation_updated`` with Rails'
        previous_changes (updated_at last, as Rails lists it)."""
        before = self.updated
        self.updated = at
        listed = [{k: {"previous_value": a, "current_value": b}} for k, (a, b) in
                  changes.items()]
        listed.append({"updated_at": {"previous_value": iso(before), "current_value": iso(at)}})
        return self.push_data() | {"event": "conversation_updated",
                                   "changed_attributes": listed}

    def set_status(self, status: str, at: float) -> list[Body]:
        """``conversation_updated`` with the change, and ``conversation_status_changed``
        (whose changed_attributes Chatwoot renders as null: see its ``status_change``)."""
        before, self.status = self.status, status
        updated = self._save(at, status=(before, status))
        return [updated, self.push_data() | {"event": "conversation_status_changed",
                                             "changed_attributes": None}]

    def assign(self, agent: Agent | None, at: float) -> Body:
        before = self.assignee.id if self.assignee else None
        self.assignee = agent
        return self._save(at, assignee_id=(before, agent.id if agent else None))

    def assign_team(self, team: tuple[int, str] | None, agent: Agent | None,
                    at: float) -> Body:
        """One save setting the team and the agent (Chatwoot's team assignment with
        auto-assignment)."""
        changes: dict[str, tuple[Any, Any]] = {
            "team_id": (self.team[0] if self.team else None, team[0] if team else None)}
        if (agent.id if agent else None) != (self.assignee.id if self.assignee else None):
            changes["assignee_id"] = (self.assignee.id if self.assignee else None,
                                      agent.id if agent else None)
        self.team, self.assignee = team, agent
        return self._save(at, **changes)

    # --- messages (Message#webhook_data) -----------------------------------------------------

    def message(self, id: int, at: float, message_type: str, content: str, *,
                sender: Body | None, private: bool = False, content_type: str = "text",
                content_attributes: Body | None = None,
                additional_attributes: Body | None = None,
                event: str = "message_created") -> Body:
        attributes = content_attributes or {}
        if not private and event == "message_created":   # messages.chat: the push data's last
            self.last_activity = at
            self.last_message = {
                "id": id, "content": content, "account_id": ACCOUNT["id"],
                "inbox_id": self.inbox.id, "conversation_id": self.display_id,
                "message_type": MESSAGE_TYPES[message_type], "created_at": int(at),
                "updated_at": iso(at), "private": private, "status": "sent",
                "source_id": None, "content_type": content_type,
                "content_attributes": attributes, "sender_type": None, "sender_id": None,
                "external_source_ids": {}, "additional_attributes": additional_attributes or {},
                "processed_message_content": content, "sentiment": {},
                "conversation": {"assignee_id": self.assignee.id if self.assignee else None,
                                 "unread_count": 0, "last_activity_at": int(at),
                                 "contact_inbox": {"source_id": self.inbox.source_id}},
            }
        return {
            "account": ACCOUNT,
            "additional_attributes": additional_attributes or {},
            "content_attributes": attributes,
            "content_type": content_type,
            "content": content,
            "conversation": self.push_data(),
            "created_at": iso(at),
            "id": id,
            "inbox": {"id": self.inbox.id, "name": self.inbox.name},
            "message_type": message_type,
            "private": private,
            "sender": sender,
            "source_id": None,
            "event": event,
        }

    def incoming(self, id: int, at: float, content: str) -> Body:
        return self.message(id, at, "incoming", content, sender=self.contact.webhook_data())

    def reply(self, id: int, at: float, agent: Agent, content: str) -> Body:
        return self.message(id, at, "outgoing", content, sender=agent.webhook_data())

    def note(self, id: int, at: float, agent: Agent, content: str) -> Body:
        return self.message(id, at, "outgoing", content, sender=agent.webhook_data(),
                            private=True)

    def automation_reply(self, id: int, at: float, content: str, rule: int = 9) -> Body:
        return self.message(id, at, "outgoing", content, sender=None,
                            content_attributes={"automation_rule_id": rule})

    def bot_reply(self, id: int, at: float, content: str, bot_id: int = 5) -> Body:
        return self.message(id, at, "outgoing", content,
                            sender={"id": bot_id, "name": "Triage Bot", "type": "agent_bot"})

    def csat_survey(self, id: int, at: float) -> Body:
        return self.message(id, at, "template", "Please rate this conversation",
                            sender=None, content_type="input_csat",
                            content_attributes={"display_type": "emoji"})

    def csat_answer(self, id: int, sent_at: float, rating: int, feedback: str = "") -> Body:
        """The survey message, updated with the contact's answer (``message_updated``: its
        created_at stays the survey's)."""
        return self.message(id, sent_at, "template", "Please rate this conversation",
                            sender=None, content_type="input_csat",
                            content_attributes={"display_type": "emoji", "submitted_values": {
                                "csat_survey_response": {"rating": rating,
                                                         "feedback_message": feedback}}},
                            event="message_updated")

"""Intercom webhook notifications in Intercom's exact shape (API 2.13), for tests.

Sources (intercom/Intercom-OpenAPI, ``descriptions/2.13/api.intercom.io.yaml``, and the
developer docs):

* The envelope: "Webhook notification object" (developers.intercom.com, Webhooks → Webhook
  topics / models) and the captures it matches: ``type: notification_event``, ``app_id``,
  ``data: {type: notification_event_data, item}``, ``links``, ``id`` (``notif_<uuid>``),
  ``topic``, ``delivery_status``, ``delivery_attempts``, ``delivered_at`` (0),
  ``first_sent_at``, ``created_at`` (epoch seconds), ``self``.
* ``data.item``: ``components.schemas.conversation`` (id a string, times epoch seconds,
  ``source`` = ``conversation_source`` with ``delivered_as``, ``contacts``, ``teammates``,
  ``statistics``, ``conversation_parts`` = ``{type: conversation_part.list,
  conversation_parts, total_count}`` holding the part(s) the event added).
* Parts: ``components.schemas.conversation_part`` (``part_type``, ``body`` HTML below 2.15,
  ``assigned_to`` ``{type: admin|team|nobody_admin|bot, id}``, ``author`` ``{type: admin|user|
  lead|bot|team, id, name, email}``); part types from the docs' "Conversation Part Types".
* Signature: ``X-Hub-Signature: sha1=<hex HMAC-SHA1(client_secret, raw body)>`` ("Signed
  notifications").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

Body = dict[str, Any]
APP_ID = "l4e36xhv"


@dataclass
class Admin:
    id: str
    name: str

    def author(self) -> Body:
        return {"type": "admin", "id": self.id, "name": self.name,
                "email": f"{self.name.lower()}@acme.test"}

    def reference(self) -> Body:
        return {"type": "admin", "id": self.id}


FIN = {"type": "bot", "id": "6827949", "name": "Fin", "email": f"operator+{APP_ID}@intercom.io"}
OPERATOR = {"type": "bot", "id": "6827949", "name": "Operator",
            "email": f"operator+{APP_ID}@intercom.io"}


@dataclass
class Conversation:
    id: str
    created: float
    source_type: str = "conversation"               # the Messenger
    delivered_as: str = "customer_initiated"
    source_author: Body = field(default_factory=lambda: {
        "type": "user", "id": "6762f1261bb69f9f2193bba7", "name": "Jane Doe",
        "email": "jane@example.com"})
    source_body: str = "<p>My parcel is late</p>"
    contact: str = "6762f1261bb69f9f2193bba7"
    admin_assignee_id: int | None = None
    team_assignee_id: int | None = None
    state: str = "open"
    rating: Body | None = None
    updated: float = 0.0
    notifications: int = 0

    def item(self, parts: list[Body]) -> Body:
        """``components.schemas.conversation`` as the webhook renders it now."""
        return {
            "type": "conversation",
            "id": self.id,
            "title": None,
            "created_at": int(self.created),
            "updated_at": int(self.updated or self.created),
            "waiting_since": None,
            "snoozed_until": None,
            "open": self.state != "closed",
            "state": self.state,
            "read": False,
            "priority": "not_priority",
            "admin_assignee_id": self.admin_assignee_id,
            "team_assignee_id": self.team_assignee_id,
            "tags": {"type": "tag.list", "tags": []},
            "conversation_rating": self.rating,
            "source": {"type": self.source_type, "id": "403918334",
                       "delivered_as": self.delivered_as, "subject": "",
                       "body": self.source_body, "author": self.source_author,
                       "attachments": [], "url": None, "redacted": False},
            "contacts": {"type": "contact.list", "contacts": [
                {"type": "contact", "id": self.contact, "external_id": "70"}]},
            "teammates": {"type": "admin.list", "teammates": []},
            "custom_attributes": {},
            "first_contact_reply": None,
            "sla_applied": None,
            "statistics": None,
            "conversation_parts": {"type": "conversation_part.list",
                                   "conversation_parts": parts, "total_count": len(parts)},
            "linked_objects": {"type": "list", "data": [], "total_count": 0,
                               "has_more": False},
            "ai_agent_participated": False,
            "ai_agent": None,
        }

    def notification(self, topic: str, at: float, parts: list[Body] | None = None,
                     notification_id: str | None = None, attempts: int = 1) -> Body:
        self.updated = max(self.updated, at)
        return {
            "type": "notification_event",
            "app_id": APP_ID,
            "data": {"type": "notification_event_data", "item": self.item(parts or [])},
            "links": {},
            "id": notification_id or f"notif_{uuid.uuid4()}",
            "topic": topic,
            "delivery_status": "pending" if attempts == 1 else "retry",
            "delivery_attempts": attempts,
            "delivered_at": 0,
            "first_sent_at": int(at) + 1,
            "created_at": int(at),
            "self": None,
        }

    @staticmethod
    def part(id: str, part_type: str, at: float, author: Body, body: str | None = None,
             assigned_to: Body | None = None) -> Body:
        """``components.schemas.conversation_part`` (2.13)."""
        return {"type": "conversation_part", "id": id, "part_type": part_type, "body": body,
                "created_at": int(at), "updated_at": int(at), "notified_at": int(at),
                "assigned_to": assigned_to, "author": author, "attachments": [],
                "external_id": None, "redacted": False, "email_message_metadata": None,
                "state": "open", "tags": [], "event_details": None, "app_package_code": None}

    # --- the topics -------------------------------------------------------------------------

    def user_created(self, parts: list[Body] | None = None) -> Body:
        return self.notification("conversation.user.created", self.created, parts)

    def user_replied(self, part_id: str, at: float, text: str) -> Body:
        if self.state == "closed":   # a customer's reply reopens it
            self.state = "open"
        author = {"type": "user", "id": self.contact, "name": "Jane Doe",
                  "email": "jane@example.com"}
        return self.notification("conversation.user.replied", at, [
            self.part(part_id, "comment", at, author, f"<p>{text}</p>")])

    def admin_replied(self, part_id: str, at: float, admin: Admin, text: str) -> Body:
        return self.notification("conversation.admin.replied", at, [
            self.part(part_id, "comment", at, admin.author(), f"<p>{text}</p>")])

    def bot_replied(self, part_id: str, at: float, text: str,
                    topic: str = "conversation.operator.replied") -> Body:
        return self.notification(topic, at, [
            self.part(part_id, "comment", at, FIN, f"<p>{text}</p>")])

    def noted(self, part_id: str, at: float, admin: Admin, text: str) -> Body:
        return self.notification("conversation.admin.noted", at, [
            self.part(part_id, "note", at, admin.author(), f"<p>{text}</p>")])

    def assigned(self, part_id: str, at: float, by: Body, to: Body,
                 part_type: str = "assignment") -> Body:
        if to["type"] == "admin":
            self.admin_assignee_id = int(to["id"])
        elif to["type"] == "team":
            self.team_assignee_id = int(to["id"])
        elif to["type"] == "nobody_admin":
            self.admin_assignee_id = None
        return self.notification("conversation.admin.assigned", at, [
            self.part(part_id, part_type, at, by, None, to)])

    def snoozed(self, part_id: str, at: float, admin: Admin) -> Body:
        self.state = "snoozed"
        return self.notification("conversation.admin.snoozed", at, [
            self.part(part_id, "snoozed", at, admin.author())])

    def unsnoozed(self, part_id: str, at: float) -> Body:
        self.state = "open"
        return self.notification("conversation.admin.unsnoozed", at, [
            self.part(part_id, "timer_unsnooze", at, OPERATOR)])

    def closed(self, part_id: str, at: float, by: Body) -> Body:
        self.state = "closed"
        return self.notification("conversation.admin.closed", at, [
            self.part(part_id, "close", at, by, "<p>Goodbye :)</p>")])

    def opened(self, part_id: str, at: float, admin: Admin) -> Body:
        self.state = "open"
        return self.notification("conversation.admin.opened", at, [
            self.part(part_id, "open", at, admin.author())])

    def rated(self, at: float, rating: int, admin: Admin, remark: str = "") -> Body:
        """``conversation.rating.added``: the rating sits in ``conversation_rating``
        (``components.schemas.conversation_rating``; its ``created_at`` is when it was
        requested)."""
        self.rating = {"rating": rating, "remark": remark, "created_at": int(at) - 60,
                       "contact": {"type": "contact", "id": self.contact, "external_id": "70"},
                       "teammate": admin.reference()}
        return self.notification("conversation.rating.added", at)

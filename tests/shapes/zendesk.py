"""Zendesk event-webhook bodies (a webhook subscribed to Zendesk events) in Zendesk's exact
shape, for tests. Sources:

* The envelope: developer.zendesk.com "Webhook event types" (``account_id`` a number; ``id``,
  ``subject`` ``zen:ticket:<id>``, ``time`` with nine fractional digits, ``type``
  ``zen:event-type:<event>``, ``zendesk_event_version`` ``2022-11-06``: strings), and the
  "Ticket events" example of ``ticket.created`` (``event: {}``; ``detail`` the ticket with every
  id a string or null, ``status``/``priority``/``type`` upper case, ``via: {channel}`` a via
  type name, ``created_at``/``updated_at`` whole seconds).
* ``ticket.comment_added``: a production capture (``event.comment`` = ``{author: {id,
  is_staff, name}, body, html_body, id, is_public}``, ``event.meta.sequence`` = ``{id,
  position}``); change events: ``event`` = ``{current, previous, meta}`` (statuses upper case;
  the ids of assignment changes as strings or numbers: both are sent here); a sequence id may
  be a JSON integer wider than 64 bits (a capture of ``ticket.custom_status_changed``).
* ``messaging_ticket.message_added``: "Messaging events" (``detail`` = ``{id}`` only;
  ``event`` = ``{actor: {id, name, type: end_user|agent|system|trigger}, conversation_id,
  message: {body, id}}``; the answer bot is ``system``, ``zd:answerBot``).
* ``ticket.csat_received``: not in the readable docs; the shape read by a public connector
  (``event.satisfaction_score.score`` GOOD/BAD), with Zendesk's reason codes.
* Headers: "Anatomy of a webhook request" and "Verifying webhook authenticity":
  ``x-zendesk-webhook-signature`` = base64(HMAC-SHA256(secret, timestamp + body)),
  ``x-zendesk-webhook-signature-timestamp`` (ISO, whole seconds), ``x-zendesk-account-id``,
  ``x-zendesk-webhook-id``, ``x-zendesk-webhook-invocation-id``.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Body = dict[str, Any]
ACCOUNT = 22129848
TEST_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="   # the docs' builder-test secret
_sequences = itertools.count(39313930383633353634323835)   # wider than 64 bits


def zulu(t: float) -> str:
    """Zendesk's event time: nine fractional digits."""
    ns = round(t * 1e9)
    second = datetime.fromtimestamp(ns // 10 ** 9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{second}.{ns % 10 ** 9:09d}Z"


def whole(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(body: Body) -> bytes:
    """As Zendesk sends it: the standard library keeps integers wider than 64 bits."""
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Ticket:
    id: str
    created: float
    requester: str = "8447388090494"
    via: str = "mail"
    status: str = "NEW"
    group: str | None = None
    assignee: str | None = None
    actor: str = "8447388090494"
    updated: float = 0.0
    description: str = "My order #1234 has not arrived"
    comments: itertools.count = field(default_factory=lambda: itertools.count(58789194475545))

    def detail(self) -> Body:
        """The ticket after the update ("Ticket events": detail properties)."""
        return {
            "actor_id": self.actor,
            "assignee_id": self.assignee,
            "brand_id": "360000146293",
            "created_at": whole(self.created),
            "custom_status": "8593966",
            "description": self.description,
            "external_id": None,
            "form_id": "50124257287449",
            "group_id": self.group,
            "id": self.id,
            "is_public": True,
            "organization_id": None,
            "priority": None,
            "requester_id": self.requester,
            "status": self.status,
            "subject": "Where is my order?",
            "submitter_id": self.requester,
            "tags": None,
            "type": None,
            "updated_at": whole(self.updated or self.created),
            "via": {"channel": self.via},
        }

    def body(self, kind: str, at: float, event: Body, detail: Body | None = None) -> Body:
        return {
            "account_id": ACCOUNT,
            "detail": self.detail() if detail is None else detail,
            "event": event,
            "id": str(uuid.uuid4()),
            "subject": f"zen:ticket:{self.id}",
            "time": zulu(at),
            "type": f"zen:event-type:{kind}",
            "zendesk_event_version": "2022-11-06",
        }

    def update(self, at: float, actor: str, *changes: tuple[str, Any]) -> list[Body]:
        """One update of the ticket at ``at`` by ``actor``: one body per change, sharing a
        sequence id. A change is (``"comment"``, (author id, is_staff, is_public, body)),
        (``"status"``, new status), (``"agent"``, new agent or None), (``"group"``, new group
        or None) or (``"created"``, None)."""
        self.updated, self.actor = at, actor
        sequence = next(_sequences)
        before = {"status": self.status, "agent": self.assignee, "group": self.group}
        for change, value in changes:   # detail is the ticket after the whole update
            if change == "status":
                self.status = value
            elif change == "agent":
                self.assignee = value
            elif change == "group":
                self.group = value
        out = []
        for position, (change, value) in enumerate(changes, start=1):
            meta = {"sequence": {"id": sequence, "position": position}}
            if change == "created":
                out.append(self.body("ticket.created", at, {}))
            elif change == "comment":
                author, staff, public, text = value
                out.append(self.body("ticket.comment_added", at, {"comment": {
                    "author": {"id": author, "is_staff": staff, "name": f"user {author}"},
                    "body": text, "html_body": f"<div class=\"zd-comment\"><p>{text}</p></div>",
                    "id": str(next(self.comments)), "is_public": public}, "meta": meta}))
            else:
                kind = {"status": "ticket.status_changed",
                        "agent": "ticket.agent_assignment_changed",
                        "group": "ticket.group_assignment_changed"}[change]
                previous = before[change]
                if change != "status" and position % 2 == 0:   # ids as numbers, too
                    previous = int(previous) if previous else previous
                    value = int(value) if value else value
                out.append(self.body(kind, at, {"current": value, "previous": previous,
                                                "meta": meta}))
        return out

    def message(self, at: float, actor_type: str, actor_id: str, text: str) -> Body:
        """``messaging_ticket.message_added``: its detail is the ticket's id alone."""
        names = {"end_user": "Web User", "agent": "Agent", "system": "Answer Bot",
                 "trigger": "Trigger"}
        return self.body("messaging_ticket.message_added", at, {
            "actor": {"id": actor_id, "name": names[actor_type], "type": actor_type},
            "conversation_id": "67ab5f53a96f98663935c3f2",
            "message": {"body": text, "id": uuid.uuid4().hex[:24]}}, detail={"id": self.id})

    def csat(self, at: float, score: Any, reason_code: int = 0,
             comment: str = "") -> Body:
        return self.body("ticket.csat_received", at, {"satisfaction_score": {
            "score": score, "reason_code": reason_code, "comment": comment}})

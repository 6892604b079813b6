"""One full conversation per platform, as the platform delivers it, and its figures computed
by hand: folded in process (``tests/sources/test_chatwoot.py``, ``test_intercom.py``) and
through the real broker and a worker (``test_webhooks_kafka.py``), which must agree."""

from __future__ import annotations

from typing import Any

from shapes import chatwoot as cw
from shapes import intercom as ic

Body = dict[str, Any]
Figure = tuple[str, dict[str, str], float]   # metric, labels it must carry, summed value

CHATWOOT_SHOP = "shop-cw"
ALICE, BOB = cw.Agent(2, "Alice"), cw.Agent(4, "Bob")
WEB = {"shop": CHATWOOT_SHOP, "queue": "inbox-3", "channel": "chat"}


def chatwoot_story(t0: float) -> list[tuple[float, Body]]:
    """(receipt time, body): an automation rule's auto-reply 0.8 s after the question (it used
    to count as the first response, 0.8 s, within 30 s), a note, a transfer, a resolve and a
    CSAT answer."""
    c = cw.Conversation(42, created=t0)
    bodies = [(t0, c.created_body())]
    bodies.append((t0 + 1.0, c.incoming(501, t0 + 1.0, "Hi, where is my order #1234?")))
    bodies.append((t0 + 1.8, c.automation_reply(502, t0 + 1.8,
                                                "Thanks! We reply within minutes.")))
    bodies.append((t0 + 5.0, c.assign(ALICE, t0 + 5.0)))
    bodies.append((t0 + 6.0, c.note(503, t0 + 6.0, ALICE, "VIP customer, check stock")))
    bodies.append((t0 + 66.0, c.reply(504, t0 + 66.0, ALICE, "Hello! It ships today.")))
    bodies.append((t0 + 70.0, c.incoming(505, t0 + 70.0, "Thanks, and the invoice?")))
    bodies.append((t0 + 90.0, c.assign(BOB, t0 + 90.0)))                 # a transfer
    bodies.append((t0 + 100.0, c.reply(506, t0 + 100.0, BOB, "Sent by e-mail.")))
    bodies += [(t0 + 200.0, b) for b in c.set_status("resolved", t0 + 200.0)]
    bodies.append((t0 + 201.0, c.csat_survey(507, t0 + 201.0)))
    bodies.append((t0 + 260.0, c.csat_answer(507, t0 + 201.0, rating=4, feedback="quick")))
    return bodies


CHATWOOT_FIGURES: list[Figure] = [
    ("cs_conversations_total", WEB, 1),
    ("cs_queued_total", WEB, 1),
    ("cs_first_response_seconds_sum", WEB, 65.0),          # 66 - 1, not 0.8
    ("cs_first_response_seconds_count", WEB, 1),
    ("cs_service_level_contacts_total", WEB | {"outcome": "answered_after"}, 1),
    ("cs_response_seconds_sum", WEB, 95.0),                # 65 + (100 - 70)
    ("cs_messages_total", WEB | {"sender": "customer"}, 2),
    ("cs_messages_total", WEB | {"sender": "agent"}, 2),   # the note is no turn
    ("cs_messages_total", WEB | {"sender": "bot"}, 2),     # the auto-reply, the survey
    ("cs_transferred_total", WEB, 1),
    ("cs_agent_handle_seconds_sum", {"agent": "cw-agent-2"}, 85.0),   # 5 -> 90
    ("cs_agent_handle_seconds_sum", {"agent": "cw-agent-4"}, 110.0),  # 90 -> 200
    ("cs_resolved_total", WEB, 1),
    ("cs_resolution_seconds_sum", WEB, 200.0),             # at updated_at, not 100
    ("cs_csat_score_sum", WEB, 4.0),
    ("cs_csat_satisfied_total", WEB, 1),
    ("cs_agent_csat_score_sum", {"agent": "cw-agent-4"}, 4.0),
    ("cs_waiting_conversations", WEB, 0),
]

INTERCOM_SHOP = "shop-ic"
IC_ALICE, IC_BOB = ic.Admin("101", "Alice"), ic.Admin("102", "Bob")
TEAM5 = {"type": "team", "id": "5"}
IC_TEAM = {"shop": INTERCOM_SHOP, "queue": "team-5", "channel": "chat"}
IC_SHOP = {"shop": INTERCOM_SHOP}


def intercom_story(t0: float, conversation: str = "215474343849634") -> list[Body]:
    """A Messenger conversation: Fin answers first (self-service), hands off to a team, an
    admin takes it, reassigns it (a transfer), snoozes (not a close), closes; a rating; the
    customer's reply reopens it; Fin closes it. A redelivery and a bot part reported under two
    topics count once."""
    c = ic.Conversation(conversation, created=t0)
    replied = c.admin_replied("9003", t0 + 100, IC_ALICE, "Hi, I'm Alice")
    return [
        c.user_created(),                                          # the question (source), 0
        c.bot_replied("9001", t0 + 3, "I can help with deliveries"),  # Fin: self-service
        c.bot_replied("9001", t0 + 3, "I can help with deliveries",   # the same part again
                      topic="conversation.admin.replied"),
        c.user_replied("9002", t0 + 40, "I want a person"),
        c.assigned("9010", t0 + 42, ic.FIN, TEAM5, "workflow_assignment"),   # the hand-off
        replied,                                                   # FRT 100 - 42
        replied | {"delivery_attempts": 2, "delivery_status": "retry"},   # a redelivery
        c.assigned("9011", t0 + 100, IC_ALICE.author(), IC_ALICE.reference()),  # took it
        c.noted("9012", t0 + 101, IC_ALICE, "Carrier delay"),
        c.assigned("9013", t0 + 150, IC_ALICE.author(), IC_BOB.reference()),   # a transfer
        c.admin_replied("9014", t0 + 170, IC_BOB, "Bob here"),
        c.user_replied("9015", t0 + 175, "thanks, when will it come?"),
        c.snoozed("9016", t0 + 180, IC_BOB),                       # not a close
        c.admin_replied("9017", t0 + 240, IC_BOB, "Tomorrow"),     # response 65
        c.closed("9018", t0 + 300, IC_BOB.author()),
        c.rated(t0 + 360, 5, IC_BOB, "Great"),
        c.user_replied("9019", t0 + 400, "It did not come"),       # reopens
        c.admin_replied("9020", t0 + 430, IC_BOB, "Checking"),     # FRT 30
        c.closed("9021", t0 + 500, ic.FIN),                        # closed by the bot
    ]


INTERCOM_FIGURES: list[Figure] = [
    ("cs_conversations_total", IC_SHOP | {"queue": "unassigned", "channel": "chat"}, 1),
    ("cs_queued_total", IC_TEAM, 2),
    ("cs_first_response_seconds_sum", IC_TEAM, 88.0),     # (100 - 42) + (430 - 400)
    ("cs_service_level_contacts_total", IC_TEAM | {"outcome": "answered_within"}, 1),
    ("cs_service_level_contacts_total", IC_TEAM | {"outcome": "answered_after"}, 1),
    ("cs_response_seconds_sum", IC_TEAM, 95.0),            # (240 - 175) + 30
    ("cs_messages_total", IC_SHOP | {"sender": "customer"}, 4),
    ("cs_messages_total", IC_SHOP | {"sender": "bot"}, 1),    # once, under two topics
    ("cs_messages_total", IC_SHOP | {"sender": "agent"}, 4),  # the note is no reply
    ("cs_transferred_total", IC_SHOP, 1),
    ("cs_agent_handle_seconds_sum", {"agent": "ic-admin-101"}, 50.0),   # 100 -> 150
    ("cs_reopened_total", IC_TEAM, 1),
    ("cs_resolved_total", IC_TEAM, 2),                     # Bob's and Fin's closes
    ("cs_csat_score_sum", IC_TEAM, 5.0),
    ("cs_agent_csat_score_sum", {"agent": "ic-admin-102"}, 5.0),
    ("cs_waiting_conversations", IC_SHOP, 0),
]


def check(read: Any, figures: list[Figure]) -> dict[str, tuple[float, float]]:
    """The figures ``read(name, **labels)`` (a sum) does not give: {figure: (got, want)}."""
    wrong = {}
    for name, labels, want in figures:
        got = read(name, **labels)
        if abs(got - want) > 1e-9:
            wrong[f"{name}{labels}"] = (got, want)
    return wrong

"""One full conversation per platform, as the platform delivers it, and its figures computed
by hand: folded in process (``tests/sources/test_chatwoot.py``, ``test_intercom.py``) and
through the real broker and a worker (``test_webhooks_kafka.py``), which must agree."""

from __future__ import annotations

from typing import Any

from shapes import chatwoot as cw
from shapes import intercom as ic
from shapes import zendesk as zd

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


ZENDESK_SHOP = "shop-zd"
REQUESTER, INTEGRATION = "8447388090494", "900"
AGENT1, AGENT2 = "7001", "7002"
G1, G2 = "360001", "360002"
ZD_FIRST = {"shop": ZENDESK_SHOP, "queue": f"group-{G1}", "channel": "email"}
ZD_LATER = {"shop": ZENDESK_SHOP, "queue": f"group-{G2}", "channel": "email"}


def zendesk_story(t0: float) -> list[list[Body]]:
    """An e-mail ticket, as updates (the bodies of each in Zendesk's order): the request; an
    integration's auto-reply as an agent seat (it used to be a 5 s first response); a note; an
    assignment; an agent and a group change in one update (one transfer); the first reply
    with PENDING; the reply retried; the customer's answer (PENDING → OPEN: no reopen); a
    reply submitted as solved; a GOOD rating."""
    t = zd.Ticket("5158", created=t0, group=G1)
    updates = [
        t.update(t0, REQUESTER, ("created", None),
                 ("comment", (REQUESTER, False, True, "My order #1234 has not arrived"))),
        t.update(t0 + 5, INTEGRATION, ("comment", (INTEGRATION, True, True,
                                                    "We got your request (auto-reply)"))),
        t.update(t0 + 300, AGENT1, ("agent", AGENT1)),
        t.update(t0 + 600, AGENT1, ("comment", (AGENT1, True, False, "check the carrier"))),
        t.update(t0 + 900, AGENT1, ("agent", AGENT2), ("group", G2)),
        t.update(t0 + 1500, AGENT2, ("comment", (AGENT2, True, True, "It ships today")),
                 ("status", "PENDING")),
    ]
    updates.append([updates[-1][0]])   # Zendesk retries a delivery: the same body, re-signed
    updates.append(t.update(t0 + 1800, REQUESTER,
                            ("comment", (REQUESTER, False, True, "And the invoice?")),
                            ("status", "OPEN")))
    updates.append(t.update(t0 + 2000, AGENT2, ("comment", (AGENT2, True, True, "Sent by e-mail")),
                            ("status", "SOLVED")))
    updates.append([t.csat(t0 + 2100, "GOOD")])
    return updates


ZENDESK_FIGURES: list[Figure] = [
    ("cs_conversations_total", ZD_FIRST, 1),
    ("cs_queued_total", ZD_FIRST, 1),
    ("cs_first_response_seconds_sum", ZD_FIRST, 1500.0),   # 25 min, not the 5 s auto-reply
    ("cs_service_level_contacts_total", ZD_FIRST | {"outcome": "answered_after"}, 1),
    ("cs_response_seconds_sum", ZD_LATER, 1700.0),          # 1500 + (2000 - 1800)
    ("cs_messages_total", ZD_FIRST | {"sender": "customer"}, 1),
    ("cs_messages_total", ZD_LATER | {"sender": "customer"}, 1),   # after the transfer
    ("cs_messages_total", ZD_LATER | {"sender": "agent"}, 2),      # no note
    ("cs_messages_total", ZD_FIRST | {"sender": "bot"}, 1),        # the auto-reply
    ("cs_transferred_total", ZD_FIRST, 1),                  # one update: one transfer
    ("cs_agent_handle_seconds_sum", {"agent": f"zd-agent-{AGENT1}"}, 600.0),   # 300 -> 900
    ("cs_agent_handle_seconds_sum", {"agent": f"zd-agent-{AGENT2}"}, 1100.001),
    ("cs_reopened_total", ZD_FIRST, 0),                     # PENDING -> OPEN is no reopen
    ("cs_reopened_total", ZD_LATER, 0),
    ("cs_resolved_total", ZD_LATER, 1),
    ("cs_resolution_seconds_sum", ZD_LATER, 2000.001),      # closed after the last reply
    ("cs_csat_score_sum", ZD_LATER, 5.0),
    ("cs_agent_csat_score_sum", {"agent": f"zd-agent-{AGENT2}"}, 5.0),
    ("cs_waiting_conversations", ZD_LATER, 0),
]


ZD_MESSAGING = {"shop": ZENDESK_SHOP, "queue": "group-360001", "channel": "chat"}
WEB_USER, MESSAGING_AGENT, WEB_FORM_AGENT = "58789189659033", "7101", "7201"


def zendesk_messaging_story(t0: float) -> list[Body]:
    """A messaging ticket created by the bot's escalation, with a group: queued at creation,
    the requester's opening comment is the request (the wait starts there); a trigger's and
    the answer bot's messages are bots; Zendesk also sends the messages as comments: each
    counts once."""
    t = zd.Ticket("141", created=t0, via="native_messaging", group="360001", status="OPEN",
                  requester=WEB_USER,
                  description="Conversation with Web User 6a27d07ec70c5f1aa576a17b")
    return [
        *t.update(t0, WEB_USER, ("created", None),
                  ("comment", (WEB_USER, False, False,
                               "Conversation with Web User 6a27d07ec70c5f1aa576a17b"))),
        t.message(t0 + 0.5, "trigger", "trigger", "Thanks! An agent will be with you shortly"),
        t.message(t0 + 1, "system", "zd:answerBot", "Transferring you to an agent"),
        t.message(t0 + 30, "end_user", "6a4f5df5dae152f024959a1a", "Hello? anyone"),
        *t.update(t0 + 30, WEB_USER, ("comment", (WEB_USER, False, True, "Hello? anyone"))),
        *t.update(t0 + 40, MESSAGING_AGENT, ("agent", MESSAGING_AGENT)),
        t.message(t0 + 90, "agent", MESSAGING_AGENT, "Hi, I'm here"),
        *t.update(t0 + 90, MESSAGING_AGENT, ("comment", (MESSAGING_AGENT, True, True,
                                                         "Hi, I'm here"))),
        *t.update(t0 + 200, MESSAGING_AGENT, ("status", "SOLVED")),
    ]


ZENDESK_MESSAGING_FIGURES: list[Figure] = [
    ("cs_queued_total", ZD_MESSAGING, 1),
    ("cs_first_response_seconds_sum", ZD_MESSAGING, 90.0),   # from the opening request
    ("cs_messages_total", ZD_MESSAGING | {"sender": "customer"}, 2),
    ("cs_messages_total", ZD_MESSAGING | {"sender": "bot"}, 2),
    ("cs_messages_total", ZD_MESSAGING | {"sender": "agent"}, 1),
    ("cs_resolved_total", ZD_MESSAGING, 1),
    ("cs_reopened_total", ZD_MESSAGING, 0),
]
ZD_WEB = {"shop": ZENDESK_SHOP, "queue": "unassigned", "channel": "email"}


def zendesk_web_form_story(t0: float, reverse: bool = False) -> list[Body]:
    """A web-form ticket solved with the reply in one update, reopened by the customer's
    answer in another (each update's events in Zendesk's order, or reversed): the reply
    answers before the close, the answer waits in the reopened segment."""
    t = zd.Ticket("19395", created=t0, via="web_form")
    updates = [
        t.update(t0, REQUESTER, ("created", None),
                 ("comment", (REQUESTER, False, True, "Hi There"))),
        t.update(t0 + 60, WEB_FORM_AGENT, ("comment", (WEB_FORM_AGENT, True, True, "Fixed")),
                 ("status", "SOLVED")),
        t.update(t0 + 500, REQUESTER, ("comment", (REQUESTER, False, True, "Still broken")),
                 ("status", "OPEN")),
        t.update(t0 + 560, WEB_FORM_AGENT, ("comment", (WEB_FORM_AGENT, True, True,
                                                        "Looking again"))),
    ]
    return [b for u in updates for b in (reversed(u) if reverse else u)]


ZENDESK_WEB_FORM_FIGURES: list[Figure] = [
    ("cs_queued_total", ZD_WEB, 2),
    ("cs_first_response_seconds_sum", ZD_WEB, 120.0),      # 60 + 60
    ("cs_reopened_total", ZD_WEB, 1),
    ("cs_resolved_total", ZD_WEB, 1),
    ("cs_waiting_conversations", ZD_WEB, 0),
]

"""Conversation state machine: folds one conversation's events, in effective-time order, into
facts (for the windows) and customer records (for FCR and conversion).

The ordering stage hands events over in time order, so this is a plain forward fold. Every
count follows the README's "Metric definitions": a wait is counted once, when it is settled, at
its start; a customer message once, when answered or when its segment closes. Counting an
outcome together with its denominator (and at the denominator's time) is what keeps every
ratio in [0, 1] in every window.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .facts import (
    CLOSED_KEPT_MS,
    OPEN_IDLE_MS,
    SERVICE_LEVEL_TARGET_MS,
    SHORT_ABANDON_MS,
    refund_reason,
)
from .model import CustomerRecord, Event, Fact, agent_series, queue_series, shop_series
from .seen import from_row, to_row

PHONE = "phone"                   # no customer messages: the wait starts at the hand-off
CUSTOMER_LEFT = frozenset({"customer", "timeout", "system"})
OPENING_TYPES = frozenset({
    "conversation.started", "conversation.queued", "conversation.assigned",
    "conversation.transferred", "conversation.escalated", "conversation.reopened",
    "message.sent",
})
ORPHAN_TYPES = frozenset({"conversation.closed", "conversation.abandoned", "satisfaction.rated"})


class Out:
    """What one step of a stage produced: facts, customer records and event outcomes."""

    def __init__(self) -> None:
        self.facts: list[Fact] = []
        self.customers: list[CustomerRecord] = []
        self.duplicates = 0
        self.orphans: list[str] = []   # event types

    def fact(self, kind: str, ts: int, series: list[str], value: float = 1.0,
             subject: str = "") -> None:
        for s in series:
            self.facts.append(Fact(kind, ts, s, value, subject))


@dataclass(slots=True)
class Conversation:
    cid: str
    shop: str
    created: int
    customer: str = ""                  # the customer's id, if the first event named one
    channel: str = ""
    queue: str = ""
    team: str = ""
    agent: str = ""
    created_series: str = ""            # Q at creation: transfers and escalations count there
    open: bool = True
    last_ts: int = 0
    seen: bytes = b""                   # digests of the applied events' ids (see ``seen.py``)
    transferred: bool = False
    escalated: bool = False
    served: bool = False
    resolutions: int = 0
    # Tuples, not lists: most conversations never grow these, and () takes no memory.
    handled_by: tuple[str, ...] = ()    # agents (ids) that have held it
    # The current segment (an open period).
    segment_start: int | None = None    # the reopen that opened it (None: the creation)
    handed_off: bool = False
    bot_served: bool = False            # a bot spoke before the first hand-off
    customer_wrote: bool = False
    wait_start: int | None = None       # at most one wait per segment
    wait_series: str = ""               # Q at the wait start: the wait's figures stay there
    wait_open: bool = False             # started, not settled
    wait_answered: bool = False
    pending: int = 0                    # customer messages to a human not answered yet
    run_start: int | None = None        # first message of the unanswered run
    replied: bool = False
    held_from: int | None = None        # first holding of the segment (queue handle time)
    hold_start: int | None = None
    hold_series: str = ""
    # Live state last published to the aggregation stage.
    waiting_series: tuple[str, ...] = ()
    waiting_since: int | None = None
    unsettled_since: int | None = None

    @property
    def instance(self) -> str:
        """Identity of this conversation's life: the id can be reused after expiry."""
        return f"{self.cid}@{self.created}"

    @property
    def customer_key(self) -> str:
        """Where customer records go: derived, not kept (~80 bytes a conversation)."""
        return customer_key(self.shop, self.customer, self.instance)

    @property
    def q(self) -> str:
        return queue_series(self.shop, self.queue, self.channel)

    @property
    def a(self) -> list[str]:
        return [agent_series(self.shop, self.team, self.agent)] if self.agent else []

    @property
    def deadline(self) -> int:
        """Expiry: kept a day (and an hour) once closed, for reopens; open ones a week idle."""
        return self.last_ts + (OPEN_IDLE_MS if self.open else CLOSED_KEPT_MS)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["seen"] = to_row(self.seen)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Conversation:
        d = {**d, "seen": from_row(d["seen"]), "handled_by": tuple(d["handled_by"]),
             "waiting_series": tuple(d["waiting_series"])}
        old_key = d.pop("customer_key", None)
        if old_key is not None:   # a row written when the key was kept: its customer id
            prefix = f"{d['shop']}|c:"
            d["customer"] = old_key[len(prefix):] if old_key.startswith(prefix) else ""
        return Conversation(**d)


def customer_key(shop: str, customer: str, fallback: str) -> str:
    return f"{shop}|c:{customer}" if customer else f"{shop}|v:{fallback}"


def create(ev: Event, out: Out) -> Conversation:
    """A new conversation from its first event (which the caller then applies)."""
    c = Conversation(cid=ev.conversation_id, shop=ev.shop_id, created=ev.ts,
                     customer=ev.customer_id, last_ts=ev.ts)
    _labels(c, ev)
    c.created_series = c.q
    out.fact("conversations", ev.ts, [c.q, shop_series(c.shop)])   # the shop exists from now
    if ev.customer_id:
        out.customers.append(CustomerRecord("contact", ev.ts, c.customer_key, c.instance))
    return c


def apply_event(c: Conversation, ev: Event, out: Out, digest: bytes) -> None:
    """Apply one (non-duplicate) event, whose id's digest is ``digest``, to a known, unexpired
    conversation."""
    c.last_ts = ev.ts
    c.seen += digest
    _labels(c, ev)
    handler = _HANDLERS.get(ev.type)
    if handler is not None:
        handler(c, ev, out)
    _sync_waiting(c, ev.ts, out)


def expire(c: Conversation, out: Out) -> None:
    """An open conversation idle for a week is closed by timeout at its deadline."""
    if c.open:
        at = c.deadline
        _close(c, at, out, left=True, resolved=False)
        _sync_waiting(c, at, out)


# --- labels and holdings -----------------------------------------------------------------------

def _labels(c: Conversation, ev: Event) -> None:
    if ev.channel and not c.channel:
        c.channel = ev.channel
    transfer = ev.type == "conversation.transferred"
    queue = (ev.attrs.get("to_queue") if transfer else None) or ev.queue
    if queue:
        c.queue = queue
    team = (ev.attrs.get("to_team") if transfer else None) or ev.team
    if team:
        c.team = team


def _set_agent(c: Conversation, agent: str, ts: int, out: Out) -> None:
    if agent == c.agent:
        return
    _end_hold(c, ts, out)
    c.agent = agent
    if c.open and agent:
        _start_hold(c, ts, out)


def _start_hold(c: Conversation, ts: int, out: Out) -> None:
    c.hold_start = ts
    c.hold_series = c.a[0]
    if c.held_from is None:
        c.held_from = ts
    out.fact("session_open", ts, [c.hold_series], subject=c.instance)
    if c.agent not in c.handled_by:   # handled: once per agent (whatever its team then)
        c.handled_by = (*c.handled_by, c.agent)
        out.fact("handled", ts, [c.hold_series])


def _end_hold(c: Conversation, ts: int, out: Out) -> None:
    if c.hold_start is None:
        return
    out.fact("session_close", ts, [c.hold_series], subject=c.instance)
    out.fact("handle", ts, [c.hold_series], (ts - c.hold_start) / 1000.0)
    c.hold_start = None
    c.hold_series = ""


# --- waits, messages, runs ------------------------------------------------------------------

def _hand_off(c: Conversation, ts: int) -> None:
    if c.handed_off or not c.open:
        return
    c.handed_off = True
    if c.wait_start is None and (c.channel == PHONE or (c.bot_served and c.customer_wrote)):
        _start_wait(c, ts)


def _start_wait(c: Conversation, ts: int) -> None:
    c.wait_start = ts
    c.wait_series = c.q
    c.wait_open = True


def _customer_message(c: Conversation, ts: int) -> None:
    c.customer_wrote = True
    if (c.bot_served or c.channel == PHONE) and not c.handed_off:
        return   # self-service: the bot (or the phone's VRU) answers these
    if c.wait_start is None and c.channel != PHONE:
        _start_wait(c, ts)
    c.pending += 1
    if c.run_start is None:
        c.run_start = ts


def _bot_message(c: Conversation) -> None:
    if c.handed_off or c.bot_served:
        return
    # A bot before any hand-off: the whole segment so far was self-service, so a provisional
    # wait (the customer wrote first) is no wait at all; it starts at the hand-off instead.
    c.bot_served = True
    c.wait_start, c.wait_open = None, False
    c.pending, c.run_start = 0, None


def _agent_message(c: Conversation, ts: int, sender: list[str], out: Out) -> None:
    if c.wait_open and c.wait_start is not None:
        frt = ts - c.wait_start
        w = [c.wait_series]
        out.fact("queued", c.wait_start, [*w, shop_series(c.shop)])
        out.fact("first_response", ts, [*w, *sender, shop_series(c.shop)], frt / 1000.0)
        out.fact("sl_answered_within" if frt <= SERVICE_LEVEL_TARGET_MS
                 else "sl_answered_after", ts, [*w, *sender])
        c.wait_open, c.wait_answered, c.replied = False, True, True
        if not c.served:
            c.served = True
            out.fact("served", ts, [*w, *sender])
            out.customers.append(CustomerRecord("served", ts, c.customer_key, c.instance,
                                                float(c.created), [*w, *sender]))
    if c.pending and c.run_start is not None:
        here = [c.q, *sender]
        out.fact("messages_answered", ts, here, float(c.pending))
        out.fact("runs_answered", ts, here)
        out.fact("response", ts, here, (ts - c.run_start) / 1000.0)
        c.pending, c.run_start, c.replied = 0, None, True


def _close(c: Conversation, ts: int, out: Out, *, left: bool, resolved: bool) -> None:
    here = [c.q, *c.a]
    if c.wait_open and c.wait_start is not None:
        w = [c.wait_series]
        out.fact("queued", c.wait_start, [*w, shop_series(c.shop)])
        if left:
            waited = ts - c.wait_start
            short = waited < SHORT_ABANDON_MS
            out.fact("abandoned", c.wait_start, w)
            if short:
                out.fact("abandoned_short", c.wait_start, w)
            out.fact("abandon_wait", ts, [*w, shop_series(c.shop)], waited / 1000.0)
            out.fact("sl_abandoned_within" if short else "sl_abandoned_after", ts, w)
        c.wait_open = False
    if c.pending:
        out.fact("messages_unanswered", ts, here, float(c.pending))
        out.fact("runs_unanswered", ts, here)
        c.pending, c.run_start = 0, None
    out.fact("ended", ts, here)
    if c.replied:
        out.fact("ended_replied", ts, here)
    if c.held_from is not None:
        out.fact("handle", ts, [c.q, shop_series(c.shop)], (ts - c.held_from) / 1000.0)
    _end_hold(c, ts, out)
    if resolved:
        c.resolutions += 1
        out.fact("resolved", ts, here)
        start = c.created if c.segment_start is None else c.segment_start
        out.fact("resolution", ts, here, (ts - start) / 1000.0)
        out.customers.append(CustomerRecord("resolution", ts, c.customer_key, c.instance,
                                            float(c.resolutions), here))
    c.open = False


def _new_segment(c: Conversation) -> None:
    c.handed_off = c.bot_served = c.customer_wrote = False
    c.wait_start, c.wait_series, c.wait_open, c.wait_answered = None, "", False, False
    c.pending, c.run_start, c.replied = 0, None, False
    c.held_from = c.hold_start = None
    c.hold_series = ""


def _sync_waiting(c: Conversation, ts: int, out: Out) -> None:
    """Keep the live "waiting now" (queue and agent series) and the shop's unsettled waits (an
    input of the arrival rate) in step with the conversation."""
    since = None
    if c.open:
        if c.wait_open:
            since = c.wait_start
        elif c.wait_answered and c.pending:
            since = c.run_start
    targets = (c.q, *c.a) if since is not None else ()
    if targets != c.waiting_series or since != c.waiting_since:
        out.fact("wait_close", ts, list(c.waiting_series), subject=c.instance)
        out.fact("wait_open", ts, list(targets), float(since or 0), subject=c.instance)
        c.waiting_series, c.waiting_since = targets, since
    unsettled = c.wait_start if c.open and c.wait_open else None
    if unsettled != c.unsettled_since:
        shop = [shop_series(c.shop)]
        if c.unsettled_since is not None:
            out.fact("unsettled_close", ts, shop, subject=c.instance)
        if unsettled is not None:
            out.fact("unsettled_open", ts, shop, float(unsettled), subject=c.instance)
        c.unsettled_since = unsettled


# --- handlers -------------------------------------------------------------------------------

def _on_queued(c: Conversation, ev: Event, out: Out) -> None:
    _hand_off(c, ev.ts)


def _on_assigned(c: Conversation, ev: Event, out: Out) -> None:
    _set_agent(c, ev.agent_id, ev.ts, out)
    _hand_off(c, ev.ts)


def _on_transferred(c: Conversation, ev: Event, out: Out) -> None:
    if not c.transferred:
        c.transferred = True
        out.fact("transferred", c.created, [c.created_series])
    _set_agent(c, ev.attrs.get("to_agent_id", ""), ev.ts, out)
    _hand_off(c, ev.ts)


def _on_escalated(c: Conversation, ev: Event, out: Out) -> None:
    if not c.escalated:
        c.escalated = True
        out.fact("escalated", c.created, [c.created_series])


def _on_message(c: Conversation, ev: Event, out: Out) -> None:
    sender = ev.attrs["sender"]
    chars = float(ev.attrs.get("chars", 0))
    if sender == "customer":
        out.fact("customer_messages", ev.ts, [c.q])
        out.fact("customer_chars", ev.ts, [c.q], chars)
        if c.open:
            _customer_message(c, ev.ts)
    elif sender == "agent":
        if not c.agent:
            _set_agent(c, ev.agent_id, ev.ts, out)
        s = [agent_series(c.shop, c.team, ev.agent_id)]
        out.fact("agent_messages", ev.ts, [c.q, *s])
        out.fact("agent_chars", ev.ts, [c.q, *s], chars)
        violations = ev.attrs.get("violations", 0)
        if violations:   # forbidden phrases, counted at the ingest edge (phrases.py)
            out.fact("forbidden_phrases", ev.ts, [c.q, *s], float(violations))
        if c.open:
            _hand_off(c, ev.ts)
            _agent_message(c, ev.ts, s, out)
    else:
        out.fact("bot_messages", ev.ts, [c.q])
        out.fact("bot_chars", ev.ts, [c.q], chars)
        if c.open:
            _bot_message(c)


def _on_closed(c: Conversation, ev: Event, out: Out) -> None:
    if not c.open:
        return
    abandoned = ev.type == "conversation.abandoned"
    left = abandoned or ev.attrs.get("closed_by") in CUSTOMER_LEFT
    _close(c, ev.ts, out, left=left, resolved=not abandoned and bool(ev.attrs.get("resolved")))


def _on_reopened(c: Conversation, ev: Event, out: Out) -> None:
    if c.open:
        return
    c.open = True
    _new_segment(c)
    c.segment_start = ev.ts
    out.fact("reopened", ev.ts, [c.q, *c.a])
    out.customers.append(CustomerRecord("reopen", ev.ts, c.customer_key, c.instance))
    if c.agent:
        _start_hold(c, ev.ts, out)


def _on_rated(c: Conversation, ev: Event, out: Out) -> None:
    a = ev.attrs
    low, high = float(a.get("scale_min", 1)), float(a["scale"])
    score = 1.0 + 4.0 * (float(a["score"]) - low) / (high - low)
    here = [c.q, *c.a]
    out.fact("csat", ev.ts, here, score)
    if score >= 4.0:
        out.fact("csat_satisfied", ev.ts, here)
    if score <= 2.0:
        out.fact("csat_dissatisfied", ev.ts, here)
        if a.get("attitude") == "negative":   # 差评 blamed on the agent's attitude
            out.fact("csat_dissatisfied_attitude", ev.ts, here)
    if "attitude" in a:
        out.fact("attitude_rated", ev.ts, here)
        if a["attitude"] == "positive":
            out.fact("attitude_positive", ev.ts, here)


def _on_order(c: Conversation, ev: Event, out: Out) -> None:
    order_event(ev, out, key=c.customer_key, conversation=c.instance)


def order_event(ev: Event, out: Out, key: str | None, conversation: str = "") -> None:
    """``order.*``: count it for its shop, and hand it to the customer stage for attribution or
    after-sales matching (unless ``key`` is None: it names a conversation no longer known, which
    nothing can credit or match)."""
    shop = [shop_series(ev.shop_id)]
    order_id = str(ev.attrs.get("order_id", ""))
    if ev.type == "order.paid":
        amount = float(ev.attrs.get("amount", 0.0))
        out.fact("orders", ev.ts, shop)
        out.fact("orders_amount", ev.ts, shop, amount)
        record = CustomerRecord("order", ev.ts, key or "", conversation, amount, shop,
                                ev.event_id, order_id)
    elif ev.type == "order.refunded":
        out.fact(f"refunds_{refund_reason(ev.attrs.get('reason'))}", ev.ts, shop)
        out.fact("refunds_amount", ev.ts, shop, float(ev.attrs.get("amount", 0.0)))
        record = CustomerRecord("refund", ev.ts, key or "", order=order_id)
    else:   # order.returned: a return (退货) or an exchange (换货)
        kind = "exchange" if ev.attrs.get("kind") == "exchange" else "return"
        out.fact("order_exchanges" if kind == "exchange" else "order_returns", ev.ts, shop)
        record = CustomerRecord(kind, ev.ts, key or "", order=order_id)
    if key is not None:
        out.customers.append(record)


_HANDLERS = {
    "conversation.queued": _on_queued,
    "conversation.assigned": _on_assigned,
    "conversation.transferred": _on_transferred,
    "conversation.escalated": _on_escalated,
    "message.sent": _on_message,
    "conversation.closed": _on_closed,
    "conversation.abandoned": _on_closed,
    "conversation.reopened": _on_reopened,
    "satisfaction.rated": _on_rated,
    "order.paid": _on_order,
    "order.refunded": _on_order,
    "order.returned": _on_order,
}

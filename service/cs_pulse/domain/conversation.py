"""Conversation state machine: folds one conversation's events into facts.

Events are applied in arrival order but placed on the conversation's timeline by event time, so a
reply that arrives before the message it answers is still paired with it. A published value is
never rewritten (Prometheus counters cannot go down): an out-of-order event that would change one
is counted as ``late_corrections`` instead. The README states each definition exactly.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from .catalogue import (
    CONVERSION_HORIZON_SECONDS,
    FCR_HORIZON_SECONDS,
    QUEUE_ONLY,
    SERVICE_LEVEL_TARGET_SECONDS,
    SHOP_KINDS,
    SHORT_ABANDON_SECONDS,
)
from .model import Event, Fact, series_key

CUSTOMER_LEFT = frozenset({"customer", "timeout", "system"})
MAX_REMEMBERED_EVENT_IDS = 2000  # per conversation; far above any real chat's length


@dataclass
class Conversation:
    cid: str
    shop: str
    channel: str = ""
    queue: str = ""
    team: str = ""
    agent: str = ""
    customer: str = ""
    status: str = "open"
    last_ts: float = 0.0
    # Current human-wait segment: begins at start, bot hand-off or reopen (the FRT clock).
    segment_start: float = 0.0
    start_confirmed: bool = False   # a conversation.started event has set segment_start
    frt_published: bool = False
    bot_active: bool = False        # a bot is serving; the customer is not waiting for a human
    customer_ts: list[float] = field(default_factory=list)   # segment's customer messages
    agent_ts: list[float] = field(default_factory=list)      # segment's human agent messages
    published_runs: list[list[float]] = field(default_factory=list)  # [answer_ts, start_ts]
    replied: bool = False           # >= 1 human reply since the conversation began
    served_at: float | None = None  # first human reply ever (conversion clock)
    assigned_at: float | None = None
    closed_at: float | None = None
    resolved_at: float | None = None
    transferred: bool = False
    escalated: bool = False
    converted: bool = False
    wait_series: list[str] = field(default_factory=list)  # where wait_open was published
    wait_since: float | None = None
    session_series: str = ""        # agent series holding this open session ("" = none)
    seen: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Conversation:
        return Conversation(**d)

    @property
    def queue_series(self) -> str:
        return series_key(self.shop, self.queue, self.channel)

    @property
    def agent_series(self) -> str:
        return series_key(self.shop, "", "", self.team, self.agent) if self.agent else ""


def message_runs(customer_ts: list[float], agent_ts: list[float]
                 ) -> list[tuple[float, float | None]]:
    """Runs of customer messages as (first message ts, answering agent message ts or None).

    A run is ended by the next human agent message; at equal times the customer message counts
    as first, so an instant reply is a 0 s response, not a reply to nothing.
    """
    runs: list[tuple[float, float | None]] = []
    start: float | None = None
    i = j = 0
    while i < len(customer_ts) or j < len(agent_ts):
        if j >= len(agent_ts) or (i < len(customer_ts) and customer_ts[i] <= agent_ts[j]):
            if start is None:
                start = customer_ts[i]
            i += 1
        else:
            if start is not None:
                runs.append((start, agent_ts[j]))
                start = None
            j += 1
    if start is not None:
        runs.append((start, None))
    return runs


class _Emitter:
    """Collects the facts caused by one event (in a deterministic order: replays repeat it).

    A KPI fact goes to the conversation's queue series and, unless it describes only the queue,
    to its agent's series too, so both boards are computed from whole groups on one worker;
    staffing inputs go to the shop's series as well.
    """

    def __init__(self, event: Event, conv: Conversation) -> None:
        self.event = event
        self.conv = conv
        self.facts: list[Fact] = []

    def __call__(self, kind: str, value: float = 1.0, ts: float | None = None) -> None:
        self.to(self.conv.queue_series, kind, value, ts=ts)
        if self.conv.agent and kind not in QUEUE_ONLY:
            self.to(self.conv.agent_series, kind, value, ts=ts)
        if kind in SHOP_KINDS:
            self.to(series_key(self.conv.shop), kind, value, ts=ts)

    def to(self, series: str, kind: str, value: float = 1.0, subject: str = "",
           ts: float | None = None) -> None:
        self.facts.append(
            Fact(kind, self.event.ts if ts is None else ts, series, value, subject))


def new_conversation(event: Event) -> Conversation:
    return Conversation(
        cid=event.conversation_id, shop=event.shop_id, channel=event.channel,
        queue=event.queue, team=event.team, agent="", customer=event.customer_id,
        last_ts=event.ts, segment_start=event.ts,
    )


def apply_event(conv: Conversation | None, event: Event) -> tuple[Conversation, list[Fact], bool]:
    """Apply one conversation event. Returns (state, facts, duplicate?)."""
    if conv is not None and event.event_id in conv.seen:
        return conv, [], True
    created = conv is None
    if conv is None:
        conv = new_conversation(event)
    emit = _Emitter(event, conv)
    if created:
        emit("conversations")
        emit("queued")
    conv.seen.append(event.event_id)
    if len(conv.seen) > MAX_REMEMBERED_EVENT_IDS:
        del conv.seen[: len(conv.seen) - MAX_REMEMBERED_EVENT_IDS]
    conv.last_ts = max(conv.last_ts, event.ts)
    if event.channel and not conv.channel:
        conv.channel = event.channel
    if event.customer_id and not conv.customer:
        conv.customer = event.customer_id
    handler = _HANDLERS.get(event.type)
    if handler is not None:
        handler(conv, event, emit)
    if conv.status == "open":
        _publish_timeline(conv, emit)
    _sync_waiting(conv, emit)
    return conv, emit.facts, False


# --- handlers -------------------------------------------------------------------------------

def _on_started(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    if conv.start_confirmed:
        return
    conv.start_confirmed = True
    if ev.ts < conv.segment_start:
        if conv.frt_published:
            emit("late_corrections")
        else:
            conv.segment_start = ev.ts
            _trim_segment(conv)
    if ev.queue:
        _move(conv, emit, queue=ev.queue)


def _on_queued(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    # A queue entry after the bot spoke is the bot hand-off: the FRT clock restarts there.
    if conv.bot_active and not conv.frt_published and ev.ts >= conv.segment_start:
        conv.segment_start = ev.ts
        conv.bot_active = False
        _trim_segment(conv)
    if ev.queue:
        _move(conv, emit, queue=ev.queue)


def _on_assigned(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    if conv.assigned_at is None:
        conv.assigned_at = ev.ts
    _move(conv, emit, queue=ev.queue or conv.queue, agent=ev.agent_id or conv.agent,
          team=ev.team or conv.team)


def _on_transferred(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    a = ev.attrs
    if not conv.transferred:
        conv.transferred = True
        emit("transferred")
    _move(conv, emit, queue=a.get("to_queue") or conv.queue,
          agent=a.get("to_agent_id", conv.agent), team=a.get("to_team") or conv.team)


def _on_escalated(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    if not conv.escalated:
        conv.escalated = True
        emit("escalated")


def _on_message(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    sender = ev.attrs["sender"]
    chars = float(ev.attrs.get("chars", 0))
    in_segment = conv.status == "open" and ev.ts >= conv.segment_start
    if sender == "customer":
        emit("customer_messages")
        emit("customer_chars", chars)
        if in_segment:
            bisect.insort(conv.customer_ts, ev.ts)
    elif sender == "agent":
        if ev.agent_id and ev.agent_id != conv.agent and not conv.agent:
            _on_assigned(conv, ev, emit)  # a reply without an assignment event assigns
        emit("agent_messages")
        emit("agent_chars", chars)
        if in_segment:
            bisect.insort(conv.agent_ts, ev.ts)
            conv.bot_active = False
    else:  # bot
        emit("bot_messages")
        if in_segment and not conv.agent_ts:
            conv.bot_active = True


def _on_closed(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    if conv.status == "closed":
        return
    closed_by = ev.attrs.get("closed_by", "customer" if ev.type == "conversation.abandoned" else "")
    left = ev.type == "conversation.abandoned" or closed_by in CUSTOMER_LEFT
    _publish_timeline(conv, emit)
    if not conv.agent_ts and left and not conv.bot_active:
        wait = max(0.0, ev.ts - conv.segment_start)
        emit("abandoned")
        emit("abandon_wait", wait)
        if wait < SHORT_ABANDON_SECONDS:
            emit("abandoned_short")
            emit("sl_abandoned_within")
        else:
            emit("sl_abandoned_after")
    runs = message_runs(conv.customer_ts, conv.agent_ts)
    if runs and runs[-1][1] is None:
        emit("runs_unanswered")
    emit("ended")
    if conv.replied:
        emit("ended_replied")
    if conv.assigned_at is not None:
        emit("handle", max(0.0, ev.ts - conv.assigned_at))
    if ev.attrs.get("resolved"):
        conv.resolved_at = ev.ts
        emit("resolved")
    conv.status = "closed"
    conv.closed_at = ev.ts
    if conv.session_series:
        emit.to(conv.session_series, "session_close", subject=conv.cid)
        conv.session_series = ""


def _on_reopened(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    if conv.status != "closed":
        return
    emit("reopened")
    if conv.resolved_at is not None and ev.ts - conv.resolved_at <= FCR_HORIZON_SECONDS:
        emit("resolved_reopened")
    conv.resolved_at = None
    conv.status = "open"
    conv.segment_start = ev.ts
    conv.frt_published = False
    conv.bot_active = False
    conv.customer_ts, conv.agent_ts, conv.published_runs = [], [], []
    conv.assigned_at = ev.ts if conv.agent else None
    emit("queued")
    if conv.agent:
        conv.session_series = conv.agent_series
        emit.to(conv.session_series, "session_open", subject=conv.cid)


def _on_rated(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    a = ev.attrs
    score = float(a["score"]) * 5.0 / float(a.get("scale", 5))
    emit("csat", score)
    if score >= 4.0:
        emit("csat_ge4")
    if "attitude" in a:
        emit("attitude_rated")
        if a["attitude"] == "positive":
            emit("attitude_positive")


def _on_order_paid(conv: Conversation, ev: Event, emit: _Emitter) -> None:
    if conv.converted or conv.served_at is None:
        return
    if 0.0 <= ev.ts - conv.served_at <= CONVERSION_HORIZON_SECONDS:
        conv.converted = True
        emit("converted")
        emit("gmv", float(ev.attrs.get("amount", 0.0)))


_HANDLERS = {
    "conversation.started": _on_started,
    "conversation.queued": _on_queued,
    "conversation.assigned": _on_assigned,
    "conversation.transferred": _on_transferred,
    "conversation.escalated": _on_escalated,
    "message.sent": _on_message,
    "conversation.closed": _on_closed,
    "conversation.abandoned": _on_closed,
    "conversation.reopened": _on_reopened,
    "satisfaction.rated": _on_rated,
    "order.paid": _on_order_paid,
}


# --- derived publication ----------------------------------------------------------------------

def _trim_segment(conv: Conversation) -> None:
    """Drop timeline entries that fall before a (moved) segment start."""
    conv.customer_ts = [t for t in conv.customer_ts if t >= conv.segment_start]
    conv.agent_ts = [t for t in conv.agent_ts if t >= conv.segment_start]


def _publish_timeline(conv: Conversation, emit: _Emitter) -> None:
    """Publish first response and answered runs that the timeline now determines."""
    if conv.agent_ts and not conv.frt_published:
        first = conv.agent_ts[0]
        frt = first - conv.segment_start
        conv.frt_published = True
        emit("first_response", frt, ts=first)
        emit("sl_answered_within" if frt <= SERVICE_LEVEL_TARGET_SECONDS
             else "sl_answered_after", ts=first)
        if not conv.replied:
            conv.replied = True
            conv.served_at = first
            emit("served", ts=first)
    published = {answer: start for answer, start in conv.published_runs}
    for start, answer in message_runs(conv.customer_ts, conv.agent_ts):
        if answer is None:
            continue
        if answer in published:
            if published[answer] != start:
                # An earlier message of an already-answered run arrived late: keep the
                # published value and say so.
                conv.published_runs = [
                    [a, start if a == answer else st] for a, st in conv.published_runs
                ]
                emit("late_corrections")
            continue
        conv.published_runs.append([answer, start])
        emit("response", answer - start, ts=answer)
        emit("runs_answered", ts=answer)


def _waiting_since(conv: Conversation) -> float | None:
    if conv.status != "open" or conv.bot_active:
        return None
    if not conv.agent_ts:
        return conv.segment_start
    runs = message_runs(conv.customer_ts, conv.agent_ts)
    if runs and runs[-1][1] is None:
        return runs[-1][0]
    return None


def _sync_waiting(conv: Conversation, emit: _Emitter) -> None:
    """Keep "waiting now" in step: the customer waits in the queue's and the agent's series."""
    since = _waiting_since(conv)
    targets = []
    if since is not None:
        targets = [conv.queue_series] + ([conv.agent_series] if conv.agent else [])
    if targets == conv.wait_series and since == conv.wait_since:
        return
    for series in conv.wait_series:
        emit.to(series, "wait_close", subject=conv.cid)
    for series in targets:
        emit.to(series, "wait_open", since or 0.0, subject=conv.cid)
    conv.wait_series, conv.wait_since = targets, since


def _move(conv: Conversation, emit: _Emitter, *, queue: str | None = None,
          agent: str | None = None, team: str | None = None) -> None:
    """Change queue/agent/team labels; open sessions follow the agent."""
    old_agent_series = conv.session_series
    if queue is not None:
        conv.queue = queue
    if agent is not None:
        conv.agent = agent
    if team is not None:
        conv.team = team
    new_agent_series = conv.agent_series if conv.status == "open" else ""
    if new_agent_series != old_agent_series:
        if old_agent_series:
            emit.to(old_agent_series, "session_close", subject=conv.cid)
        if new_agent_series:
            emit.to(new_agent_series, "session_open", subject=conv.cid)
        conv.session_series = new_agent_series


def expired(conv: Conversation, now: float) -> bool:
    """Closed conversations are kept a day for reopen/FCR/conversion; idle open ones a week."""
    if conv.status == "closed":
        return now - conv.last_ts > FCR_HORIZON_SECONDS + 3600.0
    return now - conv.last_ts > 7 * 86400.0

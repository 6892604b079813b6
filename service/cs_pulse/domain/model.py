"""Event, fact and series types of the domain core. Pure Python: no Kafka, no Faust.

Time is integer epoch milliseconds everywhere in the core (``ts`` on the wire is epoch ms):
durations are computed exactly and exported as ``ms / 1000`` seconds, so a 30.000 s answer is
never 29.999999 or 30.000001 s depending on the order of float operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from sys import intern
from typing import Any


class SeriesKind(StrEnum):
    """A series is the label set a fact is counted under, kept as one string (a Kafka key and a
    dict key). Its first field is its kind, so a queue without name never aliases the shop."""

    QUEUE = "q"
    AGENT = "a"
    TEAM = "t"
    SHOP = "s"


QUEUE, AGENT, TEAM, SHOP = SeriesKind.QUEUE, SeriesKind.AGENT, SeriesKind.TEAM, SeriesKind.SHOP
QUEUE_LABELS = ("shop", "queue", "channel")
AGENT_LABELS = ("shop", "team", "agent")
TEAM_LABELS = ("shop", "team")


# Series and label strings are interned: thousands of open conversations and their facts share
# one copy of each (a few hundred bytes per conversation otherwise).
def queue_series(shop: str, queue: str, channel: str) -> str:
    return intern(f"q|{shop}|{queue}|{channel}")


def agent_series(shop: str, team: str, agent: str) -> str:
    return intern(f"a|{shop}|{team}|{agent}")


def team_series(agent: str) -> str:
    """The team series of an agent series: distinct customers of a team are not a sum."""
    _, shop, team, _ = agent.split("|")
    return intern(f"t|{shop}|{team}")


def shop_series(shop: str) -> str:
    return intern(f"s|{shop}")


def parse_series(key: str) -> tuple[SeriesKind, tuple[str, ...]]:
    """(kind, label values): ``(QUEUE, (shop, queue, channel))``, ``(AGENT, (shop, team,
    agent))``, ``(TEAM, (shop, team))`` or ``(SHOP, (shop,))``. Label values never contain "|"
    (the schemas forbid it)."""
    kind, *values = key.split("|")
    return SeriesKind(kind), tuple(values)


def series_shop(key: str) -> str:
    return key.split("|", 2)[1]


@dataclass(slots=True)
class Event:
    """A validated chat-platform event (see ``schemas/``). ``ts`` starts as the event's own time
    and becomes its effective time when the ordering stage admits it; ``sent_ts`` keeps the
    original for the pipeline lag."""

    event_id: str
    type: str
    ts: int
    shop_id: str
    conversation_id: str = ""
    channel: str = ""
    queue: str = ""
    agent_id: str = ""
    team: str = ""
    customer_id: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    sent_ts: int = 0

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Event:
        """Build from a schema-valid dict; type-specific fields stay in ``attrs``."""
        return Event(
            event_id=d["event_id"],
            type=intern(d["type"]),
            ts=d["ts"],
            shop_id=intern(d["shop_id"]),
            conversation_id=d.get("conversation_id", ""),
            channel=intern(d.get("channel", "")),
            queue=intern(d.get("queue", "")),
            agent_id=intern(d.get("agent_id", "")),
            team=intern(d.get("team", "")),
            customer_id=d.get("customer_id", ""),
            attrs=d,
            sent_ts=d["ts"],
        )


@dataclass(slots=True)   # not frozen: a frozen __init__ costs a setattr call per field
class Fact:
    """One observation for the aggregation stage: ``kind`` counted under ``series`` at ``ts``
    (ms). ``subject`` names the conversation (or agent) for stateful kinds (waiting, sessions,
    roster); it is never exported as a label."""

    kind: str
    ts: int
    series: str
    value: float = 1.0
    subject: str = ""


@dataclass(slots=True)
class CustomerRecord:
    """What the conversation stage tells the customer stage (keyed by ``key``: the shop and
    customer, or the conversation itself when it has no customer).

    ``kind``: ``contact`` (a conversation created), ``resolution`` (``value`` = its ordinal in the
    conversation), ``reopen``, ``served`` (``value`` = the conversation's creation, ms), ``order``
    (``value`` = amount, ``ref`` = the order event's id, ``order`` = its ``order_id``,
    ``conversation`` = the conversation it names, if any), ``refund``, ``return`` or
    ``exchange`` (after-sales: ``order`` = the ``order_id`` it names); ``progress``: no later
    record of its events partition will be older than ``ts``. ``series`` are where
    the customer stage's answers are counted."""

    kind: str
    ts: int
    key: str
    conversation: str = ""
    value: float = 0.0
    series: list[str] = field(default_factory=list)
    ref: str = ""
    order: str = ""

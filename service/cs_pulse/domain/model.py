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


class Event:
    """A validated chat-platform event (see ``schemas/``). ``ts`` starts as the event's own time
    and becomes its effective time when the ordering stage admits it; ``sent_ts`` keeps the
    original for the pipeline lag. Type-specific fields stay in ``attrs`` (the whole dict)."""

    # A plain class, not a dataclass: mypyc runs a dataclass's generated ``__init__`` as
    # interpreted code (mypyc/mypyc#817), and one Event is built per event.
    __slots__ = ("agent_id", "attrs", "channel", "conversation_id", "customer_id", "event_id",
                 "queue", "sent_ts", "shop_id", "team", "ts", "type")

    def __init__(self, d: dict[str, Any]) -> None:
        """From a schema-valid dict."""
        self.event_id: str = d["event_id"]
        self.type: str = intern(d["type"])
        self.ts: int = d["ts"]
        self.shop_id: str = intern(d["shop_id"])
        self.conversation_id: str = d.get("conversation_id", "")
        self.channel: str = intern(d.get("channel", ""))
        self.queue: str = intern(d.get("queue", ""))
        self.agent_id: str = intern(d.get("agent_id", ""))
        self.team: str = intern(d.get("team", ""))
        self.customer_id: str = d.get("customer_id", "")
        self.attrs: dict[str, Any] = d
        self.sent_ts: int = d["ts"]

    def __repr__(self) -> str:
        return f"Event({self.attrs!r}, ts={self.ts!r})"


class Fact:
    """One observation for the aggregation stage: ``kind`` counted under ``series`` at ``ts``
    (ms). ``subject`` names the conversation (or agent) for stateful kinds (waiting, sessions,
    roster); it is never exported as a label."""

    # A plain class, not a dataclass: mypyc runs a dataclass's generated ``__init__`` as
    # interpreted code (mypyc/mypyc#817), and a few Facts are built per event.
    __slots__ = ("kind", "series", "subject", "ts", "value")

    def __init__(self, kind: str, ts: int, series: str, value: float = 1.0,
                 subject: str = "") -> None:
        self.kind = kind
        self.ts = ts
        self.series = series
        self.value = value
        self.subject = subject

    def _fields(self) -> tuple[str, int, str, float, str]:
        return self.kind, self.ts, self.series, self.value, self.subject

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fact) and self._fields() == other._fields()

    def __repr__(self) -> str:
        return (f"Fact(kind={self.kind!r}, ts={self.ts!r}, series={self.series!r}, "
                f"value={self.value!r}, subject={self.subject!r})")


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

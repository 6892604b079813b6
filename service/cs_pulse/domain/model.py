"""Event and fact types of the domain core. Pure Python: no Kafka, no Faust.

Time is event time in float seconds since the Unix epoch. On the wire, ``ts`` is epoch
milliseconds (an integer), chosen over RFC 3339 because it is unambiguous across time zones and
cheap to validate and compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A series is the label set a fact is aggregated under. Stored as one string so it can be a
# Kafka key and a dict key; label values are validated by the schemas to never contain "|".
SERIES_LABELS = ("shop", "queue", "channel", "team", "agent")


def series_key(shop: str, queue: str = "", channel: str = "", team: str = "",
               agent: str = "") -> str:
    return f"{shop}|{queue}|{channel}|{team}|{agent}"


def series_labels(key: str) -> tuple[str, str, str, str, str]:
    shop, queue, channel, team, agent = key.split("|")
    return shop, queue, channel, team, agent


def series_shop(key: str) -> str:
    return key.split("|", 1)[0]


@dataclass(slots=True)
class Event:
    """A validated chat-platform event (see ``schemas/``)."""

    event_id: str
    type: str
    ts: float
    shop_id: str
    conversation_id: str = ""
    channel: str = ""
    queue: str = ""
    agent_id: str = ""
    team: str = ""
    customer_id: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Event:
        """Build from a schema-valid dict; type-specific fields land in ``attrs``."""
        return Event(
            event_id=d["event_id"],
            type=d["type"],
            ts=d["ts"] / 1000.0,
            shop_id=d["shop_id"],
            conversation_id=d.get("conversation_id", ""),
            channel=d.get("channel", ""),
            queue=d.get("queue", ""),
            agent_id=d.get("agent_id", ""),
            team=d.get("team", ""),
            customer_id=d.get("customer_id", ""),
            attrs=d,
        )


@dataclass(slots=True)   # not frozen: a frozen __init__ costs a setattr call per field
class Fact:
    """One observation handed from the conversation stage to the aggregation stage.

    Its identity is its origin (the event record that caused it and its index among that
    event's facts), kept next to it by the engine, so a replayed event's facts can be dropped.
    ``subject`` names the conversation for stateful gauges (waiting now, open sessions); it is
    never exported as a label.
    """

    kind: str
    ts: float
    series: str
    value: float = 1.0
    subject: str = ""

"""Compact builders for schema-valid event dicts used across the tests."""

from __future__ import annotations

import itertools
import time
from typing import Any

from cs_pulse.domain.conversation import Out
from cs_pulse.domain.model import Event
from cs_pulse.domain.stage import ConversationStage

_ids = itertools.count(1)
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z, a fixed origin for hand-computed cases


def peak_tz(now: float | None = None) -> str:
    """A fixed-offset zone where it is now 21:xx, in the simulator's busiest hours (20-22), so
    simulated traffic ending now is peak traffic at whatever time of day the tests run."""
    utc_hour = int(((time.time() if now is None else now) % 86400) // 3600)
    offset = (21 - utc_hour + 12) % 24 - 12          # hours ahead of UTC, -12..11
    return f"Etc/GMT{-offset:+d}"                    # POSIX sign: Etc/GMT-3 is UTC+3


def event_dict(type_: str, t: float, conv: str = "c1", *, shop: str = "s1",
               event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "schema_version": 1,
        "event_id": event_id or f"e{next(_ids)}",
        "type": type_,
        "ts": round((T0 + t) * 1000),
        "shop_id": shop,
    }
    if conv and not type_.startswith("agent."):
        d["conversation_id"] = conv
        d.setdefault("channel", "chat")
        d.setdefault("queue", "presale")
    d.update(fields)
    return d


def ev(type_: str, t: float, conv: str = "c1", **fields: Any) -> Event:
    return Event(event_dict(type_, t, conv, **fields))


def cust(t: float, conv: str = "c1", chars: int = 10, **kw: Any) -> Event:
    return ev("message.sent", t, conv, sender="customer", chars=chars, **kw)


def agent_msg(t: float, conv: str = "c1", agent: str = "a1", chars: int = 20, **kw: Any) -> Event:
    return ev("message.sent", t, conv, sender="agent", agent_id=agent, chars=chars, **kw)


def bot(t: float, conv: str = "c1", **kw: Any) -> Event:
    return ev("message.sent", t, conv, sender="bot", chars=5, **kw)


def applied(stage: ConversationStage, events: list[Event]) -> Out:
    """``events`` admitted to a conversation stage and released: what they produced."""
    out = Out()
    for offset, event in enumerate(events):
        stage.admit(offset, event)
    stage.release(out)
    return out

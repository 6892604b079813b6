"""Conversation stage: per-partition state of conversations (and other entities) -> facts.

Idempotent by ``event_id``: each conversation (or agent/customer entity) remembers the ids it
has applied. (Facts re-sent after a crash are dropped by the aggregation stage by their origin.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .aggregate import ONLINE_STATUSES
from .conversation import Conversation, apply_event, expired
from .model import Event, Fact, series_key

MAX_ENTITY_IDS = 500


@dataclass
class ConversationStage:
    conversations: dict[str, Conversation] = field(default_factory=dict)
    entities: dict[str, list[str]] = field(default_factory=dict)  # entity key -> seen event ids
    max_ts: float = 0.0
    _dirty: set[str] = field(default_factory=set)

    def process(self, event: Event) -> tuple[list[Fact], bool]:
        """Apply one event; returns (facts, duplicate?)."""
        self.max_ts = max(self.max_ts, event.ts)
        if event.conversation_id:
            conv = self.conversations.get(event.conversation_id)
            conv, facts, dup = apply_event(conv, event)
            if not dup:
                self.conversations[conv.cid] = conv
                self._dirty.add(f"c|{conv.cid}")
        else:
            facts, dup = self._entity_event(event)
        return facts, dup

    def _entity_event(self, event: Event) -> tuple[list[Fact], bool]:
        key = f"{event.shop_id}:{event.agent_id or event.customer_id}"
        seen = self.entities.setdefault(key, [])
        if event.event_id in seen:
            return [], True
        seen.append(event.event_id)
        if len(seen) > MAX_ENTITY_IDS:
            del seen[: len(seen) - MAX_ENTITY_IDS]
        self._dirty.add(f"e|{key}")
        if event.type == "agent.status":
            series = series_key(event.shop_id, "", "", event.team, event.agent_id)
            status = event.attrs["status"]
            maxc = float(event.attrs.get("max_concurrency", 0))
            roster = maxc if status in ONLINE_STATUSES else -1.0  # -1: not available
            return [
                Fact("presence", event.ts, series, maxc, status),
                Fact("roster", event.ts, series_key(event.shop_id), roster, event.agent_id),
            ], False
        if event.type == "agent.heartbeat":
            series = series_key(event.shop_id, "", "", event.team, event.agent_id)
            return [Fact("presence", event.ts, series, 0.0, "heartbeat")], False
        if event.type == "order.paid":
            return [Fact("orders_unattributed", event.ts, series_key(event.shop_id))], False
        return [], False   # order.refunded and the like: accepted, no KPI depends on them

    def expire(self) -> int:
        gone = [cid for cid, c in self.conversations.items() if expired(c, self.max_ts)]
        for cid in gone:
            del self.conversations[cid]
            self._dirty.add(f"c|{cid}")
        return len(gone)

    def take_changes(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for key in self._dirty:
            kind, _, name = key.partition("|")
            if kind == "c":
                conv = self.conversations.get(name)
                out.append((key, None if conv is None else conv.to_dict()))
            else:
                out.append((key, self.entities.get(name)))
        self._dirty.clear()
        return out

    def load(self, key: str, value: Any) -> None:
        """Rebuild one key from the changelog (value None = deleted)."""
        kind, _, name = key.partition("|")
        if kind == "c" and value is None:
            self.conversations.pop(name, None)
        elif kind == "c":
            conv = Conversation.from_dict(value)
            self.conversations[name] = conv
            self.max_ts = max(self.max_ts, conv.last_ts)
        elif value is None:
            self.entities.pop(name, None)
        else:
            self.entities[name] = value

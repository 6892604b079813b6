"""Conversation stage: one events partition's order, conversations and entities -> facts.

Events are admitted on arrival (``admit``: effective time, lateness) and take effect in time
order once the watermark reaches them (``advance``). Conversations expire on the watermark, in
the same time order, so what expires before an event arrives depends only on the log — never on
how fast a worker reads it. Idempotent by ``event_id`` per conversation, agent or customer.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from .conversation import (
    OPENING_TYPES,
    ORPHAN_TYPES,
    Conversation,
    Out,
    apply_event,
    create,
    customer_key,
    expire,
    order_event,
)
from .facts import ONLINE_STATUSES
from .model import Event, agent_series, shop_series
from .ordering import Reorder
from .seen import DIGEST_BYTES, from_row, holds, id_digest, to_row

MAX_ENTITY_IDS = 2000


@dataclass
class Entity:
    """An agent or a customer's orders: ids seen, and an agent's last known concurrency."""

    seen: bytes = b""   # digests of the last ``MAX_ENTITY_IDS`` event ids (see ``seen.py``)
    max_concurrency: float = 1.0


class ConversationStage:
    def __init__(self, grace_ms: int = 5000) -> None:
        self.order = Reorder(grace_ms)
        self.conversations: dict[str, Conversation] = {}
        self.entities: dict[str, Entity] = {}
        # (deadline, conversation id, created): at least one entry per conversation, never
        # later than its deadline (stale ones are re-checked when they come up).
        self.deadlines: list[tuple[int, str, int]] = []
        self._dirty: set[str] = set()

    # --- time order ---------------------------------------------------------------------------

    def admit(self, offset: int, event: Event) -> bool:
        """Hold a valid record; True if it is late (it then takes effect at the watermark)."""
        self._dirty.add("m")
        return self.order.admit(offset, event)

    def advance(self, out: Out) -> None:
        """Apply every held event the watermark has reached, and expire conversations, in
        time order."""
        for _, event in self.order.due():
            self._expire_before(event.ts, out)
            self._apply(event, out)
        w = self.order.watermark
        if w is not None:
            self._expire_before(w, out)

    def release(self, out: Out, clock: int | None = None) -> None:
        """A release: everything held takes effect; then the conversations whose deadline is
        before ``clock`` (ms: the worker's event clock, or the reading instant) expire,
        although the watermark stays at the largest time seen (lateness is the log's)."""
        self.order.release()
        self._dirty.add("m")
        self.advance(out)
        if clock is not None:
            self._expire_before(clock, out)

    @property
    def next_deadline(self) -> int | None:
        """No conversation expires before this (ms; an entry may be stale, never late)."""
        return self.deadlines[0][0] if self.deadlines else None

    def _expire_before(self, limit: int, out: Out) -> None:
        while self.deadlines and self.deadlines[0][0] < limit:
            _, cid, created = heapq.heappop(self.deadlines)
            conv = self.conversations.get(cid)
            if conv is None or conv.created != created:
                continue
            due = conv.deadline
            if due >= limit:
                heapq.heappush(self.deadlines, (due, cid, created))
                continue
            expire(conv, out)
            del self.conversations[cid]
            self._dirty.add(f"c|{cid}")

    # --- applying -----------------------------------------------------------------------------

    def _apply(self, ev: Event, out: Out) -> None:
        if not ev.conversation_id or ev.type.startswith("agent."):
            self._entity_event(ev, out)
            return
        cid = ev.conversation_id
        conv = self.conversations.get(cid)
        digest = id_digest(ev.event_id)
        if conv is None:
            if ev.type in OPENING_TYPES:
                conv = self.conversations[cid] = create(ev, out)
                heapq.heappush(self.deadlines, (conv.deadline, cid, conv.created))
                apply_event(conv, ev, out, digest)
            elif ev.type in ORPHAN_TYPES:
                out.orphans.append(ev.type)
                return
            elif ev.type.startswith("order."):   # names a conversation no longer known
                order_event(ev, out, key=None)
                return
            else:
                return
        elif holds(conv.seen, digest):
            out.duplicates += 1
            return
        else:
            was_open = conv.open
            apply_event(conv, ev, out, digest)
            if was_open and not conv.open:   # closing shortens the deadline
                heapq.heappush(self.deadlines, (conv.deadline, cid, conv.created))
        self._dirty.add(f"c|{cid}")

    def _entity_event(self, ev: Event, out: Out) -> None:
        agent = ev.type.startswith("agent.")
        key = f"a|{ev.shop_id}|{ev.agent_id}" if agent else f"c|{ev.shop_id}|{ev.customer_id}"
        entity = self.entities.get(key)
        if entity is None:
            entity = self.entities[key] = Entity()
        digest = id_digest(ev.event_id)
        if holds(entity.seen, digest):
            out.duplicates += 1
            return
        entity.seen = (entity.seen + digest)[-MAX_ENTITY_IDS * DIGEST_BYTES:]
        self._dirty.add(f"e|{key}")
        if ev.type == "agent.status":
            status = ev.attrs["status"]
            if ev.attrs.get("max_concurrency", 0) >= 1:   # 0 or missing keeps the last value
                entity.max_concurrency = float(ev.attrs["max_concurrency"])
            out.fact("status", ev.ts, [agent_series(ev.shop_id, ev.team, ev.agent_id)],
                     entity.max_concurrency, subject=status)
            out.fact("roster", ev.ts, [shop_series(ev.shop_id)],
                     entity.max_concurrency if status in ONLINE_STATUSES else -1.0,
                     subject=ev.agent_id)
        elif ev.type.startswith("order."):
            order_event(ev, out, key=customer_key(ev.shop_id, ev.customer_id, ""))

    # --- persistence ----------------------------------------------------------------------------

    def take_changes(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for key in self._dirty:
            kind, _, name = key.partition("|")
            if kind == "m":
                out.append(("m", {"max_ts": self.order.max_ts,
                                  "released_to": self.order.released_to}))
            elif kind == "c":
                conv = self.conversations.get(name)
                out.append((key, None if conv is None else conv.to_dict()))
            else:
                entity = self.entities.get(name)
                out.append((key, None if entity is None else
                            {"seen": to_row(entity.seen),
                             "max_concurrency": entity.max_concurrency}))
        self._dirty.clear()
        return out

    def rewrite(self, key: str) -> None:
        """Write ``key`` again with the next changes (its value now, or its deletion): a row of
        it in the changelog was fenced off, and compaction keeps only the newest row of a key."""
        self._dirty.add(key)

    def load(self, key: str, value: Any) -> None:
        """Rebuild one key from the changelog (value None = deleted)."""
        kind, _, name = key.partition("|")
        if kind == "m":
            if value is not None:
                self.order.max_ts, self.order.released_to = value["max_ts"], value["released_to"]
        elif kind == "c" and value is None:
            self.conversations.pop(name, None)
        elif kind == "c":
            conv = self.conversations[name] = Conversation.from_dict(value)
            heapq.heappush(self.deadlines, (conv.deadline, name, conv.created))
        elif value is None:
            self.entities.pop(name, None)
        else:
            self.entities[name] = Entity(from_row(value["seen"]), value["max_concurrency"])

"""The webhook receiver's limits as plain logic, each step given the time (``now``): per-client
token buckets, the memory of deliveries already taken (replay protection), and which address a
request comes from. No I/O; ``receiver.py`` applies them to HTTP requests."""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenBuckets:
    """One token bucket per client: ``burst`` tokens at most, refilled at ``rate`` per second;
    a request takes one. Memory is bounded: a bucket that has refilled to ``burst`` is the same
    as none and is dropped, and at most ``capacity`` buckets are kept (past it, the least
    recently used one is dropped, which gives that client a full bucket again)."""

    def __init__(self, rate: float, burst: int, capacity: int) -> None:
        if rate <= 0 or burst < 1 or capacity < 1:
            raise ValueError("rate > 0, burst >= 1 and capacity >= 1 required")
        self.rate, self.burst, self.capacity = rate, float(burst), capacity
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self.evicted = 0   # buckets dropped before they were full (the capacity)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float) -> float:
        """0.0 if ``client`` may go on (a token taken), else the seconds until it may."""
        tokens = self._tokens(self._buckets.pop(client, None), now)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)   # the most recently used, last
        self._trim(now)
        return wait

    def _tokens(self, bucket: tuple[float, float] | None, now: float) -> float:
        if bucket is None:
            return self.burst
        tokens, at = bucket
        return min(self.burst, tokens + max(0.0, now - at) * self.rate)

    def _trim(self, now: float) -> None:
        buckets = self._buckets
        while buckets:   # from the least recently used: full ones carry no information
            oldest = next(iter(buckets.values()))
            if self._tokens(oldest, now) < self.burst:
                break
            buckets.popitem(last=False)
        while len(buckets) > self.capacity:
            buckets.popitem(last=False)
            self.evicted += 1


Claim = Literal["new", "seen", "pending"]


class ReplayMemory:
    """Deliveries taken within the freshness window. A delivery is known by several keys (its
    delivery id, its signature); one key seen is enough. ``claim`` marks new keys pending while
    the request is handled; ``commit`` remembers them until ``until`` (the instant the
    signature stops being fresh: a request after it is rejected as stale anyway), ``release``
    forgets them (the request failed: the sender's retry must go through). At most
    ``capacity`` keys are remembered; past it the ones expiring first go early (counted)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity >= 1 required")
        self.capacity = capacity
        self._until: dict[bytes, float] = {}
        self._expiry: list[tuple[float, bytes]] = []   # heap of (until, key)
        self._pending: set[bytes] = set()
        self.evicted = 0   # remembered keys dropped before they expired (the capacity)

    def __len__(self) -> int:
        return len(self._until)

    @staticmethod
    def keys(*names: str) -> tuple[bytes, ...]:
        """Fixed-size keys (16-byte hashes) of the non-empty ``names``. Callers namespace
        them (``chatwoot:delivery:<id>``, ``chatwoot:signature:<sig>``), so a delivery id
        never matches a signature or another platform's id."""
        return tuple(hashlib.blake2b(n.encode(), digest_size=16).digest() for n in names if n)

    def claim(self, keys: Sequence[bytes], now: float) -> Claim:
        self.expire(now)
        if any(k in self._pending for k in keys):
            return "pending"
        if any(k in self._until for k in keys):
            return "seen"
        self._pending.update(keys)
        return "new"

    def commit(self, keys: Iterable[bytes], until: float, now: float) -> None:
        for key in keys:
            self._pending.discard(key)
            self._until[key] = until
            heapq.heappush(self._expiry, (until, key))
        self.expire(now)
        while len(self._until) > self.capacity:
            self._pop()
            self.evicted += 1

    def release(self, keys: Iterable[bytes]) -> None:
        self._pending.difference_update(keys)

    def expire(self, now: float) -> None:
        """Forget the keys whose freshness has passed."""
        while self._expiry and self._expiry[0][0] <= now:
            self._pop()

    def _pop(self) -> None:
        until, key = heapq.heappop(self._expiry)
        if self._until.get(key) == until:   # not re-remembered later with another expiry
            del self._until[key]


@dataclass(frozen=True)
class Proxies:
    """The reverse proxies whose ``X-Forwarded-For`` is believed."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Proxies:
        return cls(tuple(ipaddress.ip_network(e, strict=False) for e in entries))

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in n for n in self.networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client a request is limited as: the peer address, unless the peer is a trusted
        proxy; then the right-most ``X-Forwarded-For`` hop that is not one (the hops left of
        it were written by the client and prove nothing)."""
        peer = peer or "unknown"
        if not self.networks or not forwarded_for or not self.trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return hop[:64]
        return hops[0][:64] if hops else peer

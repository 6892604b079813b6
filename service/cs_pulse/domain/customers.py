"""Customer stage: joins that cross conversations, keyed by customer (FCR, conversion).

A customer's conversations live in different events partitions, so their records reach this
stage in no particular order. Every rule here is therefore *symmetric*: a resolution is broken
by a reopen or a new contact whichever arrives first, and an order credits a served
conversation whichever arrives first. Each answer is emitted once, when both sides are known,
at the time of the item it belongs to (the resolution, the served reply, the order), so the
result does not depend on arrival order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .catalogue import CONVERSION_HORIZON_MS, CUSTOMER_KEPT_MS, FCR_HORIZON_MS
from .model import CustomerRecord, Fact
from .origins import Origin, Origins


@dataclass
class Customer:
    contacts: list[list[Any]] = field(default_factory=list)      # [conversation, ts]
    resolutions: list[list[Any]] = field(default_factory=list)   # [conv, ts, ordinal, broken,
    #                                                                series]
    reopens: list[list[Any]] = field(default_factory=list)       # [conversation, ts]
    served: list[list[Any]] = field(default_factory=list)        # [conv, ts, converted, series]
    orders: list[list[Any]] = field(default_factory=list)        # [ref, ts, amount, named conv,
    #                                                                attributed, series]
    credited: list[list[str]] = field(default_factory=list)      # [conversation, order ref]


def _within(start: int, ts: int, horizon: int) -> bool:
    return start <= ts <= start + horizon


class CustomerStage:
    """``sources``: how many events partitions feed this stage (their records are joined)."""

    def __init__(self, sources: int = 1) -> None:
        self.sources = [f"e{p}" for p in range(sources)]
        self.customers: dict[str, Customer] = {}
        # Per source, a lower bound of the times of the records it will still send: each
        # events partition sends in effective-time order, and says how far it has come.
        self.progress: dict[str, int] = {}
        self.origins = Origins()
        self.duplicates = 0
        self._dirty: set[str] = set()

    def apply(self, record: CustomerRecord, origin: Origin | None = None) -> list[Fact]:
        if origin is not None:
            if not self.origins.fresh(origin):
                self.duplicates += 1
                return []
            source = origin[0]
            self.progress[source] = max(self.progress.get(source, record.ts), record.ts)
        self._dirty.add("m")
        if record.kind == "progress":
            return []
        cust = self.customers.get(record.key)
        if cust is None:
            cust = self.customers[record.key] = Customer()
        self._dirty.add(f"k|{record.key}")
        out: list[Fact] = []
        handler = getattr(self, f"_on_{record.kind}")
        handler(cust, record, out)
        return out

    # --- FCR: a resolution is broken by a reopen or a new contact within 24 h ----------------

    def _on_contact(self, cust: Customer, r: CustomerRecord, out: list[Fact]) -> None:
        cust.contacts.append([r.conversation, r.ts])
        for res in cust.resolutions:
            if res[0] != r.conversation and _within(res[1], r.ts, FCR_HORIZON_MS):
                self._break(res, out)

    def _on_reopen(self, cust: Customer, r: CustomerRecord, out: list[Fact]) -> None:
        cust.reopens.append([r.conversation, r.ts])
        for res in cust.resolutions:
            if res[0] == r.conversation and _within(res[1], r.ts, FCR_HORIZON_MS):
                self._break(res, out)

    def _on_resolution(self, cust: Customer, r: CustomerRecord, out: list[Fact]) -> None:
        res: list[Any] = [r.conversation, r.ts, int(r.value), 0, r.series]
        cust.resolutions.append(res)
        if (r.value > 1
                or any(conv == r.conversation and _within(r.ts, ts, FCR_HORIZON_MS)
                       for conv, ts in cust.reopens)
                or any(conv != r.conversation and _within(r.ts, ts, FCR_HORIZON_MS)
                       for conv, ts in cust.contacts)):
            self._break(res, out)

    @staticmethod
    def _break(res: list[Any], out: list[Fact]) -> None:
        if not res[3]:
            res[3] = 1
            out.extend(Fact("resolved_repeat", res[1], s) for s in res[4])

    # --- conversion: an order within 24 h of a served reply credits that conversation ---------

    def _on_served(self, cust: Customer, r: CustomerRecord, out: list[Fact]) -> None:
        served = [r.conversation, r.ts, 0, r.series]
        cust.served.append(served)
        for order in cust.orders:
            if order[3] in ("", r.conversation) and _within(r.ts, order[1], CONVERSION_HORIZON_MS):
                self._credit(cust, served, order, out)

    def _on_order(self, cust: Customer, r: CustomerRecord, out: list[Fact]) -> None:
        order = [r.ref, r.ts, r.value, r.conversation, 0, r.series]
        cust.orders.append(order)
        for served in cust.served:
            if r.conversation in ("", served[0]) and _within(served[1], r.ts,
                                                            CONVERSION_HORIZON_MS):
                self._credit(cust, served, order, out)

    @staticmethod
    def _credit(cust: Customer, served: list[Any], order: list[Any], out: list[Fact]) -> None:
        pair = [served[0], order[0]]
        if pair in cust.credited:
            return
        cust.credited.append(pair)
        out.extend(Fact("gmv", served[1], s, order[2]) for s in served[3])
        if not served[2]:
            served[2] = 1
            out.extend(Fact("converted", served[1], s) for s in served[3])
        if not order[4]:
            order[4] = 1
            out.extend(Fact("orders_attributed", order[1], s) for s in order[5])

    # --- expiry and persistence ---------------------------------------------------------------

    def expire(self) -> int:
        """Forget records no later record can join: every source has moved more than the 24 h
        horizon past them (when it happens does not change any answer). Returns how many
        customers were dropped."""
        if any(s not in self.progress for s in self.sources):
            return 0
        cutoff = min(self.progress[s] for s in self.sources) - CUSTOMER_KEPT_MS
        gone = 0
        for key, cust in list(self.customers.items()):
            before = (len(cust.contacts), len(cust.resolutions), len(cust.reopens),
                      len(cust.served), len(cust.orders))
            cust.contacts = [x for x in cust.contacts if x[1] >= cutoff]
            cust.resolutions = [x for x in cust.resolutions if x[1] >= cutoff]
            cust.reopens = [x for x in cust.reopens if x[1] >= cutoff]
            cust.served = [x for x in cust.served if x[1] >= cutoff]
            cust.orders = [x for x in cust.orders if x[1] >= cutoff]
            served = {x[0] for x in cust.served}
            orders = {x[0] for x in cust.orders}
            cust.credited = [p for p in cust.credited if p[0] in served and p[1] in orders]
            after = (len(cust.contacts), len(cust.resolutions), len(cust.reopens),
                     len(cust.served), len(cust.orders))
            if not any(after):
                del self.customers[key]
                gone += 1
            if after != before:
                self._dirty.add(f"k|{key}")
        return gone

    def take_changes(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for key in self._dirty:
            if key == "m":
                out.append(("m", {"progress": self.progress,
                                  "high_water": self.origins.high_water}))
            else:
                cust = self.customers.get(key[2:])
                out.append((key, None if cust is None else asdict(cust)))
        self._dirty.clear()
        return out

    def load(self, key: str, value: Any) -> None:
        if key == "m":
            if value is not None:
                self.progress = value["progress"]
                self.origins.high_water = value["high_water"]
        elif value is None:
            self.customers.pop(key[2:], None)
        else:
            self.customers[key[2:]] = Customer(**value)

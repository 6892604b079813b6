"""Customer stage: joins that cross conversations, keyed by customer (FCR, conversion,
customers received, after-sales).

A customer's conversations live in different events partitions, so their records reach this
stage in no particular order. Every rule here is therefore *symmetric*: a resolution is broken
by a reopen or a new contact whichever arrives first, and an order credits a served
conversation whichever arrives first. Each answer is emitted once, when both sides are known,
at the time of the item it belongs to (the resolution, the served reply, the order), so the
result does not depend on arrival order. Customer counts (接待数) are once per series and local
day, stamped at the day's midnight: whichever of a day's conversations arrives first, the count
and its time are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .calendar import Calendars
from .facts import (
    AFTERSALE_HORIZON_MS,
    CONVERSION_HORIZON_MS,
    CUSTOMER_KEPT_MS,
    FCR_HORIZON_MS,
)
from .model import AGENT, CustomerRecord, Fact, series_shop, team_series
from .origins import Origin, Origins
from .sweep import RoundRobin


@dataclass
class Customer:
    contacts: list[list[Any]] = field(default_factory=list)      # [conversation, ts]
    resolutions: list[list[Any]] = field(default_factory=list)   # [conv, ts, ordinal, broken,
    #                                                                series]
    reopens: list[list[Any]] = field(default_factory=list)       # [conversation, ts]
    served: list[list[Any]] = field(default_factory=list)        # [conv, ts, converted, series,
    #                                                                created]
    orders: list[list[Any]] = field(default_factory=list)        # [ref, ts, amount, named conv,
    #                                                                attributed, series, order id]
    # (served conversation, order) pairs, kept for after-sales: [conv, order ref, order id,
    # order ts, served ts, served series, returned, exchanged]
    credits: list[list[Any]] = field(default_factory=list)
    aftersales: list[list[Any]] = field(default_factory=list)    # [kind, ts, order id]
    # Customers received: [series (A or T), local day, midnight ms, conversations, converted,
    # refunded, last served ts]; and by hour: [series, day, hour, served ts].
    receptions: list[list[Any]] = field(default_factory=list)
    hours: list[list[Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Shallow (serialized at once): ``dataclasses.asdict`` deep-copies every list, which
        cost a twentieth of a busy worker."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _within(start: int, ts: int, horizon: int) -> bool:
    return start <= ts <= start + horizon


AFTER_SALES = frozenset({"refund", "return", "exchange"})   # one handler for all three

class CustomerStage:
    """``sources``: how many events partitions feed this stage (their records are joined);
    ``calendars``: the shops' time zones (customer counts are per local day)."""

    def __init__(self, sources: int = 1, calendars: Calendars | None = None) -> None:
        self.sources = [f"e{p}" for p in range(sources)]
        self.calendars = calendars or Calendars()
        self.customers: dict[str, Customer] = {}
        # Per source, a lower bound of the times of the records it will still send: each
        # events partition sends in effective-time order, and says how far it has come.
        self.progress: dict[str, int] = {}
        self.origins = Origins()
        self.duplicates = 0
        self._dirty: set[str] = set()
        self._sweep = RoundRobin()

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
        kind = "after_sale" if record.kind in AFTER_SALES else record.kind
        handler = getattr(self, f"_on_{kind}")
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
        served = [r.conversation, r.ts, 0, r.series, int(r.value)]
        cust.served.append(served)
        self._receive(cust, served, out)
        for order in cust.orders:
            if order[3] in ("", r.conversation) and _within(r.ts, order[1], CONVERSION_HORIZON_MS):
                self._credit(cust, served, order, out)

    def _on_order(self, cust: Customer, r: CustomerRecord, out: list[Fact]) -> None:
        order = [r.ref, r.ts, r.value, r.conversation, 0, r.series, r.order]
        cust.orders.append(order)
        for served in cust.served:
            if r.conversation in ("", served[0]) and _within(served[1], r.ts,
                                                            CONVERSION_HORIZON_MS):
                self._credit(cust, served, order, out)

    def _credit(self, cust: Customer, served: list[Any], order: list[Any],
                out: list[Fact]) -> None:
        if any(c[0] == served[0] and c[1] == order[0] for c in cust.credits):
            return
        credit = [served[0], order[0], order[6], order[1], served[1], served[3], 0, 0]
        cust.credits.append(credit)
        out.extend(Fact("gmv", served[1], s, order[2]) for s in served[3])
        out.extend(Fact("orders_credited", served[1], s) for s in served[3])
        if not served[2]:
            served[2] = 1
            out.extend(Fact("converted", served[1], s) for s in served[3])
            for rec in cust.receptions:
                if served[0] in rec[3] and not rec[4]:
                    rec[4] = 1
                    out.append(Fact("customers_converted", rec[2], rec[0]))
        if not order[4]:
            order[4] = 1
            out.extend(Fact("orders_attributed", order[1], s) for s in order[5])
        for kind, ts, order_id in cust.aftersales:
            if order_id == credit[2] and _within(credit[3], ts, AFTERSALE_HORIZON_MS):
                self._after_sale(cust, credit, kind, out)

    # --- customers received (接待数): once per series (agent, team) and local day --------------

    def _receive(self, cust: Customer, served: list[Any], out: list[Fact]) -> None:
        conv, ts, _, series, created = served
        cal = self.calendars.for_shop(series_shop(series[0]))
        day = cal.local_date(ts / 1000.0)
        midnight = round(cal.midnight(ts / 1000.0) * 1000)
        hour = cal.local_hour(created / 1000.0)
        agents = [s for s in series if s[0] == AGENT]
        for s in [*agents, *map(team_series, agents)]:
            rec = next((x for x in cust.receptions if x[0] == s and x[1] == day), None)
            if rec is None:
                cust.receptions.append([s, day, midnight, [conv], 0, 0, ts])
                out.append(Fact("customers_received", midnight, s))
            else:
                rec[3].append(conv)
                rec[6] = max(rec[6], ts)
            if not any(h[0] == s and h[1] == day and h[2] == hour for h in cust.hours):
                cust.hours.append([s, day, hour, ts])
                out.append(Fact(f"customers_hour_{hour:02d}", midnight, s))

    # --- after-sales: a refund or return matches an order paid up to 30 days before ----------

    def _on_after_sale(self, cust: Customer, r: CustomerRecord, out: list[Fact]) -> None:
        cust.aftersales.append([r.kind, r.ts, r.order])
        for credit in cust.credits:
            if credit[2] == r.order and _within(credit[3], r.ts, AFTERSALE_HORIZON_MS):
                self._after_sale(cust, credit, r.kind, out)

    @staticmethod
    def _after_sale(cust: Customer, credit: list[Any], kind: str, out: list[Fact]) -> None:
        if kind == "refund":   # the customer received through that conversation is refunded
            for rec in cust.receptions:
                if credit[0] in rec[3] and rec[4] and not rec[5]:
                    rec[5] = 1
                    out.append(Fact("customers_refunded", rec[2], rec[0]))
            return
        flag = 6 if kind == "return" else 7
        if not credit[flag]:
            credit[flag] = 1
            what = "orders_returned" if kind == "return" else "orders_exchanged"
            out.extend(Fact(what, credit[4], s) for s in credit[5])

    # --- expiry and persistence ---------------------------------------------------------------

    def expire(self, budget: int = 0) -> int:
        """Forget records no later record can join: every source has moved more than the 24 h
        horizon past them — and, for what after-sales can still match, past the 30 days (when
        it happens does not change any answer). ``budget``: look at that many customers at
        most, in turn (``sweep.py``); 0: all. Returns how many customers were dropped."""
        if any(s not in self.progress for s in self.sources):
            return 0
        cutoff = min(self.progress[s] for s in self.sources) - CUSTOMER_KEPT_MS
        # a refund matches an order paid up to 30 d before it, paid up to 24 h after the answer
        long_cutoff = cutoff - AFTERSALE_HORIZON_MS - CONVERSION_HORIZON_MS
        gone = 0
        for key in self._sweep.take(self.customers.keys, budget):
            cust = self.customers.get(key)
            if cust is None:
                continue
            before = _sizes(cust)
            cust.contacts = [x for x in cust.contacts if x[1] >= cutoff]
            cust.resolutions = [x for x in cust.resolutions if x[1] >= cutoff]
            cust.reopens = [x for x in cust.reopens if x[1] >= cutoff]
            cust.served = [x for x in cust.served if x[1] >= cutoff]
            cust.orders = [x for x in cust.orders if x[1] >= cutoff]
            cust.aftersales = [x for x in cust.aftersales if x[1] >= cutoff]
            cust.hours = [x for x in cust.hours if x[3] >= cutoff]
            cust.credits = [x for x in cust.credits if x[4] >= long_cutoff]
            cust.receptions = [x for x in cust.receptions
                               if x[6] >= (long_cutoff if x[4] else cutoff)]
            after = _sizes(cust)
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
                out.append((key, None if cust is None else cust.to_dict()))
        self._dirty.clear()
        return out

    def rewrite(self, key: str) -> None:
        """Write ``key`` again with the next changes (its value now, or its deletion): a row of
        it in the changelog was fenced off, and compaction keeps only the newest row of a key."""
        self._dirty.add(key)

    def load(self, key: str, value: Any) -> None:
        if key == "m":
            if value is not None:
                self.progress = value["progress"]
                self.origins.high_water = value["high_water"]
        elif value is None:
            self.customers.pop(key[2:], None)
        else:
            self.customers[key[2:]] = Customer(**value)


def _sizes(cust: Customer) -> tuple[int, ...]:
    return (len(cust.contacts), len(cust.resolutions), len(cust.reopens), len(cust.served),
            len(cust.orders), len(cust.credits), len(cust.aftersales), len(cust.receptions),
            len(cust.hours))

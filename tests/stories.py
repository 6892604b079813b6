"""Generated event stories for the differential tests: realistic conversations (bots and
hand-offs with and without ``queued``, transfers, runs, closes racing replies, reopens, ratings
on every scale, orders by conversation or by customer only, refunds), agents whose presence
crosses midnight and DST, duplicates, disorder within the grace period, late events beyond it,
invalid records, and idle gaps long enough to expire conversations.

A story is the raw log as Kafka would hold it: records per partition (the producer's keys and
murmur2 partitioner) in arrival order, plus *probes*: points in the log where every partition is
released and the numbers are read at an instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiokafka.partitioner import DefaultPartitioner

from cs_pulse.sources.produce import event_key

Record = tuple[int, int, bytes | None, bytes | None]
# Opening hours (email and social tiers count only them) around the story starts, a closed
# day, and Sunday-night hours on both sides of New York's DST changes.
SHOPS = {"default": {"tz": "Asia/Shanghai", "opening": [["mon-fri", "09:00", "18:00"]],
                     "closed": ["11-15"]},
         "shops": {"ny": {"tz": "America/New_York", "peaks": [["09:00", "12:00"]],
                          "opening": [["sun", "00:15", "00:55"], ["sun", "03:00", "04:00"],
                                      ["mon-sat", "08:00", "24:00"]]}}}
# Story starts: an ordinary morning, just before Shanghai's midnight, and the nights New York
# springs forward and falls back.
STARTS = [
    datetime(2023, 11, 14, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp(),
    datetime(2023, 11, 14, 23, 50, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp(),
    datetime(2024, 3, 10, 1, 40, tzinfo=ZoneInfo("America/New_York")).timestamp(),
    datetime(2024, 11, 3, 0, 50, tzinfo=ZoneInfo("America/New_York")).timestamp(),
]
CHANNELS = ["chat", "chat", "chat", "email", "social", "phone"]


@dataclass
class Probe:
    after: int          # records of the log fed before the reading
    now: float          # reading instant, seconds


@dataclass
class Story:
    records: list[Record] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    grace: float = 5.0
    partitions: int = 3

    def releases(self, upto: int) -> list[tuple[int, int, int]]:
        """Release points of every probe before record ``upto``: each partition's last offset,
        with the probe's reading instant as the release's clock (ms)."""
        out: list[tuple[int, int, int]] = []
        for probe in self.probes:
            if probe.after > upto:
                break
            last: dict[int, int] = {}
            for p, o, _, _ in self.records[:probe.after]:
                last[p] = o
            out += [(p, o, round(probe.now * 1000)) for p, o in sorted(last.items())]
        return out


class _Gen:
    def __init__(self, rng: random.Random, start: float) -> None:
        self.rng = rng
        self.start = start
        self.events: list[tuple[float, dict[str, Any]]] = []   # (event time s, event)
        self.n = 0

    def emit(self, type_: str, t: float, shop: str, **fields: Any) -> dict[str, Any]:
        self.n += 1
        e = {"schema_version": 1, "event_id": f"g{self.n}", "type": type_,
             "ts": round(t * 1000), "shop_id": shop}
        e.update({k: v for k, v in fields.items() if v is not None})
        self.events.append((t, e))
        return e

    def gap(self) -> float:
        r = self.rng.random()
        if r < 0.02:
            return self.rng.choice([3600.0, 26 * 3600.0, 8 * 86400.0])   # horizons and expiry
        if r < 0.05:
            return self.rng.uniform(600, 7200)
        return self.rng.expovariate(1 / 15)

    def agents(self, shop: str, names: list[str], end: float) -> None:
        for agent in names:
            team = self.rng.choice(["t1", "t2"])
            t = self.start - self.rng.uniform(0, 3 * 3600)        # may start before midnight
            status = "offline"
            while t < end:
                status = self.rng.choice(["online", "online", "busy", "away", "offline"])
                conc = self.rng.choice([None, 0, 1, 2, 3, 5])
                self.emit("agent.status", t, shop, agent_id=agent, team=team, status=status,
                          max_concurrency=conc)
                for _ in range(self.rng.randrange(3)):
                    t += self.rng.uniform(30, 300)
                    self.emit("agent.heartbeat", t, shop, agent_id=agent, team=team)
                t += self.rng.expovariate(1 / 1200)

    def conversation(self, cid: str, shop: str, customers: list[str], agents: list[str],
                     t: float) -> float:
        rng = self.rng
        channel = rng.choice(CHANNELS)
        queue = rng.choice(["presale", "aftersale", "vip"])
        customer = rng.choice(customers) if rng.random() < 0.85 else None
        labels = {"conversation_id": cid, "channel": channel, "queue": queue}
        later = rng.random() < 0.1   # the queue becomes known only later
        first = {"conversation_id": cid} if later else labels
        agent: str | None = None

        def conv(type_: str, **fields: Any) -> None:
            self.emit(type_, t, shop, **{**labels, **fields})

        if rng.random() < 0.85:
            self.emit("conversation.started", t, shop, **{**first, "channel": channel},
                      customer_id=customer)
        segments = 1 + (rng.random() < 0.15)
        for segment in range(segments):
            if segment:
                t += self.gap()
                conv("conversation.reopened")
            bot = rng.random() < 0.3
            for _ in range(rng.randrange(1, 9)):
                t += self.gap()
                r = rng.random()
                if r < 0.3 and channel != "phone":
                    conv("message.sent", sender="customer", chars=rng.randrange(1, 80),
                         customer_id=customer if rng.random() < 0.5 else None)
                elif r < 0.4 and bot:
                    conv("message.sent", sender="bot", chars=rng.randrange(0, 50))
                elif r < 0.5:
                    conv("conversation.queued", queue=rng.choice([queue, "vip"]))
                elif r < 0.6:
                    agent = rng.choice(agents)
                    conv("conversation.assigned", agent_id=agent)
                elif r < 0.8:
                    sender = agent or rng.choice(agents)
                    slip = rng.random()   # forbidden phrases; text that only the edge reads
                    conv("message.sent", sender="agent", agent_id=sender,
                         chars=rng.randrange(1, 200),
                         violations=rng.randrange(1, 4) if slip < 0.15 else None,
                         text="不知道" if 0.15 <= slip < 0.25 else None)
                elif r < 0.86:
                    kind = rng.random()
                    if kind < 0.5:
                        agent = rng.choice(agents)
                        conv("conversation.transferred", to_agent_id=agent)
                    elif kind < 0.8:
                        agent = None
                        conv("conversation.transferred", to_queue=rng.choice(["vip", queue]))
                    else:
                        agent = None
                        conv("conversation.transferred", to_team="t2")
                elif r < 0.9:
                    conv("conversation.escalated", level=rng.randrange(1, 4))
                else:
                    conv("message.sent", sender="customer", chars=3)
            if rng.random() < 0.85:
                t += self.gap()
                if rng.random() < 0.2:
                    conv("conversation.abandoned")
                else:
                    conv("conversation.closed", resolved=rng.random() < 0.6,
                         closed_by=rng.choice(["customer", "agent", "agent", "bot", "timeout",
                                               "system"]))
        if rng.random() < 0.3:
            t += self.gap()
            scale = rng.choice([(1, 3), (1, 5), (1, 10), (0, 10)])
            score = rng.randint(*scale) if rng.random() < 0.8 else scale[0] + 0.5
            self.emit("satisfaction.rated", t, shop, **labels, score=score, scale=scale[1],
                      scale_min=scale[0] if scale[0] == 0 or rng.random() < 0.3 else None,
                      attitude=rng.choice([None, "positive", "neutral", "negative"]))
        if customer is not None and rng.random() < 0.35:
            paid = t + rng.choice([rng.uniform(1, 3600), rng.uniform(20 * 3600, 30 * 3600)])
            named = {"conversation_id": cid} if rng.random() < 0.5 else {}
            oid = f"o{self.n}"
            self.emit("order.paid", paid, shop, customer_id=customer, order_id=oid,
                      amount=round(rng.uniform(1, 500), 2), currency="CNY", **named)
            for _ in range(rng.choice([0, 0, 1, 2])):   # after-sales: refunds, returns
                when = paid + rng.choice([600.0, rng.uniform(3600, 3 * 86400),
                                          30 * 86400.0, 30 * 86400.0 + 0.001])
                order = oid if rng.random() < 0.9 else f"o{rng.randrange(self.n)}"
                who = customer if rng.random() < 0.9 else "u-other"
                kind = rng.choice(["refund", "refund", "return", "exchange"])
                reason = rng.choice([None, "quality", "changed_mind", "broken screen"])
                if kind == "refund":
                    self.emit("order.refunded", when, shop, customer_id=who, order_id=order,
                              amount=10.0, reason=reason, **named)
                else:
                    self.emit("order.returned", when, shop, customer_id=who, order_id=order,
                              kind=kind, reason=reason, **named)
        return t


def generate(seed: int, conversations: int = 6, partitions: int = 3, grace: float = 5.0,
             disorder: bool = True, probes: int = 3) -> Story:
    rng = random.Random(seed)
    gen = _Gen(rng, rng.choice(STARTS))
    shops = ["s1", "ny"] if rng.random() < 0.5 else ["s1"]
    customers = [f"u{i}" for i in range(max(2, conversations // 2))]
    agents = {shop: [f"{shop}-a{i}" for i in range(rng.randrange(1, 4))] for shop in shops}
    t = gen.start
    end = t
    for i in range(conversations):
        shop = rng.choice(shops)
        t0 = gen.start + rng.uniform(0, 900) + (rng.random() < 0.1) * rng.uniform(0, 86400)
        end = max(end, gen.conversation(f"c{i}", shop, customers, agents[shop], t0))
    for shop in shops:   # presence around the start (midnight, DST), not for days on end
        gen.agents(shop, agents[shop], min(end, gen.start + 4 * 3600))
    if rng.random() < 0.2:   # something much later: expires whatever is left open
        gen.emit("conversation.started", end + 8 * 86400, shops[0], conversation_id="late",
                 channel="chat")
    return _arrive(gen, rng, partitions, grace, disorder, probes)


def _arrive(gen: _Gen, rng: random.Random, partitions: int, grace: float, disorder: bool,
            probes: int) -> Story:
    """Arrival order: produced at their event time plus a delay within the grace period,
    a few delayed past it (late), a few sent twice; some invalid records."""
    arrivals: list[tuple[float, int, bytes]] = []
    for i, (t, e) in enumerate(sorted(gen.events, key=lambda x: x[0])):
        delay = rng.uniform(0, grace * 0.9) if disorder else 0.0
        if disorder and rng.random() < 0.04:
            delay = grace + rng.uniform(1, 120)                           # late
        raw = orjson.dumps(e)
        arrivals.append((t + delay, i, raw))
        if rng.random() < 0.03:
            arrivals.append((t + delay + rng.uniform(0, 600), i, raw))     # duplicate
        if rng.random() < 0.02:
            broken = rng.choice([b"{not json", orjson.dumps({**e, "type": "nope"}),
                                 orjson.dumps({k: v for k, v in e.items() if k != "shop_id"})])
            arrivals.append((t + delay, i, broken))
    arrivals.sort(key=lambda a: (a[0], a[1]))
    partitioner = DefaultPartitioner()
    all_p = list(range(partitions))
    offsets = [0] * partitions
    story = Story(grace=grace, partitions=partitions)
    for _, _, raw in arrivals:
        try:
            key = event_key(orjson.loads(raw))
        except orjson.JSONDecodeError:
            key = b"broken"
        p = partitioner(key, all_p, all_p)
        story.records.append((p, offsets[p], key, raw))
        offsets[p] += 1
    n = len(story.records)
    cuts = sorted({rng.randrange(1, n + 1) for _ in range(probes - 1)} | {n}) if n else []
    for cut in cuts:
        last = max(_ts(r) for r in story.records[:cut])
        story.probes.append(Probe(cut, last + rng.choice([0.0, 3.0, 45.0, 600.0, 4000.0])))
    return story


def _ts(record: Record) -> float:
    try:
        ts = orjson.loads(record[3] or b"{}").get("ts", 0)
    except orjson.JSONDecodeError:
        return 0.0
    return ts / 1000.0 if isinstance(ts, int) else 0.0

"""Traffic simulator: a seedable, deterministic discrete-event model of a shop's chat floor.

Arrivals follow a daily curve with the SPEC's peaks (10-12, 14-17, 20-23 local) and sale days;
agents work staggered shifts with a max concurrency; customers have exponential patience and
abandon if no human answers in time; conversations run several customer-message runs, some go
through a bot first, some are transferred or escalated, rated, reopened, or followed by an order
(some refunded, returned or exchanged). An optional staffing schedule (``SimConfig.staffing``)
logs agents off and back on at set times, for scripted scenarios (``devtools/scenario.py``).

``generate`` yields events in event-time order (pure, testable); ``run_simulation`` paces them
to Kafka at a chosen time compression and a hard events-per-second cap, and stops by itself.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from cs_pulse.domain.calendar import ShopCalendar
from cs_pulse.domain.facts import REFUND_REASONS

if TYPE_CHECKING:
    from cs_pulse.settings import Settings

# Relative arrival intensity by local hour: quiet night, the three peaks of the SPEC.
HOURLY_CURVE = (
    0.15, 0.1, 0.06, 0.05, 0.05, 0.08, 0.15, 0.3, 0.55, 0.8, 1.3, 1.35,
    0.9, 0.85, 1.2, 1.25, 1.2, 0.9, 0.8, 0.9, 1.4, 1.5, 1.3, 0.5,
)
SALE_DAY_FACTOR = 3.0


@dataclass
class SimConfig:
    seed: int = 7
    start: float = 0.0               # simulated epoch seconds
    duration: float = 3600.0         # simulated seconds
    shops: int = 2
    agents_per_shop: int = 24
    peak_arrivals_per_minute: float = 3.0   # per shop, at curve 1.0
    patience_mean: float = 180.0
    bot_share: float = 0.3
    tz: str = "Asia/Shanghai"
    staffing: tuple[StaffingStep, ...] = ()   # empty: every agent works its shift


@dataclass(frozen=True)
class StaffingStep:
    """From ``at`` simulated seconds after the start, ``shop`` has ``online`` agents logged on:
    those whose shift is on first, then agents called in from off shift, each in roster order
    (an agent who logs off finishes the chats it holds but takes no new ones). ``None``: the
    agents on shift, as planned."""

    at: float
    shop: str
    online: int | None


@dataclass
class _Agent:
    shop: str
    agent_id: str
    team: str
    max_concurrency: int
    shift_start: float
    shift_end: float
    online: bool = False
    on_shift: bool = False
    logons: int = 0                  # heartbeats belong to one log-on
    sessions: set[str] = field(default_factory=set)


@dataclass
class _Conv:
    cid: str
    shop: str
    customer: str
    queue: str
    channel: str
    patience: float
    runs_left: int
    agent: _Agent | None = None
    answered: bool = False
    closed: bool = False
    enqueued_at: float = 0.0


class Simulator:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.heap: list[tuple[float, int, Callable[[float], None]]] = []
        self.seq = itertools.count()
        self.out: list[dict[str, Any]] = []
        self.ids = itertools.count(1)
        self.cal = ShopCalendar(tz=cfg.tz)
        self.shops = [f"shop-{i + 1}" for i in range(cfg.shops)]
        self.queues: dict[str, deque[_Conv]] = {s: deque() for s in self.shops}
        self.agents: dict[str, list[_Agent]] = {s: [] for s in self.shops}
        self.conv_n = itertools.count(1)
        self.online_wanted: dict[str, int | None] = dict.fromkeys(self.shops)
        self._setup_agents()
        for shop in self.shops:
            self.at(cfg.start, partial(self._arrival, shop=shop))
        for step in cfg.staffing:
            self.at(cfg.start + step.at, partial(self._staffing, step=step))

    # --- scheduling ------------------------------------------------------------------------

    def at(self, ts: float, fn: Callable[[float], None]) -> None:
        heapq.heappush(self.heap, (ts, next(self.seq), fn))

    def emit(self, type_: str, ts: float, shop: str, **fields: Any) -> None:
        e: dict[str, Any] = {"schema_version": 1,
                             "event_id": f"sim-{self.cfg.seed}-{next(self.ids)}",
                             "type": type_, "ts": int(ts * 1000), "shop_id": shop}
        e.update({k: v for k, v in fields.items() if v is not None})
        self.out.append(e)

    def steps(self) -> Iterator[list[dict[str, Any]]]:
        """Run scheduled actions in time order; yields what each step emitted (may run ahead)."""
        end = self.cfg.start + self.cfg.duration
        while self.heap and self.heap[0][0] <= end:
            ts, _, fn = heapq.heappop(self.heap)
            fn(ts)
            if self.out:
                batch, self.out = self.out, []
                yield batch

    # --- agents ------------------------------------------------------------------------------

    def _setup_agents(self) -> None:
        day0 = self.cfg.start - (self.cfg.start % 86400)
        for shop in self.shops:
            for i in range(self.cfg.agents_per_shop):
                # Three overlapping shifts of 9 h; a shift that began earlier today is already on.
                start = day0 + [0.0, 8.0, 15.0][i % 3] * 3600 + self.rng.uniform(0, 1800)
                agent = _Agent(shop, f"{shop}-agent-{i + 1}", f"team-{i % 2 + 1}",
                               self.rng.choice([3, 4, 5]), start, start + 9 * 3600)
                self.agents[shop].append(agent)
                on = max(self.cfg.start, agent.shift_start)
                if agent.shift_end > self.cfg.start:
                    self.at(on, partial(self._online, a=agent))
                    self.at(agent.shift_end, partial(self._offline, a=agent))
                else:
                    nxt = agent.shift_start + 86400
                    self.at(nxt, partial(self._online, a=agent))

    def _status(self, t: float, a: _Agent, status: str) -> None:
        self.emit("agent.status", t, a.shop, agent_id=a.agent_id, team=a.team, status=status,
                  max_concurrency=a.max_concurrency)

    def _online(self, t: float, a: _Agent) -> None:
        """The agent's shift starts."""
        a.on_shift = True
        self._staff(t, a.shop)

    def _offline(self, t: float, a: _Agent) -> None:
        """The agent's shift ends; the next one is tomorrow."""
        a.on_shift = False
        self._staff(t, a.shop)
        a.shift_start += 86400
        a.shift_end += 86400
        self.at(a.shift_start, lambda tt: self._online(tt, a))
        self.at(a.shift_end, lambda tt: self._offline(tt, a))

    def _staffing(self, t: float, step: StaffingStep) -> None:
        self.online_wanted[step.shop] = step.online
        self._staff(t, step.shop)

    def _staff(self, t: float, shop: str) -> None:
        """Log agents on or off so that those online are the agents on shift, or as many
        agents as the staffing schedule says (on shift first, in roster order)."""
        roster = self.agents[shop]
        on_shift = [a for a in roster if a.on_shift]
        n = self.online_wanted[shop]
        chosen = on_shift if n is None else (on_shift + [a for a in roster if not a.on_shift])[:n]
        wanted = {a.agent_id for a in chosen}
        for a in self.agents[shop]:
            if a.online and a.agent_id not in wanted:
                a.online = False
                self._status(t, a, "offline")
            elif not a.online and a.agent_id in wanted:
                self._log_on(t, a)

    def _log_on(self, t: float, a: _Agent) -> None:
        a.online = True
        a.logons += 1
        self._status(t, a, "online")
        self.at(t + 300, partial(self._heartbeat, a=a, logon=a.logons))
        self._dispatch(t, a.shop)

    def _heartbeat(self, t: float, a: _Agent, logon: int) -> None:
        if a.online and a.logons == logon:
            self.emit("agent.heartbeat", t, a.shop, agent_id=a.agent_id, team=a.team)
            self.at(t + 300, partial(self._heartbeat, a=a, logon=logon))

    # --- customers ---------------------------------------------------------------------------

    def _rate_per_second(self, t: float, shop: str) -> float:
        local = self.cal.local(t)
        factor = HOURLY_CURVE[local.hour] * (SALE_DAY_FACTOR if self.cal.is_peak(t) and
                                             local.strftime("%m-%d") in self.cal.sale_days
                                             else 1.0)
        return self.cfg.peak_arrivals_per_minute * factor / 60.0

    def _arrival(self, t: float, shop: str) -> None:
        rate = max(self._rate_per_second(t, shop), 1e-6)
        self.at(t + self.rng.expovariate(rate), lambda tt: self._arrival(tt, shop))
        n = next(self.conv_n)
        conv = _Conv(
            cid=f"{shop}-s{self.cfg.seed}-c{n}", shop=shop,
            customer=f"cust-{self.rng.randrange(5000)}",
            queue=self.rng.choices(["presale", "aftersale"], [0.6, 0.4])[0],
            channel=self.rng.choices(["chat", "social", "email"], [0.85, 0.1, 0.05])[0],
            patience=self.rng.expovariate(1.0 / self.cfg.patience_mean),
            runs_left=1 + min(8, int(self.rng.expovariate(1 / 2.5))),
        )
        c = self._conv_fields(conv)
        self.emit("conversation.started", t, shop, customer_id=conv.customer, **c)
        self._customer_run(t + 1, conv)
        if self.rng.random() < self.cfg.bot_share:
            self.emit("message.sent", t + 2, shop, sender="bot", chars=60, **c)
            self.at(t + 2 + self.rng.uniform(10, 40), lambda tt: self._enqueue(tt, conv))
        else:
            self._enqueue(t, conv)

    def _conv_fields(self, conv: _Conv) -> dict[str, Any]:
        return {"conversation_id": conv.cid, "queue": conv.queue, "channel": conv.channel,
                "agent_id": conv.agent.agent_id if conv.agent else None,
                "team": conv.agent.team if conv.agent else None}

    def _enqueue(self, t: float, conv: _Conv) -> None:
        conv.enqueued_at = t
        self.emit("conversation.queued", t, conv.shop, **self._conv_fields(conv))
        self.queues[conv.shop].append(conv)
        self.at(t + conv.patience, lambda tt: self._patience_over(tt, conv))
        self._dispatch(t, conv.shop)

    def _patience_over(self, t: float, conv: _Conv) -> None:
        if conv.answered or conv.closed:
            return
        conv.closed = True
        if conv in self.queues[conv.shop]:
            self.queues[conv.shop].remove(conv)
        self.emit("conversation.closed", t, conv.shop, resolved=False, closed_by="customer",
                  **self._conv_fields(conv))
        if conv.agent is not None:
            self._release(t, conv)

    def _dispatch(self, t: float, shop: str) -> None:
        queue = self.queues[shop]
        while queue:
            free = [a for a in self.agents[shop] if a.online and
                    len(a.sessions) < a.max_concurrency]
            if not free:
                return
            agent = min(free, key=lambda a: (len(a.sessions) / a.max_concurrency, a.agent_id))
            conv = queue.popleft()
            conv.agent = agent
            agent.sessions.add(conv.cid)
            self.emit("conversation.assigned", t, shop, **self._conv_fields(conv))
            load = len(agent.sessions) / agent.max_concurrency
            delay = self.rng.lognormvariate(math.log(8 + 25 * load), 0.6)
            self.at(t + delay, partial(self._agent_reply, conv=conv))

    def _customer_run(self, t: float, conv: _Conv) -> None:
        for k in range(1 + min(3, int(self.rng.expovariate(1.0)))):
            self.emit("message.sent", t + 4 * k, conv.shop, sender="customer",
                      chars=self.rng.randint(5, 120), customer_id=conv.customer,
                      **self._conv_fields(conv))

    def _agent_reply(self, t: float, conv: _Conv) -> None:
        if conv.closed or conv.agent is None:
            return
        conv.answered = True
        # About 1 reply in 150 uses a forbidden phrase (counted as if by the ingest edge); a
        # hash, not the random stream, so every other simulated number stays as it was.
        slip = zlib.crc32(f"{conv.cid}:{t}".encode()) % 150 == 0
        self.emit("message.sent", t, conv.shop, sender="agent", chars=self.rng.randint(20, 300),
                  violations=1 if slip else None, **self._conv_fields(conv))
        conv.runs_left -= 1
        if conv.runs_left <= 0:
            self.at(t + self.rng.uniform(5, 60), lambda tt: self._close(tt, conv))
            return
        if self.rng.random() < 0.04:
            self.at(t + 5, lambda tt: self._transfer(tt, conv))
            return
        if self.rng.random() < 0.02:
            self.emit("conversation.escalated", t + 1, conv.shop, level=2,
                      **self._conv_fields(conv))
        gap = self.rng.uniform(5, 90)
        self._customer_run(t + gap, conv)
        load = len(conv.agent.sessions) / conv.agent.max_concurrency
        delay = gap + 3 + self.rng.lognormvariate(math.log(10 + 30 * load), 0.7)
        self.at(t + delay, lambda tt: self._agent_reply(tt, conv))

    def _transfer(self, t: float, conv: _Conv) -> None:
        if conv.closed or conv.agent is None:
            return
        others = [a for a in self.agents[conv.shop] if a.online and a is not conv.agent and
                  len(a.sessions) < a.max_concurrency]
        if not others:
            self.at(t + 10, lambda tt: self._agent_reply(tt, conv))
            return
        target = self.rng.choice(others)
        self._release(t, conv)
        conv.agent = target
        target.sessions.add(conv.cid)
        self.emit("conversation.transferred", t, conv.shop, to_agent_id=target.agent_id,
                  to_team=target.team, **self._conv_fields(conv))
        self._customer_run(t + 2, conv)
        self.at(t + 20 + self.rng.expovariate(1 / 15), lambda tt: self._agent_reply(tt, conv))

    def _release(self, t: float, conv: _Conv) -> None:
        if conv.agent is not None:
            conv.agent.sessions.discard(conv.cid)
            self.at(t, partial(self._dispatch, shop=conv.shop))

    def _close(self, t: float, conv: _Conv) -> None:
        if conv.closed:
            return
        conv.closed = True
        resolved = self.rng.random() < 0.85
        fields = self._conv_fields(conv)
        self.emit("conversation.closed", t, conv.shop, resolved=resolved, closed_by="agent",
                  **fields)
        self._release(t, conv)
        if self.rng.random() < 0.4:
            score = self.rng.choices([5, 4, 3, 2, 1], [0.55, 0.25, 0.1, 0.05, 0.05])[0]
            # Half the low ratings blame the agent's attitude (a hash: the random stream and
            # so every other simulated number stay as they were).
            blamed = score <= 2 and zlib.crc32(conv.cid.encode()) % 2 == 0
            attitude = "positive" if score >= 4 else "negative" if blamed else "neutral"
            self.emit("satisfaction.rated", t + self.rng.uniform(5, 120), conv.shop,
                      score=score, scale=5, attitude=attitude, **fields)
        if conv.queue == "presale" and self.rng.random() < 0.3:
            paid = t + self.rng.uniform(60, 7200)
            amount = round(self.rng.uniform(20, 800), 2)
            self.emit("order.paid", paid, conv.shop, customer_id=conv.customer,
                      order_id=f"o-{conv.cid}", amount=amount, currency="CNY",
                      conversation_id=conv.cid)
            self._after_sale(paid, conv, amount)
        if self.rng.random() < 0.03:
            self.at(t + self.rng.uniform(60, 3600), lambda tt: self._reopen(tt, conv))

    def _after_sale(self, paid: float, conv: _Conv, amount: float) -> None:
        """About 6 % of orders are refunded, 4 % returned and 2 % exchanged, 1-48 h after
        payment (a hash: the random stream, and so every other simulated number, is unchanged)."""
        h = zlib.crc32(f"o-{conv.cid}".encode())
        share, when = h % 100, paid + 3600 * (1 + (h >> 8) % 48)
        fields = {"customer_id": conv.customer, "order_id": f"o-{conv.cid}"}
        if share < 6:
            self.emit("order.refunded", when, conv.shop, amount=amount, currency="CNY",
                      reason=REFUND_REASONS[(h >> 16) % len(REFUND_REASONS)], **fields)
        elif share < 12:
            self.emit("order.returned", when, conv.shop,
                      kind="return" if share < 10 else "exchange", **fields)

    def _reopen(self, t: float, conv: _Conv) -> None:
        conv.closed, conv.answered, conv.runs_left = False, False, 1
        agent = conv.agent
        conv.agent = None
        self.emit("conversation.reopened", t, conv.shop, **self._conv_fields(conv))
        conv.agent = agent
        self._customer_run(t + 1, conv)
        if agent is not None:
            conv.agent = None
        self._enqueue(t + 2, conv)


def generate(cfg: SimConfig) -> Iterator[dict[str, Any]]:
    """Simulated events, sorted by event time (messages emitted slightly ahead are buffered)."""
    pending: list[tuple[int, int, dict[str, Any]]] = []
    seq = itertools.count()
    sim = Simulator(cfg)
    end_ms = int((cfg.start + cfg.duration) * 1000)
    for batch in sim.steps():
        for e in batch:
            heapq.heappush(pending, (e["ts"], next(seq), e))
        # Nothing emitted later can be earlier than the next scheduled action.
        horizon = sim.heap[0][0] * 1000 if sim.heap else end_ms
        while pending and pending[0][0] <= horizon:
            item = heapq.heappop(pending)[2]
            if item["ts"] <= end_ms:
                yield item
    while pending:
        item = heapq.heappop(pending)[2]
        if item["ts"] <= end_ms:
            yield item


async def run_simulation(settings: Settings, *, seed: int = 7, speed: float = 60.0,
                         duration: float = 600.0, rate: float = 2000.0, shops: int = 2,
                         agents_per_shop: int = 24, start: float | None = None,
                         staffing: tuple[StaffingStep, ...] = ()) -> int:
    """Produce ``duration`` wall seconds of simulated traffic to the events topic: ``speed``
    simulated seconds per wall second, at most ``rate`` events per wall second, from the
    simulated ``start`` (epoch seconds; default: so that it ends about now), with an optional
    ``staffing`` schedule."""
    from cs_pulse.sources.produce import EventProducer, paced
    from cs_pulse.topics import ensure_topics

    await ensure_topics(settings)
    # Compressed time runs ahead of the wall clock, so it starts in the past and ends ~now.
    origin = start if start is not None else time.time() - duration * max(speed, 1.0)
    cfg = SimConfig(seed=seed, start=origin, duration=duration * max(speed, 1.0),
                    shops=shops, agents_per_shop=agents_per_shop, staffing=staffing)
    async with EventProducer(settings, settings.events_topic) as producer:
        n = await producer.send_stream(paced(generate(cfg), speed, origin=cfg.start,
                                             max_rate=rate, wall_limit=duration))
    print(f"simulated {n} events")
    return 0

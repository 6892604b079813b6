"""Customers received (接待数), conversion by customers, refunds, returns and exchanges (README
"Customers received ..."): hand-computed cases through the whole engine.

Times are seconds after factory.T0 = 2023-11-15 06:13:20 in Shanghai (the default zone), so the
next local midnight is at t = 64000 s.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from story import Metrics, Story

A1 = {"shop": "s1", "team": "t1", "agent": "a1"}
A2 = {"shop": "s1", "team": "t1", "agent": "a2"}
T1 = {"shop": "s1", "team": "t1"}
Q = {"shop": "s1", "queue": "presale", "channel": "chat"}
MIDNIGHT = 64000          # 2023-11-16 00:00 in Shanghai
DAY = 86400


def served(s: Story, conv: str, start: float, answer: float, agent: str = "a1",
           customer: str | None = "k1", partition: int = 0) -> None:
    """A conversation of ``customer`` begun at ``start`` and served by ``agent`` at ``answer``."""
    s.add("conversation.started", start, conv, customer_id=customer, team="t1",
          partition=partition)
    s.cust(start + 1, conv, partition=partition)
    s.agent(answer, conv, agent=agent, partition=partition)


def test_a_customer_counts_once_per_agent_team_and_local_day() -> None:
    s = Story()
    served(s, "c1", 0, 20)                    # k1 by a1, day 1, began in hour 6
    served(s, "c2", 100, 130)                 # k1 by a1 again, same day and hour: nothing new
    served(s, "c4", 150, 200, customer=None)  # no customer_id: its own customer
    served(s, "c3", 3600, 3700, agent="a2")   # k1 by a2 (same team), hour 7
    served(s, "c5", MIDNIGHT - 100, MIDNIGHT + 100)   # began 23:58, answered on day 2
    m = s.run(now=MIDNIGHT + 200)
    assert m("cs_agent_customers_received_total", **A1) == 3   # k1 day 1, c4, k1 day 2
    assert m("cs_agent_customers_received_total", **A2) == 1
    assert m("cs_team_customers_received_total", **T1) == 3    # k1 day 1, c4, k1 day 2
    # today is day 2: k1 through c5, which began at 23:xx of day 1
    assert m.get("cs_agent_received_customers", window="today", **A1) == 1
    assert m.get("cs_agent_received_customers", window="today", **A2) == 0   # 0 exported
    assert m.get("cs_agent_customers_received_by_hour", hour="23", **A1) == 1
    assert m.get("cs_agent_customers_received_by_hour", hour="6", **A1) is None
    # a day's count is in no rolling window, and never counted as a late fact
    assert m.get("cs_agent_received_customers", window="60m", **A1) is None
    assert m("cs_facts_late_total") == 0
    day1 = s.run(now=4000)
    assert day1.get("cs_agent_received_customers", window="today", **A1) == 2   # k1, c4
    assert day1.get("cs_agent_customers_received_by_hour", hour="6", **A1) == 2
    assert day1.get("cs_agent_customers_received_by_hour", hour="7", **A2) == 1
    assert day1.get("cs_team_customers_received_by_hour", hour="6", **T1) == 2
    assert day1.get("cs_team_customers_received_by_hour", hour="7", **T1) == 1
    assert day1.get("cs_team_received_customers", window="today", **T1) == 2


def aftersales_story(rng: random.Random | None = None) -> Story:
    """k1 served by a1 (c1) and a2 (c2); orders, refunds and returns. Each partition's records
    keep their order; with ``rng`` the partitions are interleaved at random."""
    s = Story()
    by_partition: list[list[Callable[[], object]]] = [
        [lambda: served(s, "c1", 0, 20),
         # o1 names c1 (credits c1 only)
         lambda: s.add("order.paid", 500, "c1", customer_id="k1", order_id="o1", amount=100.0)],
        [lambda: served(s, "c2", 30, 60, agent="a2", partition=1)],
        # o2 names no conversation (credits c1 and c2)
        [lambda: s.add("order.paid", 600, "", customer_id="k1", order_id="o2", amount=50.0,
                       partition=2),
         lambda: s.add("order.returned", 1000, "", customer_id="k1", order_id="o1",
                       kind="exchange", partition=2),
         lambda: s.add("order.refunded", 2100, "", customer_id="k1", order_id="o1",
                       amount=1.0, reason="quality", partition=2),   # customer already counted
         lambda: s.add("order.refunded", 2200, "", customer_id="k9", order_id="o1",
                       amount=5.0, partition=2)],                    # another customer's o1
        [lambda: s.add("order.returned", 1100, "", customer_id="k1", order_id="o2",
                       kind="return", partition=3),
         lambda: s.add("order.returned", 1150, "", customer_id="k1", order_id="o2",
                       kind="return", partition=3),                  # again: once per pair
         lambda: s.add("order.refunded", 2000, "", customer_id="k1", order_id="o1",
                       amount=100.0, reason="broken screen", partition=3)],   # -> other
    ]
    queues = [list(q) for q in by_partition]
    while any(queues):
        live = [q for q in queues if q]
        (rng.choice(live) if rng else live[0]).pop(0)()
    return s


def check_aftersales(m: Metrics) -> None:
    assert m("cs_agent_customers_converted_total", **A1) == 1
    assert m("cs_agent_customers_converted_total", **A2) == 1
    assert m("cs_team_customers_converted_total", **T1) == 1
    assert m("cs_agent_orders_credited_total", **A1) == 2       # (c1, o1), (c1, o2)
    assert m("cs_agent_orders_credited_total", **A2) == 1       # (c2, o2)
    assert m("cs_orders_credited_total", **Q) == 3
    assert m("cs_agent_attributed_gmv_total", **A1) == 150.0
    assert m("cs_agent_orders_returned_total", kind="exchange", **A1) == 1
    assert m("cs_agent_orders_returned_total", kind="return", **A1) == 1
    assert m("cs_agent_orders_returned_total", kind="return", **A2) == 1
    assert m("cs_orders_returned_total", kind="return", **Q) == 2
    assert m.get("cs_agent_return_ratio", window="today", **A1) == 0.5
    assert m.get("cs_agent_exchange_ratio", window="today", **A2) == 0.0
    # a1's customer is refunded (o1 credits c1); a2's is not (o1 does not credit c2)
    assert m("cs_agent_customers_refunded_total", **A1) == 1
    assert m("cs_agent_customers_refunded_total", **A2) == 0
    assert m("cs_team_customers_refunded_total", **T1) == 1
    assert m.get("cs_agent_customer_refund_ratio", window="today", **A1) == 1.0
    assert m.get("cs_agent_customer_refund_ratio", window="today", **A2) == 0.0
    assert m.get("cs_agent_customer_conversion_ratio", window="today", **A2) == 1.0
    shop = {"shop": "s1"}
    assert m("cs_refunds_total", reason="other", **shop) == 2   # unknown reason, none
    assert m("cs_refunds_total", reason="quality", **shop) == 1
    assert m("cs_refunds_amount_total", **shop) == 106.0
    assert m("cs_order_returns_total", kind="return", **shop) == 2
    assert m("cs_order_returns_total", kind="exchange", **shop) == 1


def test_refunds_returns_and_exchanges_of_credited_orders() -> None:
    check_aftersales(aftersales_story().run(now=3000))


def test_arrival_order_across_partitions_does_not_change_any_customer_answer() -> None:
    """The customer stage's joins are symmetric: after-sales before their order, orders before
    the answer, partitions interleaved any way."""
    def page(s: Story) -> list[tuple[str, dict[str, str], float]]:
        return sorted((x for x in s.run(now=3000).samples
                       if "lag" not in x[0] and "_age_" not in x[0]), key=repr)

    baseline = page(aftersales_story())
    rng = random.Random(7)
    for _ in range(8):
        s = aftersales_story(rng)
        check_aftersales(s.run(now=3000))
        assert page(s) == baseline


def test_after_sales_match_an_order_paid_at_most_30_days_before() -> None:
    s = Story()
    served(s, "c1", 0, 20)
    s.add("order.paid", 500, "c1", customer_id="k1", order_id="o1", amount=100.0)
    s.add("order.paid", 600, "c1", customer_id="k1", order_id="o2", amount=10.0)
    s.add("order.returned", 500 + 30 * DAY, "", customer_id="k1", order_id="o1",
          kind="return", partition=1)                       # exactly 30 days: matches
    s.add("order.refunded", 600 + 30 * DAY + 1, "", customer_id="k1", order_id="o2",
          amount=10.0, partition=1)                         # a second late: no match
    m = s.run(now=600 + 30 * DAY + 10)
    assert m("cs_agent_orders_returned_total", kind="return", **A1) == 1
    assert m("cs_agent_customers_refunded_total", **A1) == 0
    assert m("cs_refunds_total", shop="s1", reason="other") == 1


def test_customer_state_is_forgotten_past_the_horizons() -> None:
    """Exact distinct counts stay bounded: a customer's receptions go 25 h after every source's
    progress passes them; a converted one (after-sales can still refund it) after 30 more days
    and the conversion horizon."""
    from cs_pulse.domain.customers import CustomerStage
    from cs_pulse.domain.model import CustomerRecord

    h, day = 3600 * 1000, 24 * 3600 * 1000
    t0 = 1_700_000_000_000
    stage = CustomerStage(sources=1)
    agent = ["q|s1|presale|chat", "a|s1|t1|a1"]
    origin = iter(range(1, 10_000))

    def feed(r: CustomerRecord) -> list[str]:
        return [f.kind for f in stage.apply(r, ("e0", next(origin), 0))]

    assert sorted(feed(CustomerRecord("served", t0, "s1|c:k1", "c1@1", float(t0), agent))) == \
        ["customers_hour_06", "customers_hour_06", "customers_received", "customers_received"]
    feed(CustomerRecord("served", t0, "s1|c:k2", "c2@1", float(t0), agent))
    kinds = feed(CustomerRecord("order", t0 + h, "s1|c:k2", "", 10.0, ["s|s1"], "e9", "o1"))
    assert kinds.count("customers_converted") == 2   # agent and team
    feed(CustomerRecord("progress", t0 + day + 2 * h, "", ""))
    assert stage.expire() == 1                        # k1 gone; k2 kept for after-sales
    assert [len(stage.customers["s1|c:k2"].receptions)] == [2]
    kinds = feed(CustomerRecord("refund", t0 + 20 * day, "s1|c:k2", order="o1"))
    assert kinds == ["customers_refunded", "customers_refunded"]
    feed(CustomerRecord("progress", t0 + 33 * day, "", ""))
    assert stage.expire() == 1 and not stage.customers

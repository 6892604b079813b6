"""The monthly agent scorecard: the scoring rule by hand, months cut in the shop's time zone,
the bank's January (its agents' first responses add up to the raw-row script's), and a simulated
month read back from the history files."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from cs_pulse.audit.run import partition_file
from cs_pulse.reports import scorecard
from cs_pulse.reports.attendance import attendance
from cs_pulse.reports.history import HistoryWriter, read_history
from cs_pulse.reports.scorecard import DEFAULT_RULES, Indicator, Rules, month_bounds, score
from cs_pulse.settings import Settings, shops_config
from cs_pulse.sources.simulate import SimConfig, generate
from factory import T0
from oracles.bank_raw import figures
from story import Story

DATA = Path(os.environ.get("CS_PULSE_DATA",
                           Path(__file__).resolve().parents[3] / "shared" / "data"))
SHOPS = Path(__file__).resolve().parents[2] / "deploy" / "shops.json"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_each_indicator_scores_its_weight_times_attainment_within_floor_and_cap() -> None:
    up, down = Indicator("reply_rate", 0.8, 20), Indicator("forbidden_phrases", 5, 10, False)
    assert score(up, 0.6, DEFAULT_RULES) == pytest.approx(15.0)      # 0.75 of the target
    assert score(up, 0.2, DEFAULT_RULES) == pytest.approx(10.0)      # floor: half the weight
    assert score(up, 1.6, DEFAULT_RULES) == pytest.approx(30.0)      # cap: 1.5 x the weight
    assert score(down, 10, DEFAULT_RULES) == pytest.approx(5.0)      # twice the limit
    assert score(down, 4, DEFAULT_RULES) == pytest.approx(12.5)
    assert score(down, 0, DEFAULT_RULES) == pytest.approx(15.0)      # none at all: the cap
    assert score(up, None, DEFAULT_RULES) is None                    # no data: not scored
    strict = Rules.from_config({"floor": 0, "cap": 1, "indicators": [
        {"name": "csat", "target": 4, "weight": 50}]})
    assert score(strict.indicators[0], 1.0, strict) == pytest.approx(12.5)
    with pytest.raises(ValueError):
        Rules.from_config({"indicators": [{"name": "happiness", "target": 1, "weight": 1}]})


def test_a_history_with_invalid_records_is_read_past_them() -> None:
    # The sink keeps every record, dead letters included: none of them has an event time.
    log = scorecard.stamped([(0, 0, None, b"{broken"), (0, 1, None, b"[]"), (0, 2, None, None),
                             (0, 3, None, b'{"ts": 5, "shop_id": "s1"}'),
                             (0, 4, None, b'{"ts": 50, "shop_id": "s1"}')])
    assert [(rec[1], ts, shop) for rec, ts, shop in log] == [(3, 5, "s1"), (4, 50, "s1")]
    assert [rec[1] for rec in scorecard.before(log, 10)] == [3]


def test_months_are_cut_at_local_midnight() -> None:
    start, end = month_bounds("2026-12", "Asia/Shanghai")
    assert datetime.fromtimestamp(start / 1000, SHANGHAI) == datetime(2026, 12, 1, tzinfo=SHANGHAI)
    assert datetime.fromtimestamp(end / 1000, SHANGHAI) == datetime(2027, 1, 1, tzinfo=SHANGHAI)


def boundary() -> float:
    """Seconds after T0 of 2023-12-01 00:00 in Shanghai (the default shop time zone)."""
    return datetime(2023, 12, 1, tzinfo=SHANGHAI).timestamp() - T0


def test_a_month_holds_what_was_counted_in_it() -> None:
    b = boundary()
    s = Story()
    s.add("conversation.started", b - 600, "c1")
    s.add("conversation.assigned", b - 600, "c1", agent_id="a1")
    s.cust(b - 600, "c1")
    s.agent(b - 590, "c1")                                    # November: within 30 s
    s.add("conversation.closed", b - 500, "c1", closed_by="agent", resolved=True)
    s.add("conversation.started", b + 60, "c2")
    s.add("conversation.assigned", b + 60, "c2", agent_id="a1")
    s.cust(b + 60, "c2")
    s.agent(b + 160, "c2", violations=2)                      # December: 100 s, 2 phrases
    s.add("satisfaction.rated", b + 200, "c2", score=1, scale=5)
    settings = Settings(partitions=4)
    key = ("s1", "", "a1")
    nov = scorecard.monthly(s.records, "2023-11", settings)[key]
    dec = scorecard.monthly(s.records, "2023-12", settings)[key]
    card_nov, card_dec = (scorecard.cards({key: c}, DEFAULT_RULES)[0] for c in (nov, dec))
    got = {line.indicator: line.actual for line in card_nov.lines}
    assert got["first_response_30s"] == 1.0 and got["csat"] is None
    assert got["forbidden_phrases"] == 0 and got["negative_reviews"] is None
    got = {line.indicator: line.actual for line in card_dec.lines}
    assert got["first_response_30s"] == 0.0 and got["csat"] == 1.0
    assert got["forbidden_phrases"] == 2 and got["negative_reviews"] == 1
    assert card_nov.shown["handled"] == 1 and card_dec.shown["handled"] == 1
    # December: first response 0/0.8 -> floor 10; reply rate 1/0.95 of 20; csat 1/4.5 ->
    # floor 10; customer conversion 0 of 1 -> floor 7.5; forbidden 5/2 = 2.5 -> cap 15; negative
    # reviews 2/1 = 2 -> cap 22.5. Every indicator has data: out of 100.
    assert got["reply_rate"] == 1.0 and got["customer_conversion"] == 0.0
    assert card_dec.total == pytest.approx(10 + 20 / 0.95 + 10 + 7.5 + 15 + 22.5)
    assert card_dec.out_of == 100


def test_customers_count_once_per_agent_and_team_per_day_and_convert_by_customer() -> None:
    b = boundary()   # December 1st; each conversation is served 10 s after it starts
    s = Story()
    served = [(b + 3600, "c1", "u1", "a1"), (b + 7200, "c2", "u1", "a1"),   # u1 twice
              (b + 7300, "c3", "u2", "a1"), (b + 7400, "c4", "u1", "a2"),   # a2 serves u1 too
              (b + 86400 + 3600, "c5", "u1", "a1")]                         # the next day
    for t, conv, customer, agent in served:
        s.add("conversation.started", t, conv, customer_id=customer, team="t1")
        s.add("conversation.assigned", t, conv, agent_id=agent, team="t1")
        s.cust(t, conv, team="t1")
        s.agent(t + 10, conv, agent=agent, team="t1")
    s.add("order.paid", b + 9000, "", customer_id="u1", order_id="o1", amount=99.0)
    counts = scorecard.monthly(s.records, "2023-12", Settings(partitions=4))
    a1, a2, team = (counts[("s1", "t1", a)] for a in ("a1", "a2", ""))
    # a1: day 1 {u1, u2}, day 2 {u1} -> 3; converted: u1 on day 1 (paid within 24 h of c1 and
    # c2's answers) and on day 2? No: c5 was served after the payment.
    assert (a1["customers_received"], a1["customers_converted"]) == (3, 1)
    assert (a2["customers_received"], a2["customers_converted"]) == (1, 1)
    assert (team["customers_received"], team["customers_converted"]) == (3, 1)
    cards = {c.agent: c for c in scorecard.cards(counts, DEFAULT_RULES)}
    assert set(cards) == {"a1", "a2"}                         # the team row is not an agent
    got = {line.indicator: line.actual for line in cards["a1"].lines}
    assert got["customer_conversion"] == pytest.approx(1 / 3)
    [t1] = scorecard.team_figures(counts)
    assert t1["customer_conversion"] == pytest.approx(1 / 3)
    # 分时接待, by the local hour the chat started: a1's u1 at 01h on both days; u1 and u2 at
    # 02h on day 1. The team counts u1 at 02h once although two agents served it.
    assert cards["a1"].hourly == {"01": 2, "02": 2}
    assert cards["a2"].hourly == {"02": 1}
    assert t1["hourly"] == {"01": 2, "02": 2}


def test_soft_indicators_team_filter_and_the_three_outputs(tmp_path: Path) -> None:
    counts = {("s1", "t1", "a1"): {"csat_score_sum": 9.0, "csat_score_count": 2.0},
              ("s1", "t2", "a2"): {"csat_score_sum": 5.0, "csat_score_count": 1.0}}
    soft = tmp_path / "soft.csv"
    soft.write_text("agent,indicator,score\na1,teamwork,12\n", encoding="utf-8")
    rules = Rules((Indicator("csat", 4.5, 20),))
    cards = scorecard.cards(counts, rules, team="t1", soft=scorecard.soft_scores(soft))
    assert [c.agent for c in cards] == ["a1"]
    assert cards[0].total == pytest.approx(20 + 12)           # 4.5 / 4.5, plus the soft score
    data = json.loads(scorecard.render(cards, "json"))
    assert data["totals"][0]["total"] == 32
    rows = list(csv.DictReader(io.StringIO(scorecard.render(cards, "csv"))))
    assert [r["indicator"] for r in rows] == ["csat", "soft:teamwork"]
    assert "a1: 32.0 of 20" in scorecard.render(cards, "table")


def test_gmv_share_is_against_the_mean_of_the_teams_agents() -> None:
    counts = {("s1", "t1", "a1"): {"attributed_gmv_total": 300.0},
              ("s1", "t1", "a2"): {"attributed_gmv_total": 100.0},
              ("s1", "t1", "a3"): {"served_total": 4.0},              # sold nothing
              ("s1", "t2", "b1"): {"attributed_gmv_total": 50.0}}
    rules = Rules((Indicator("gmv_share", 1.0, 10),))
    share = {c.agent: c.lines[0].actual for c in scorecard.cards(counts, rules)}
    assert share == {"a1": 2.25, "a2": 0.75, "a3": 0.0, "b1": 1.0}   # t1 mean: 400 / 3


def test_the_banks_january_agents_add_up_to_the_raw_rows() -> None:
    path = DATA / "technion_callcenter" / "january.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    settings = Settings(partitions=4, shops=shops_config(str(SHOPS)))
    counts = scorecard.monthly(partition_file(path, "technion", 4), "1999-01", settings)
    want = figures(path)
    within = sum(c.get("service_level_contacts_total{answered_within}", 0.0)
                 for c in counts.values())
    after = sum(c.get("service_level_contacts_total{answered_after}", 0.0)
                for c in counts.values())
    assert within == want["answered_within_30s"]
    assert within + after == want["answered"]
    rules = Rules((Indicator("first_response_30s", 0.8, 50), Indicator("resolution_rate", 0.9,
                                                                        50)))
    cards = scorecard.cards(counts, rules)
    assert len(cards) > 10 and all(line.score is not None for c in cards for line in c.lines)


def test_a_simulated_month_from_the_history_files(tmp_path: Path) -> None:
    start = datetime(2026, 10, 31, 20, tzinfo=SHANGHAI).timestamp()   # a little of October
    events = list(generate(SimConfig(seed=5, start=start, duration=31 * 86400, shops=1,
                                     agents_per_shop=6, peak_arrivals_per_minute=0.4)))
    log = tmp_path / "month.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    records = partition_file(log, "jsonl", 4)
    writer = HistoryWriter(tmp_path / "history")
    writer.write((p, o, orjson.loads(v)["ts"], k, v) for p, o, k, v in records)
    writer.close()
    history = read_history(tmp_path / "history")
    assert history == sorted(records, key=lambda r: (r[0], r[1]))
    settings = Settings(partitions=4)
    counts = scorecard.monthly(history, "2026-11", settings)
    cards = scorecard.cards(counts, DEFAULT_RULES)
    assert len(cards) == 6
    for card in cards:   # the simulator's agents rate, sell and slip: every indicator has data
        assert all(line.actual is not None for line in card.lines), card
    # Independent of the engine: the month's phrases, straight from the raw events.
    lo, hi = month_bounds("2026-11", "Asia/Shanghai")
    raw = sum(e.get("violations", 0) for e in events
              if e.get("sender") == "agent" and lo <= e["ts"] < hi)
    assert raw > 0
    assert sum(c.get("forbidden_phrases_total", 0.0) for c in counts.values()) == raw
    # After-sales: each simulated order names the served conversation it follows, so each
    # return or exchange known in November is one returned pair of one agent; a refund makes
    # at most one refunded customer (several refunds of a customer and day count once).
    paid = {e["order_id"] for e in events if e["type"] == "order.paid"}
    for kind in ("return", "exchange"):
        raw = sum(1 for e in events if e["type"] == "order.returned" and e["kind"] == kind
                  and lo <= e["ts"] < hi and e["order_id"] in paid)
        assert raw > 0
        assert sum(c.get(f"orders_returned_total{{{kind}}}", 0.0)
                   for c in counts.values()) == raw
    refunds = sum(1 for e in events if e["type"] == "order.refunded" and lo <= e["ts"] < hi)
    refunded = sum(c.get("customers_refunded_total", 0.0) for c in counts.values())
    assert 0 < refunded <= refunds
    after_sales = Rules.from_config({"indicators": [
        {"name": n, "target": 0.05, "weight": 10, "higher_is_better": False}
        for n in ("refund_rate", "return_rate", "exchange_rate")]})
    rates = [line.actual for card in scorecard.cards(counts, after_sales) for line in card.lines]
    assert any(rates) and all(r is None or 0 <= r <= 1 for r in rates)
    # Attendance over the same month: the simulator's agents work a shift every day.
    worked = attendance(history, date(2026, 11, 1), date(2026, 11, 30), settings)
    assert [a.days_worked for a in worked] == [30] * 6


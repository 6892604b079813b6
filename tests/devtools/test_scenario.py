"""The demo's scripted scenarios: the staffing schedule the simulator follows, the day chosen,
and that peak-breach burns shop-1's service level past the fast-burn page's threshold long
enough for its ``for:`` and then recovers (computed by the engine in-process, no Prometheus)."""

from __future__ import annotations

import zlib
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from cs_pulse.devtools.scenario import SCENARIOS, Scenario
from cs_pulse.metrics.catalogue.slo import PAGING_SLO
from cs_pulse.settings import Settings
from cs_pulse.sources.produce import event_key
from cs_pulse.sources.simulate import SimConfig, StaffingStep, generate
from cs_pulse.worker.inprocess import InProcess

SHANGHAI = ZoneInfo("Asia/Shanghai")
BREACH = SCENARIOS["peak-breach"]
START = datetime(2026, 3, 10, 9, 58, tzinfo=SHANGHAI).timestamp()
FAST = next(r for r in PAGING_SLO.burn_rates if r.alert == "CsServiceLevelFastBurn")
THRESHOLD = FAST.factor * PAGING_SLO.error_budget


def local(hm: str) -> float:
    h, m = (int(x) for x in hm.split(":"))
    return datetime(2026, 3, 10, h, m, tzinfo=SHANGHAI).timestamp()


def config(sc: Scenario, wall_seconds: float) -> SimConfig:
    return SimConfig(seed=sc.seed, start=START, duration=wall_seconds * sc.speed,
                     shops=sc.shops, agents_per_shop=sc.agents_per_shop, tz=sc.tz,
                     staffing=sc.staffing)


def online_at(events: list[dict[str, object]], shop: str, t: float) -> int:
    online: set[object] = set()
    for e in events:
        if e["type"] == "agent.status" and e["shop_id"] == shop and e["ts"] <= t * 1000:
            (online.add if e["status"] == "online" else online.discard)(e["agent_id"])
    return len(online)


def test_cli_offers_every_scenario() -> None:
    from click.testing import CliRunner

    from cs_pulse.cli import cli

    out = CliRunner().invoke(cli, ["demo", "--help"]).output
    assert all(name in out for name in SCENARIOS)


def test_peak_breach_staffing_schedule() -> None:
    events = list(generate(config(BREACH, 240)))
    expected = {"09:59": 14, "10:01": 6, "10:02": 1, "11:32": 1, "11:33": 14, "12:00": 14}
    assert {hm: online_at(events, "shop-1", local(hm)) for hm in expected} == expected
    assert {online_at(events, "shop-2", local(hm)) for hm in expected} == {14}
    # Agents who logged off finish what they hold but take no new chats.
    late = {e["agent_id"] for e in events if e["type"] == "conversation.assigned"
            and e["shop_id"] == "shop-1" and local("10:05") <= e["ts"] / 1000 < local("11:33")}
    assert late == {"shop-1-agent-1"}
    assert BREACH.chapter(0).startswith("09:58")
    assert BREACH.chapter(local("10:03") - START).startswith("10:02 shop-1: one agent left")
    assert BREACH.chapter(local("11:40") - START).startswith("11:33")


def test_staffing_steps_only_change_their_shop_and_are_deterministic() -> None:
    base = SimConfig(seed=3, start=START, duration=3 * 3600, agents_per_shop=9)
    steps = (StaffingStep(600, "shop-2", 0), StaffingStep(1800, "shop-2", None))
    staffed = list(generate(SimConfig(**{**base.__dict__, "staffing": steps})))
    assert staffed == list(generate(SimConfig(**{**base.__dict__, "staffing": steps})))
    assert online_at(staffed, "shop-2", START + 900) == 0
    assert online_at(staffed, "shop-2", START + 2000) == online_at(staffed, "shop-2",
                                                                   START + 500) > 0
    heartbeats = [e for e in staffed if e["type"] == "agent.heartbeat"
                  and e["shop_id"] == "shop-2" and START + 600 < e["ts"] / 1000 < START + 1800]
    assert heartbeats == []


def test_start_is_the_latest_whole_run_in_the_past_and_no_sale_day() -> None:
    now = datetime(2026, 3, 10, 15, 0, tzinfo=SHANGHAI).timestamp()
    assert BREACH.start(now, 600) == START                   # 09:58 + 5 h <= 15:00
    assert BREACH.start(now, 600, speed=60) == START - 86400   # 10 h would end after now
    nov12 = datetime(2026, 11, 12, 23, 0, tzinfo=SHANGHAI).timestamp()
    assert datetime.fromtimestamp(BREACH.start(nov12 - 86400, 600), SHANGHAI).day == 10
    assert BREACH.shops_config()["default"]["peaks"] == [["10:00", "15:00"]]
    assert Settings(shops=BREACH.shops_config()).calendars.for_shop("shop-1").is_peak(
        local("10:00"))


def error_ratios(ip: InProcess) -> dict[tuple[str, str], tuple[float, float]]:
    """(errors, counted) per shop and queue of the paging SLO's counter."""
    out: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for name, labels, v in ip.samples():
        if name == PAGING_SLO.metric and labels["outcome"] in PAGING_SLO.counted:
            acc = out[(labels["shop"], labels["queue"])]
            acc[0] += v if labels["outcome"] in PAGING_SLO.bad else 0.0
            acc[1] += v
    return {k: (e, n) for k, (e, n) in out.items()}


@pytest.mark.parametrize("queue", ["presale", "aftersale"])
def test_peak_breach_burns_past_the_fast_burn_threshold_then_recovers(queue: str) -> None:
    """The page needs the error ratio over everything so far (the 1h window of a young
    Prometheus) and over 5 min above the threshold for 2 min, and recovery to bring it back
    under. In wall seconds after the traffic starts: the ratio is above by 60 s and stays above
    through 60 + 120 = 180 s (the recovery comes at 190 s); from 270 s, once the backlog is
    answered, it is well under."""
    wall = 380
    events = list(generate(config(BREACH, wall)))
    ip, offsets = InProcess(Settings(partitions=2, shops=BREACH.shops_config())), {}
    counts = {}
    checkpoints = [0, 60, 180, 270, wall]
    fed = 0
    for w in checkpoints:
        upto = START + w * BREACH.speed
        records = []
        while fed < len(events) and events[fed]["ts"] <= upto * 1000:
            e, fed = events[fed], fed + 1
            p = zlib.crc32(event_key(e)) % 2
            offsets[p] = offsets.get(p, -1) + 1
            records.append((p, offsets[p], event_key(e), orjson.dumps(e)))
        ip.clock = upto
        ip.feed(records)
        ip.release_all()
        counts[w] = error_ratios(ip)

    def ratio(shop: str, a: int, b: int) -> float:
        (e0, n0), (e1, n1) = (counts[w].get((shop, queue), (0.0, 0.0)) for w in (a, b))
        return (e1 - e0) / (n1 - n0)

    assert ratio("shop-1", 0, 60) > THRESHOLD
    assert ratio("shop-1", 60, 180) > THRESHOLD
    assert ratio("shop-1", 0, 180) > THRESHOLD
    assert ratio("shop-1", 270, wall) < THRESHOLD / 2
    assert ratio("shop-2", 0, wall) < THRESHOLD / 2

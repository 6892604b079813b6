"""The demo's board: Prometheus and Alertmanager answers turned into rows, and the layout."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from cs_pulse.devtools import board as b
from cs_pulse.devtools.demo import DemoResult, status_line

RUNBOOK = "https://github.com/cs-pulse/cs-pulse/blob/main/docs/runbooks/service-level-burn.md"


def answer(*rows: tuple[str, float]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"shop": shop}, "value": [1.7e9, str(v)]} for shop, v in rows]}}


def test_sparkline_maps_zero_to_one_onto_eight_blocks_with_gaps() -> None:
    assert b.sparkline([0.0, 0.5, 1.0, None, 2.0, -1.0, float("nan")]) == "▁▅█ █▁ "
    assert b.sparkline([10, 20, 30], lo=10, hi=30) == "▁▅█"
    assert b.sparkline([]) == ""


def test_vector_and_matrix_read_prometheus_answers() -> None:
    got = b.vector(answer(("shop-1", 0.25), ("shop-2", float("nan"))))
    assert got["shop-1"] == 0.25 and math.isnan(got["shop-2"])
    assert b.vector({"status": "error", "error": "parse error"}) == {}
    rng = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"shop": "shop-1"}, "values": [[100, "0.9"], [120, "0.5"], [990, "1"]]}]}}
    assert b.matrix(rng, start=100, step=10, points=4) == {"shop-1": [0.9, None, 0.5, None]}


def test_shop_rows_one_per_shop_nan_is_no_data() -> None:
    values = {name: {} for name in b.SHOP_QUERIES}
    values["sl30"] = {"shop-1": 0.4, "shop-2": float("nan")}
    values["online"] = {"shop-1": 1.0, "shop-2": 8.0}
    values["needed"] = {"shop-1": 6.0}
    rows = b.shop_rows(values, {"shop-3": [0.5]})
    assert [r.shop for r in rows] == ["shop-1", "shop-2", "shop-3"]
    assert (rows[0].sl30, rows[0].online, rows[0].needed) == (0.4, 1.0, 6.0)
    assert rows[1].sl30 is None and rows[1].needed is None
    assert rows[2].trend == [0.5]


def am_alert(name: str, severity: str, queue: str) -> dict[str, object]:
    return {"labels": {"alertname": name, "severity": severity, "shop": "shop-1",
                       "queue": queue},
            "annotations": {"summary": f"shop-1/{queue}: 30 s response target collapsing",
                            "runbook_url": RUNBOOK},
            "startsAt": "2026-03-10T02:03:04.123456789Z", "status": {"state": "active"}}


def test_alert_rows_pages_first_firing_before_pending() -> None:
    firing = [am_alert("CsOldestWaitingTooLong", "ticket", "presale"),
              am_alert("CsServiceLevelFastBurn", "page", "presale")]
    pending = [{"labels": {"alertname": "CsServiceLevelFastBurn", "severity": "page",
                           "shop": "shop-1", "queue": "aftersale"},
                "annotations": {}, "state": "pending", "activeAt": "2026-03-10T02:03:00Z"},
               {"labels": {"alertname": "CsServiceLevelFastBurn", "severity": "page",
                           "shop": "shop-1", "queue": "presale"},
                "annotations": {}, "state": "firing", "activeAt": "2026-03-10T02:01:00Z"}]
    rows = b.alert_rows(firing, pending)
    assert [(r.name, r.queue, r.state) for r in rows] == [
        ("CsServiceLevelFastBurn", "presale", "firing"),
        ("CsServiceLevelFastBurn", "aftersale", "pending"),
        ("CsOldestWaitingTooLong", "presale", "firing")]
    assert rows[0].runbook_url == RUNBOOK
    assert rows[0].since == datetime(2026, 3, 10, 2, 3, 4, 123456, tzinfo=UTC).timestamp()
    assert rows[1].since == datetime(2026, 3, 10, 2, 3, tzinfo=UTC).timestamp()


def post(status: str, queue: str) -> dict[str, object]:
    alert = am_alert("CsServiceLevelFastBurn", "page", queue) | {"status": status}
    return {"status": status, "receiver": "oncall", "alerts": [alert]}


def test_webhook_posts_become_notifications_and_a_page_cycle() -> None:
    result = DemoResult("peak-breach", log_dir=Path("/tmp"))
    assert not result.page_fired_and_resolved()
    result.notifications += b.notifications(150, "/oncall", post("firing", "presale"))
    result.notifications += b.notifications(152, "/supervisors", post("firing", "presale"))
    result.notifications += b.notifications(160, "/oncall", post("firing", "aftersale"))
    assert [(n.receiver, n.status, n.labels["queue"]) for n in result.notifications] == [
        ("/oncall", "firing", "presale"), ("/supervisors", "firing", "presale"),
        ("/oncall", "firing", "aftersale")]
    result.notifications += b.notifications(280, "/oncall", post("resolved", "presale"))
    assert not result.page_fired_and_resolved()           # aftersale still firing
    result.notifications += b.notifications(290, "/oncall", post("resolved", "aftersale"))
    assert result.page_fired_and_resolved()
    result.notifications += b.notifications(300, "/oncall", post("firing", "aftersale"))
    assert not result.page_fired_and_resolved()           # fired again since
    assert result.timeline()[0] == "+ 150 s  /oncall        firing   CsServiceLevelFastBurn " \
                                   "shop-1/presale"


def board() -> b.Board:
    now = 1_773_108_000.0
    rows = [b.ShopRow("shop-1", sl30=0.12, frt_p90=float("inf"), reply_rate=0.7,
                      abandonment=0.4, waiting=14, oldest_waiting=290, online=1, needed=6,
                      peak=1, trend=[0.8, 0.7, 0.3, 0.1, None, 0.05]),
              b.ShopRow("shop-2", sl30=0.78, frt_p90=22.5, reply_rate=0.97, abandonment=0.02,
                        waiting=2, oldest_waiting=12, online=8, needed=4, peak=1,
                        trend=[0.8] * 6)]
    alerts = b.alert_rows([am_alert("CsServiceLevelFastBurn", "page", "presale")], [
        {"labels": {"alertname": "CsServiceLevelFastBurn", "severity": "page",
                    "shop": "shop-1", "queue": "aftersale"}, "annotations": {},
         "state": "pending", "activeAt": "2026-03-10T02:03:00Z"}])
    alerts[0].since, alerts[1].since = now - 75, now - 42
    notes = b.notifications(151, "/oncall", post("firing", "presale"))
    return b.Board("peak-breach", "10:41:07", "10:02 shop-1: one agent left", 160.0, 30.0,
                   rows, alerts, notes, {"Prometheus": "http://127.0.0.1:9090"},
                   "/tmp/cs-pulse-demo-x")


def test_render_shows_kpis_alerts_runbook_sparkline_and_receiver() -> None:
    console = Console(width=120, record=True, color_system=None)
    console.print(b.render(board(), now=1_773_108_000.0))
    text = console.export_text()
    for expected in ("peak-breach", "10:41:07", "10:02 shop-1: one agent left",
                     "shop-1", "12%", "> max", "70%", "40%", "4.8 min", "1 / 6", "8 / 4",
                     "shop-2", "78%", "22 s",
                     "page   CsServiceLevelFastBurn  shop-1/presale  for 1:15",
                     "pending (Prometheus waiting out the rule's for:): CsServiceLevelFastBurn "
                     "shop-1/aftersale 0:42",
                     f"runbook {RUNBOOK}",
                     "30 s response target collapsing",
                     "/oncall", "+151 s", "http://127.0.0.1:9090", "/tmp/cs-pulse-demo-x",
                     "▇▆▃▁ ▁", "15 simulated minutes"):
        assert expected in text, (expected, text)


def test_render_without_data_or_alerts() -> None:
    empty = b.Board("steady", "-", "", 0.0, 30.0, [], [], [], {}, "/tmp/x",
                    note="Prometheus or Alertmanager did not answer")
    console = Console(width=120, record=True, color_system=None)
    console.print(b.render(empty))
    text = console.export_text()
    assert "alerts firing: none" in text and "pending" not in text
    assert "nothing received yet" in text
    assert "did not answer" in text


def test_headless_status_line() -> None:
    line = status_line(board())
    assert line.startswith("+ 160 s  10:41:07  shop-1 SL30 12% online 1/6 waiting 14")
    assert line.endswith("firing: CsServiceLevelFastBurn shop-1/presale (page); 1 pending")

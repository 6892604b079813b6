"""Grafana dashboards as code: ``python grafana/build.py`` writes grafana/dashboards/*.json.

A test rebuilds them and fails if the committed JSON is stale, and runs every panel query
against a real Prometheus scraping a real worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "cs-pulse-prometheus"}
OUT = Path(__file__).parent / "dashboards"
SHOP = 'shop=~"$shop"'
SQ = 'shop=~"$shop", queue=~"$queue"'


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}


def panel(title: str, targets: list[dict[str, Any]], *, unit: str = "short", kind: str =
          "timeseries", w: int = 12, h: int = 8, thresholds: list[tuple[float | None, str]] |
          None = None, description: str = "", extra: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    steps = [{"value": v, "color": c} for v, c in (thresholds or [(None, "green")])]
    p: dict[str, Any] = {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"w": w, "h": h}, "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute",
                                                                   "steps": steps}},
                        "overrides": []},
        "options": {},
    }
    if extra:
        p.update(extra)
    return p


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
            "current": {"text": "All", "value": "$__all"}}


PEAK_ANNOTATION = {
    "name": "Peak hours", "enable": True, "iconColor": "rgba(255, 152, 48, 0.25)",
    "datasource": DATASOURCE, "expr": f"shop:cs_peak_hour:max{{{SHOP}}} == 1",
    "step": "60s", "titleFormat": "peak {{shop}}", "useValueForTime": False,
}


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[
        dict[str, Any]], description: str) -> dict[str, Any]:
    x = y = 0
    row_h = 0
    for i, p in enumerate(panels):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        p["gridPos"].update({"x": x, "y": y})
        p["id"] = i + 1
        x += w
        row_h = max(row_h, h)
    return {
        "uid": uid, "title": title, "description": description, "tags": ["cs-pulse"],
        "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True,
        "refresh": "10s", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": [PEAK_ANNOTATION]},
        "panels": panels,
    }


SHOP_VAR = variable("shop", "label_values(cs_peak_hour, shop)", "Shop")
QUEUE_VAR = variable("queue", 'label_values(cs_queued_total{shop=~"$shop"}, queue)', "Queue")
AGENT_VAR = variable("agent", 'label_values(cs_agent_online{shop=~"$shop"}, agent)', "Agent")
CHANNEL_VAR = variable(
    "channel", 'label_values(cs_first_response_within_total{shop=~"$shop"}, channel)', "Channel")
SC = 'shop=~"$shop", channel=~"$channel"'

PCT_80 = [(None, "red"), (0.7, "orange"), (0.8, "green")]

FLOOR = dashboard("cs-floor", "Floor board", [
    panel("Service level 30 s vs 80 % target", [
        target(f"shop_queue:cs_service_level:ratio_rate5m{{{SQ}}}", "{{shop}}/{{queue}}"),
        target(f"shop:cs_service_level:ratio_rate5m{{{SHOP}}}", "{{shop}} all queues", "B"),
    ], unit="percentunit", thresholds=PCT_80, extra={"fieldConfig": {"defaults": {
        "unit": "percentunit", "min": 0, "max": 1, "custom": {"thresholdsStyle": {
            "mode": "line"}}, "thresholds": {"mode": "absolute", "steps": [
                {"value": None, "color": "red"}, {"value": 0.8, "color": "green"}]}},
        "overrides": []}}),
    panel("First response p50 / p90", [
        target(f"shop_queue:cs_first_response_seconds:p50_rate5m{{{SQ}}}",
               "p50 {{shop}}/{{queue}}"),
        target(f"shop_queue:cs_first_response_seconds:p90_rate5m{{{SQ}}}",
               "p90 {{shop}}/{{queue}}", "B"),
    ], unit="s", thresholds=[(None, "green"), (30, "red")]),
    panel("Waiting now", [target(f"shop_queue:cs_waiting_conversations:sum{{{SQ}}}",
                                 "{{shop}}/{{queue}}")], kind="stat", w=6, h=6),
    panel("Oldest waiting", [target(f"shop_queue:cs_oldest_waiting_seconds:max{{{SQ}}}",
                                    "{{shop}}/{{queue}}")], unit="s", kind="stat", w=6, h=6,
          thresholds=[(None, "green"), (60, "orange"), (120, "red")]),
    panel("Abandonment (15 min)", [target(f"shop_queue:cs_abandonment:ratio_rate15m{{{SQ}}}",
                                          "{{shop}}/{{queue}}")], unit="percentunit", w=6, h=6,
          thresholds=[(None, "green"), (0.1, "red")]),
    panel("Peak hour", [target(f"shop:cs_peak_hour:max{{{SHOP}}}", "{{shop}}")],
          kind="state-timeline", w=6, h=6),
    panel("Concurrent sessions per agent", [
        target(f"shop_agent:cs_agent_open_sessions:sum{{{SHOP}}}", "{{agent}}"),
        target(f"cs_agent_max_concurrency{{{SHOP}}}", "max {{agent}}", "B"),
    ], kind="bargauge", w=12, h=10),
    panel("Staffing: needed vs online (Erlang C, 80 % in 30 s)", [
        target(f"shop:cs_staffing_agents_needed:max{{{SHOP}}}", "needed {{shop}}"),
        target(f"shop:cs_agent_online:sum{{{SHOP}}}", "online {{shop}}", "B"),
        target(f"shop:cs_staffing_gap_agents:max{{{SHOP}}}", "gap {{shop}}", "C"),
    ], w=12, h=10),
    panel("Expected with agents online now", [
        target(f"max by (shop) (cs_staffing_expected_service_level_ratio{{{SHOP}}})",
               "service level {{shop}}"),
        target(f"max by (shop) (cs_staffing_expected_abandon_ratio{{{SHOP}}})",
               "abandonment {{shop}}", "B"),
    ], unit="percentunit", w=12, h=8),
    panel("Staffing inputs", [
        target(f"max by (shop) (cs_staffing_arrival_rate{{{SHOP}}}) * 60",
               "arrivals/min {{shop}}"),
        target(f"max by (shop) (cs_staffing_handle_seconds{{{SHOP}}})", "AHT s {{shop}}", "B"),
        target(f"max by (shop) (cs_staffing_concurrency{{{SHOP}}})", "concurrency {{shop}}",
               "C"),
    ], w=12, h=8),
    # Each channel against its own benchmark (README "First response against channel tiers").
    panel("First response within tier: $channel (1 h)", [target(
        f"shop_channel_tier:cs_first_response_within:ratio_rate1h{{{SC}}}", "{{tier}} {{shop}}")],
        unit="percentunit", w=8, thresholds=PCT_80,
        description="Share of answered waits within the channel's excellent / good / acceptable "
                    "target (email and social in opening hours). Ticket below 80 % within good "
                    "over 6 h.",
        extra={"repeat": "channel", "repeatDirection": "h", "maxPerRow": 3}),
    panel("Within tier today, by queue", [target(
        f"cs_first_response_tier_ratio{{{SC}, window=\"today\"}}",
        "{{shop}}/{{queue}} {{channel}} {{tier}}")], unit="percentunit", kind="bargauge", w=16,
        thresholds=PCT_80),
    panel("Tier targets", [target(
        "channel_tier:cs_first_response_tier_target_seconds:max{channel=~\"$channel\"}",
        "{{channel}} {{tier}}")], unit="s", kind="stat", w=8),
], [SHOP_VAR, QUEUE_VAR, CHANNEL_VAR],
    "Live service level, waiting customers, staffing, each channel against its first-response "
    "tiers; peaks shaded.")

AGENT = dashboard("cs-agents", "Agent scorecard", [
    panel("First response p90 by agent", [target(
        f"histogram_quantile(0.9, sum by (agent, le) (rate(cs_agent_first_response_seconds_bucket"
        f"{{{SHOP}, agent=~\"$agent\"}}[1h])))", "{{agent}}")], unit="s",
        thresholds=[(None, "green"), (30, "red")]),
    panel("Response time avg by agent", [target(
        f"sum by (agent) (rate(cs_agent_response_seconds_sum{{{SHOP}, agent=~\"$agent\"}}[1h]))"
        f" / sum by (agent) (rate(cs_agent_response_seconds_count{{{SHOP}, "
        f"agent=~\"$agent\"}}[1h]))", "{{agent}}")], unit="s"),
    panel("Reply rate (customer messages answered)", [target(
        f"sum by (agent) (increase(cs_agent_customer_messages_concluded_total{{{SHOP}, "
        f"agent=~\"$agent\", outcome=\"answered\"}}[1h])) / sum by (agent) (increase("
        f"cs_agent_customer_messages_concluded_total{{{SHOP}, agent=~\"$agent\"}}[1h]))",
        "{{agent}}")], unit="percentunit"),
    panel("Handle time (AHT, 60 min)", [target(
        f"cs_agent_handle_time_window_seconds{{{SHOP}, agent=~\"$agent\", window=\"60m\"}}",
        "{{agent}}")], unit="s"),
    panel("CSAT today (of 5)", [target(
        f"cs_agent_csat_mean_score{{{SHOP}, agent=~\"$agent\", window=\"today\"}}",
        "{{agent}}")], kind="bargauge", w=8),
    panel("Inquiry conversion today", [target(
        f"cs_agent_conversion_ratio{{{SHOP}, agent=~\"$agent\", window=\"today\"}}",
        "{{agent}}")], unit="percentunit", kind="bargauge", w=8),
    panel("Online rate today", [target(
        f"cs_agent_online_rate_ratio{{{SHOP}, agent=~\"$agent\", window=\"today\"}}",
        "{{agent}}")], unit="percentunit", kind="bargauge", w=8),
    panel("Max concurrent sessions (60 min)", [target(
        f"cs_agent_max_open_sessions{{{SHOP}, agent=~\"$agent\", window=\"60m\"}}",
        "{{agent}}")], kind="bargauge", w=12),
    panel("Slot utilisation (time-weighted, 60 min)", [target(
        f"cs_agent_slot_utilisation_ratio{{{SHOP}, agent=~\"$agent\", window=\"60m\"}}",
        "{{agent}}")], unit="percentunit", w=12),
    # Scorecard row: the seeds' catalogue, live (the month is `cs-pulse scorecard`).
    panel("Conversations handled today", [target(
        f"cs_agent_handled_conversations{{{SHOP}, agent=~\"$agent\", window=\"today\"}}",
        "{{agent}}")], kind="bargauge", w=6),
    panel("Resolution rate today", [target(
        f"cs_agent_resolution_ratio{{{SHOP}, agent=~\"$agent\", window=\"today\"}}",
        "{{agent}}")], unit="percentunit", kind="bargauge", w=6),
    panel("Forbidden phrases today", [target(
        f"cs_agent_forbidden_phrase_uses{{{SHOP}, agent=~\"$agent\", window=\"today\"}}",
        "{{agent}}")], kind="bargauge", w=6, thresholds=[(None, "green"), (1, "orange"),
                                                         (5, "red")]),
    panel("Negative reviews (24 h)", [
        target(f"shop_agent:cs_agent_csat_dissatisfied:increase1d{{{SHOP}, "
               f"agent=~\"$agent\"}}", "{{agent}}"),
        target(f"sum by (agent) (increase(cs_agent_csat_dissatisfied_attitude_total{{{SHOP}, "
               f"agent=~\"$agent\"}}[1d]))", "attitude {{agent}}", "B"),
    ], kind="bargauge", w=6),
    # Customers (接待数) and after-sales: per agent today; the team figure is not a sum.
    panel("Customers received today (接待数)", [
        target(f"cs_agent_received_customers{{{SHOP}, agent=~\"$agent\", window=\"today\"}}",
               "{{agent}}"),
        target(f"cs_team_received_customers{{{SHOP}, window=\"today\"}}", "team {{team}}",
               "B"),
    ], kind="bargauge", w=6),
    panel("Conversion by customers today (咨询转换率)", [target(
        f"cs_agent_customer_conversion_ratio{{{SHOP}, agent=~\"$agent\", window=\"today\"}}",
        "{{agent}}")], unit="percentunit", kind="bargauge", w=6),
    panel("Customers by hour today (分时接待)", [target(
        f"sum by (hour) (cs_agent_customers_received_by_hour{{{SHOP}, agent=~\"$agent\"}})",
        "{{hour}}")], kind="barchart", w=6, extra={"options": {"xField": "hour"}}),
    panel("Refund, return and exchange rates (7 d)", [
        target(f"shop_agent:cs_agent_customer_refund:ratio_increase7d{{{SHOP}, "
               f"agent=~\"$agent\"}}", "refund {{agent}}"),
        target(f"shop_agent:cs_agent_orders_returned:ratio_increase7d{{{SHOP}, "
               f"agent=~\"$agent\"}}", "{{kind}} {{agent}}", "B"),
    ], unit="percentunit", kind="bargauge", w=6),
], [SHOP_VAR, AGENT_VAR], "Per agent: speed, reply rate, handle time, quality and presence; "
   "a live scorecard row (the monthly one is `cs-pulse scorecard`).")

VOLUME = dashboard("cs-volume", "Volume and peaks", [
    panel("Conversations by local hour of day (today)", [target(
        f"sum by (hour) (cs_hourly_volume{{{SQ}, kind=\"conversations\"}})", "{{hour}}")],
        kind="barchart", w=24, extra={"options": {"xField": "hour"}}),
    panel("Hourly heatmap: conversations started per hour", [target(
        f"sum(increase(cs_conversations_total{{{SQ}}}[1h]))", "conversations")],
        kind="heatmap", w=12),
    panel("Arrivals vs capacity (per minute)", [
        target(f"sum by (shop) (shop_queue:cs_queued:rate5m{{{SQ}}}) * 60", "arrivals {{shop}}"),
        target(f"sum by (shop) (cs_agent_max_concurrency{{{SHOP}}} * cs_agent_online{{{SHOP}}})"
               f" / clamp_min(max by (shop) (cs_staffing_handle_seconds{{{SHOP}}}), 1) * 60",
               "capacity {{shop}}", "B"),
    ], w=12),
    panel("Messages per minute by sender", [target(
        f"sum by (sender) (rate(cs_messages_total{{{SQ}}}[5m])) * 60", "{{sender}}")], w=12),
    panel("Peak hour", [target(f"shop:cs_peak_hour:max{{{SHOP}}}", "{{shop}}")],
          kind="state-timeline", w=12),
], [SHOP_VAR, QUEUE_VAR], "When customers come, and whether capacity follows.")

PIPELINE = dashboard("cs-pipeline", "Pipeline health", [
    panel("Events processed per second", [target("job:cs_events_processed:rate5m",
                                                 "{{job}}")]),
    panel("Rejected (dead-letter) per second by reason", [target(
        "job:cs_events_rejected:rate5m", "{{reason}}")]),
    panel("End-to-end lag p99 (now - event time)", [target(
        "job:cs_event_lag_seconds:p99_rate5m", "{{job}}")], unit="s"),
    panel("Consumer lag (messages)", [target("cs_consumer_lag_messages", "{{instance}}")]),
    panel("Last event age", [target("cs_last_event_age_seconds", "{{instance}}")], unit="s",
          thresholds=[(None, "green"), (300, "red")]),
    panel("Workers up", [target('up{job="cs-pulse"}', "{{instance}}")], kind="stat"),
    panel("Owned partitions per worker", [target("cs_owned_event_partitions", "{{instance}}")],
          kind="bargauge"),
    panel("Duplicates and late data", [
        target("sum(rate(cs_events_duplicate_total[5m]))", "duplicate events"),
        target("sum(rate(cs_facts_late_total[5m]))", "late facts", "B"),
        target("sum(rate(cs_events_late_total[5m]))", "late events", "C"),
    ]),
], [], "Is the stream healthy: throughput, rejects, lag, workers.")

DASHBOARDS = {"floor": FLOOR, "agents": AGENT, "volume": VOLUME, "pipeline": PIPELINE}


def render() -> dict[str, str]:
    return {f"{name}.json": json.dumps(d, indent=2, sort_keys=True) + "\n"
            for name, d in DASHBOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")

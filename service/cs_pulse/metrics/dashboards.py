"""Grafana dashboards as typed code (grafana-foundation-sdk builders).

``python -m cs_pulse.metrics.generate`` writes ``grafana/dashboards/*.json``, which Grafana
provisions from ``grafana/provisioning/dashboards/``. A test fails if the committed JSON differs
from :func:`render`, and an end-to-end test runs every query of :func:`queries` against a real
Prometheus scraping a real worker.

Every threshold and every number quoted in a title or description ("30 s", "80 %", "2 min")
comes from the SLO catalogue (:mod:`cs_pulse.metrics.catalogue.slo`), read when the dashboards
are built: a panel names its catalogue key and :func:`threshold_steps` derives the colours, so
no panel can lose its thresholds. The queries use the recording rules of
``deploy/prometheus/rules/recording.yml``.

The SDK is needed only here (the ``dev`` extra); the worker never imports this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from grafana_foundation_sdk.builders import (
    barchart,
    bargauge,
    common,
    dashboard,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

from cs_pulse.metrics.catalogue import slo

OUT_DIR = "grafana/dashboards"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="cs-pulse-prometheus")
GRID_WIDTH = 24

SHOP = 'shop=~"$shop"'
SQ = 'shop=~"$shop", queue=~"$queue"'
SC = 'shop=~"$shop", channel=~"$channel"'
SA = 'shop=~"$shop", agent=~"$agent"'


# --- numbers from the catalogue, as people read them ---------------------------------------


def _num(x: float) -> str:
    return f"{x:g}"


def pct(ratio: float) -> str:
    """0.8 -> '80 %'."""
    return f"{_num(round(ratio * 100, 2))} %"


def duration(seconds: float) -> str:
    """30 -> '30 s', 120 -> '2 min', 5400 -> '1.5 h'."""
    if seconds >= 3600 and seconds % 360 == 0:
        return f"{_num(seconds / 3600)} h"
    if seconds >= 60 and seconds % 6 == 0:
        return f"{_num(seconds / 60)} min"
    return f"{_num(seconds)} s"


def service_level_target() -> str:
    """'80 % in 30 s', the floor target."""
    return (f"{pct(slo.THRESHOLDS['service_level'].critical)} in "
            f"{duration(slo.SERVICE_LEVEL_SECONDS)}")


# --- thresholds ------------------------------------------------------------------------------

BAD, WARN, GOOD = "red", "orange", "green"


def threshold_steps(t: slo.Threshold | None) -> list[model.Threshold]:
    """The colour steps of one catalogue Threshold; the only place steps are made.

    ``below`` (lower is worse): red under the lower level, orange between the two, green from
    the upper one (service level 0.70 / 0.80: red < 70 %, orange, green >= 80 %). Otherwise the
    reverse: green under the lower level, orange between, red from the upper one (oldest
    waiting 60 / 120 s). Without a warning level there is no orange band. ``None`` (no
    catalogue threshold): one neutral green step, so every panel has thresholds.
    """
    if t is None:
        return [model.Threshold(None, GOOD)]
    levels = sorted({t.critical} if t.warning is None else {t.critical, t.warning})
    colours = [BAD, WARN, GOOD] if t.below else [GOOD, WARN, BAD]
    if len(levels) == 1:
        colours = [colours[0], colours[2]]
    values: list[float | None] = [None, *levels]
    return [model.Threshold(v, c) for v, c in zip(values, colours, strict=True)]


def thresholds(key: str | None) -> dashboard.ThresholdsConfig:
    t = None if key is None else slo.THRESHOLDS[key]
    return dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        threshold_steps(t))


def describe_threshold(key: str, fmt: Callable[[float], str]) -> str:
    """'Red ≥ 2 min, orange ≥ 1 min.' for the panel description (Grafana colours a value
    from a step on: >=; below the first step for ``below`` thresholds: <)."""
    t = slo.THRESHOLDS[key]
    word = "<" if t.below else "≥"
    levels = sorted({t.critical} if t.warning is None else {t.critical, t.warning},
                    reverse=not t.below)
    if len(levels) == 1:
        return f"Red {word} {fmt(levels[0])}."
    return f"Red {word} {fmt(levels[0])}, orange {word} {fmt(levels[1])}."


# --- queries, variables, annotation ---------------------------------------------------------


def q(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
            .datasource(DATASOURCE))


class _QueryVariableModel(model.VariableModel):
    """SDK gap: VariableModel has no ``definition`` (the query text Grafana lists in the
    dashboard's variable settings); added to its JSON."""

    definition: str = ""

    def to_json(self) -> dict[str, object]:
        return super().to_json() | {"definition": self.definition}


class _QueryVariable(dashboard.QueryVariable):
    def __init__(self, name: str, definition: str) -> None:
        super().__init__(name)
        self._internal = _QueryVariableModel(name=name, type_val=model.VariableType.QUERY)
        self._internal.definition = definition


def variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    """A multi-value Prometheus ``label_values`` variable with All (= ``.*``)."""
    return (_QueryVariable(name, query).label(label).datasource(DATASOURCE)
            .query({"query": query, "refId": f"{name}-var"})
            .include_all(True).multi(True).all_value(".*")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .current(model.VariableOption(text="All", value="$__all")))


def shop_var() -> dashboard.QueryVariable:
    return variable("shop", "Shop", "label_values(cs_peak_hour, shop)")


def queue_var() -> dashboard.QueryVariable:
    return variable("queue", "Queue", f"label_values(cs_queued_total{{{SHOP}}}, queue)")


def agent_var() -> dashboard.QueryVariable:
    return variable("agent", "Agent", f"label_values(cs_agent_online{{{SHOP}}}, agent)")


def channel_var() -> dashboard.QueryVariable:
    return variable("channel", "Channel",
                    f"label_values(cs_first_response_within_total{{{SHOP}}}, channel)")


class _PromAnnotationModel(model.AnnotationQuery):
    """SDK gap: AnnotationQuery has ``expr`` but no field for the Prometheus annotation's
    ``step``, ``titleFormat`` and ``useValueForTime`` (Grafana 11 still reads them at the top
    level and moves them into the query); added to its JSON."""

    step: str = ""
    title_format: str = ""

    def to_json(self) -> dict[str, object]:
        return super().to_json() | {"step": self.step, "titleFormat": self.title_format,
                                    "useValueForTime": False}


class _PromAnnotation(dashboard.AnnotationQuery):
    def __init__(self, step: str, title_format: str) -> None:
        super().__init__()
        self._internal = _PromAnnotationModel()
        self._internal.step, self._internal.title_format = step, title_format


def peak_annotation() -> dashboard.AnnotationQuery:
    """Peak hours shaded on every time panel."""
    return (_PromAnnotation(step="60s", title_format="peak {{shop}}").name("Peak hours")
            .datasource(DATASOURCE).enable(True).icon_color("rgba(255, 152, 48, 0.25)")
            .expr(f"shop:cs_peak_hour:max{{{SHOP}}} == 1"))


# --- panels ----------------------------------------------------------------------------------

AnyPanel = (timeseries.Panel | stat.Panel | bargauge.Panel | barchart.Panel | heatmap.Panel
            | statetimeline.Panel)
P = TypeVar("P", bound=AnyPanel)


@dataclass
class Board:
    """One dashboard's panels, laid out left to right and wrapped at the grid's width, and
    which catalogue threshold each panel shows."""

    uid: str
    title: str
    description: str
    variables: list[dashboard.QueryVariable]
    panels: list[AnyPanel] = field(default_factory=list)
    threshold_keys: dict[str, str] = field(default_factory=dict)
    _x: int = field(default=0, init=False, repr=False)
    _y: int = field(default=0, init=False, repr=False)
    _row_h: int = field(default=0, init=False, repr=False)

    def add(self, panel: P, title: str, targets: Sequence[prometheus.Dataquery], *,
            unit: str = "short", w: int = 12, h: int = 8, threshold: str | None = None,
            description: str = "") -> P:
        if self._x + w > GRID_WIDTH:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = model.GridPos(h=h, w=w, x=self._x, y=self._y)
        self._x += w
        self._row_h = max(self._row_h, h)
        if threshold is not None:
            self.threshold_keys[title] = threshold
        # The builders set in place (each call returns the same builder).
        (panel.id(len(self.panels) + 1).title(title).description(description)
         .datasource(DATASOURCE).targets(list(targets)).unit(unit)
         .thresholds(thresholds(threshold)).grid_pos(pos))
        if threshold is not None and isinstance(panel, timeseries.Panel):
            # A time series draws its catalogue threshold as a line (colours alone show
            # nothing there).
            panel.thresholds_style(common.GraphThresholdsStyleConfig().mode(
                common_model.GraphThresholdsStyleMode.LINE))
        self.panels.append(panel)
        return panel

    def build(self) -> model.Dashboard:
        b = (dashboard.Dashboard(self.title).uid(self.uid).description(self.description)
             .tags(["cs-pulse"]).timezone("browser").editable().version(1).refresh("10s")
             .time("now-6h", "now").variables(list(self.variables))
             .annotations([peak_annotation()]))
        for p in self.panels:
            b.with_panel(p)
        return b.build()


def barchart_by(x_field: str) -> barchart.Panel:
    """The SDK's bar chart options come with a hidden legend and ascending tooltip sort;
    Grafana's defaults are set back explicitly."""
    return (barchart.Panel().x_field(x_field)
            .legend(common.VizLegendOptions().show_legend(True)
                    .display_mode(common_model.LegendDisplayMode.LIST)
                    .placement(common_model.LegendPlacement.BOTTOM))
            .tooltip(common.VizTooltipOptions().mode(common_model.TooltipDisplayMode.SINGLE)
                     .sort(common_model.SortOrder.NONE)))


def floor() -> Board:
    sl_s = duration(slo.SERVICE_LEVEL_SECONDS)
    b = Board("cs-floor", "Floor board",
              "Live service level, waiting customers, staffing, each channel against its "
              "first-response tiers; peaks shaded.", [shop_var(), queue_var(), channel_var()])
    sl = slo.THRESHOLDS["service_level"]
    b.add(timeseries.Panel(), f"Service level {sl_s} vs {pct(sl.critical)} target", [
        q(f"shop_queue:cs_service_level:ratio_rate5m{{{SQ}}}", "{{shop}}/{{queue}}"),
        q(f"shop:cs_service_level:ratio_rate5m{{{SHOP}}}", "{{shop}} all queues", "B"),
    ], unit="percentunit", threshold="service_level",
        description=f"Answered within {sl_s} / (answered + abandoned after "
                    f"{duration(slo.SHORT_ABANDON_SECONDS)}). "
                    + describe_threshold("service_level", pct)).min(0).max(1)
    b.add(timeseries.Panel(), "First response p50 / p90", [
        q(f"shop_queue:cs_first_response_seconds:p50_rate5m{{{SQ}}}", "p50 {{shop}}/{{queue}}"),
        q(f"shop_queue:cs_first_response_seconds:p90_rate5m{{{SQ}}}", "p90 {{shop}}/{{queue}}",
          "B"),
    ], unit="s", threshold="first_response_p90_seconds",
        description=describe_threshold("first_response_p90_seconds", duration))
    b.add(stat.Panel(), "Waiting now", [
        q(f"shop_queue:cs_waiting_conversations:sum{{{SQ}}}", "{{shop}}/{{queue}}")], w=6, h=6)
    b.add(stat.Panel(), "Oldest waiting", [
        q(f"shop_queue:cs_oldest_waiting_seconds:max{{{SQ}}}", "{{shop}}/{{queue}}")],
        unit="s", w=6, h=6, threshold="oldest_waiting_seconds",
        description=describe_threshold("oldest_waiting_seconds", duration))
    b.add(timeseries.Panel(), "Abandonment (15 min)", [
        q(f"shop_queue:cs_abandonment:ratio_rate15m{{{SQ}}}", "{{shop}}/{{queue}}")],
        unit="percentunit", w=6, h=6, threshold="abandonment",
        description=describe_threshold("abandonment", pct))
    b.add(statetimeline.Panel(), "Peak hour", [
        q(f"shop:cs_peak_hour:max{{{SHOP}}}", "{{shop}}")], w=6, h=6)
    b.add(stat.Panel(), "Partitions without a serving worker", [
        q("job:cs_fact_partitions_unserved:count", "unserved")], w=6, h=6,
        description="Facts partitions no ready worker serves: while above 0, the shops "
                    "hashed there show no data (a takeover under way; CsPartitionsUnserved "
                    "pages after 3 minutes).")
    b.add(bargauge.Panel(), "Concurrent sessions per agent", [
        q(f"shop_agent:cs_agent_open_sessions:sum{{{SHOP}}}", "{{agent}}"),
        q(f"cs_agent_max_concurrency{{{SHOP}}}", "max {{agent}}", "B"),
    ], w=12, h=10)
    b.add(timeseries.Panel(), f"Staffing: needed vs online (Erlang C, {service_level_target()})",
          [q(f"shop:cs_staffing_agents_needed:max{{{SHOP}}}", "needed {{shop}}"),
           q(f"shop:cs_agent_online:sum{{{SHOP}}}", "online {{shop}}", "B"),
           q(f"shop:cs_staffing_gap_agents:max{{{SHOP}}}", "gap {{shop}}", "C")], w=12, h=10)
    b.add(timeseries.Panel(), "Expected with agents online now", [
        q(f"max by (shop) (cs_staffing_expected_service_level_ratio{{{SHOP}}})",
          "service level {{shop}}"),
        q(f"max by (shop) (cs_staffing_expected_abandon_ratio{{{SHOP}}})",
          "abandonment {{shop}}", "B"),
    ], unit="percentunit")
    b.add(timeseries.Panel(), "Staffing inputs", [
        q(f"max by (shop) (cs_staffing_arrival_rate{{{SHOP}}}) * 60", "arrivals/min {{shop}}"),
        q(f"max by (shop) (cs_staffing_handle_seconds{{{SHOP}}})", "AHT s {{shop}}", "B"),
        q(f"max by (shop) (cs_staffing_concurrency{{{SHOP}}})", "concurrency {{shop}}", "C"),
    ])
    # Each channel against its own benchmark (README "First response against channel tiers").
    tier = slo.THRESHOLDS["first_response_tier"]
    b.add(timeseries.Panel(), "First response within tier: $channel (1 h)", [
        q(f"shop_channel_tier:cs_first_response_within:ratio_rate1h{{{SC}}}",
          "{{tier}} {{shop}}")], unit="percentunit", w=8, threshold="first_response_tier",
        description="Share of answered waits within the channel's excellent / good / "
                    "acceptable target (email and social in opening hours). Ticket below "
                    f"{pct(tier.critical)} within good over 6 h. "
                    + describe_threshold("first_response_tier", pct),
    ).repeat("channel").repeat_direction("h").max_per_row(3)
    b.add(bargauge.Panel(), "Within tier today, by queue", [
        q(f'cs_first_response_tier_ratio{{{SC}, window="today"}}',
          "{{shop}}/{{queue}} {{channel}} {{tier}}")], unit="percentunit", w=16,
        threshold="first_response_tier")
    b.add(stat.Panel(), "Tier targets", [
        q('channel_tier:cs_first_response_tier_target_seconds:max{channel=~"$channel"}',
          "{{channel}} {{tier}}")], unit="s", w=8)
    return b


def agents() -> Board:
    b = Board("cs-agents", "Agent scorecard",
              "Per agent: speed, reply rate, handle time, quality and presence; a live "
              "scorecard row (the monthly one is `cs-pulse scorecard`).", [shop_var(), agent_var()])
    b.add(timeseries.Panel(), "First response p90 by agent", [q(
        f'cs_agent_first_response_window_seconds{{{SA}, window="60m", stat="p90"}}',
        "{{agent}}")], unit="s", threshold="first_response_p90_seconds",
        description=describe_threshold("first_response_p90_seconds", duration))
    b.add(timeseries.Panel(), "Response time avg by agent", [q(
        f"sum by (agent) (rate(cs_agent_response_seconds_sum{{{SA}}}[1h]))"
        f" / sum by (agent) (rate(cs_agent_response_seconds_count{{{SA}}}[1h]))", "{{agent}}")],
        unit="s")
    b.add(timeseries.Panel(), "Reply rate (customer messages answered)", [q(
        f"sum by (agent) (increase(cs_agent_customer_messages_concluded_total{{{SA}, "
        f'outcome="answered"}}[1h])) / sum by (agent) (increase('
        f"cs_agent_customer_messages_concluded_total{{{SA}}}[1h]))", "{{agent}}")],
        unit="percentunit", threshold="reply_rate",
        description=describe_threshold("reply_rate", pct))
    b.add(timeseries.Panel(), "Handle time (AHT, 60 min)", [q(
        f'cs_agent_handle_time_window_seconds{{{SA}, window="60m"}}', "{{agent}}")], unit="s")
    b.add(bargauge.Panel(), "CSAT today (of 5)", [q(
        f'cs_agent_csat_mean_score{{{SA}, window="today"}}', "{{agent}}")], w=8)
    b.add(bargauge.Panel(), "Inquiry conversion today", [q(
        f'cs_agent_conversion_ratio{{{SA}, window="today"}}', "{{agent}}")],
        unit="percentunit", w=8)
    b.add(bargauge.Panel(), "Online rate today", [q(
        f'cs_agent_online_rate_ratio{{{SA}, window="today"}}', "{{agent}}")],
        unit="percentunit", w=8)
    b.add(bargauge.Panel(), "Max concurrent sessions (60 min)", [q(
        f'cs_agent_max_open_sessions{{{SA}, window="60m"}}', "{{agent}}")], w=12)
    b.add(timeseries.Panel(), "Slot utilisation (time-weighted, 60 min)", [q(
        f'cs_agent_slot_utilisation_ratio{{{SA}, window="60m"}}', "{{agent}}")],
        unit="percentunit", w=12)
    # Scorecard row: the seeds' catalogue, live (the month is `cs-pulse scorecard`).
    b.add(bargauge.Panel(), "Conversations handled today", [q(
        f'cs_agent_handled_conversations{{{SA}, window="today"}}', "{{agent}}")], w=6)
    b.add(bargauge.Panel(), "Resolution rate today", [q(
        f'cs_agent_resolution_ratio{{{SA}, window="today"}}', "{{agent}}")],
        unit="percentunit", w=6)
    b.add(bargauge.Panel(), "Forbidden phrases today", [q(
        f'cs_agent_forbidden_phrase_uses{{{SA}, window="today"}}', "{{agent}}")], w=6,
        threshold="forbidden_phrases_per_day",
        description=describe_threshold("forbidden_phrases_per_day", _num))
    b.add(bargauge.Panel(), "Negative reviews (24 h)", [
        q(f"shop_agent:cs_agent_csat_dissatisfied:increase1d{{{SA}}}", "{{agent}}"),
        q(f"sum by (agent) (increase(cs_agent_csat_dissatisfied_attitude_total{{{SA}}}[1d]))",
          "attitude {{agent}}", "B"),
    ], w=6)
    # Customers (接待数) and after-sales: per agent today; the team figure is not a sum.
    b.add(bargauge.Panel(), "Customers received today (接待数)", [
        q(f'cs_agent_received_customers{{{SA}, window="today"}}', "{{agent}}"),
        q(f'cs_team_received_customers{{{SHOP}, window="today"}}', "team {{team}}", "B"),
    ], w=6)
    b.add(bargauge.Panel(), "Conversion by customers today (咨询转换率)", [q(
        f'cs_agent_customer_conversion_ratio{{{SA}, window="today"}}', "{{agent}}")],
        unit="percentunit", w=6)
    b.add(barchart_by("hour"), "Customers by hour today (分时接待)", [q(
        f"sum by (hour) (cs_agent_customers_received_by_hour{{{SA}}})", "{{hour}}")], w=6)
    b.add(bargauge.Panel(), "Refund, return and exchange rates (7 d)", [
        q(f"shop_agent:cs_agent_customer_refund:ratio_increase7d{{{SA}}}", "refund {{agent}}"),
        q(f"shop_agent:cs_agent_orders_returned:ratio_increase7d{{{SA}}}", "{{kind}} {{agent}}",
          "B"),
    ], unit="percentunit", w=6)
    return b


def volume() -> Board:
    b = Board("cs-volume", "Volume and peaks",
              "When customers come, and whether capacity follows.", [shop_var(), queue_var()])
    b.add(barchart_by("hour"), "Conversations by local hour of day (today)", [q(
        f'sum by (hour) (cs_hourly_volume{{{SQ}, kind="conversations"}})', "{{hour}}")], w=24)
    b.add(heatmap.Panel(), "Hourly heatmap: conversations started per hour", [q(
        f"sum(increase(cs_conversations_total{{{SQ}}}[1h]))", "conversations")], w=12)
    b.add(timeseries.Panel(), "Arrivals vs capacity (per minute)", [
        q(f"sum by (shop) (shop_queue:cs_queued:rate5m{{{SQ}}}) * 60", "arrivals {{shop}}"),
        q(f"sum by (shop) (cs_agent_max_concurrency{{{SHOP}}} * cs_agent_online{{{SHOP}}})"
          f" / clamp_min(max by (shop) (cs_staffing_handle_seconds{{{SHOP}}}), 1) * 60",
          "capacity {{shop}}", "B"),
    ], w=12)
    b.add(timeseries.Panel(), "Messages per minute by sender", [q(
        f"sum by (sender) (rate(cs_messages_total{{{SQ}}}[5m])) * 60", "{{sender}}")], w=12)
    b.add(statetimeline.Panel(), "Peak hour", [q(f"shop:cs_peak_hour:max{{{SHOP}}}", "{{shop}}")],
          w=12)
    return b


def pipeline() -> Board:
    b = Board("cs-pipeline", "Pipeline health",
              "Is the stream healthy: throughput, rejects, lag, workers.", [shop_var()])
    b.add(timeseries.Panel(), "Events processed per second", [
        q("job:cs_events_processed:rate5m", "{{job}}")])
    b.add(timeseries.Panel(), "Rejected (dead-letter) per second by reason", [
        q("job:cs_events_rejected:rate5m", "{{reason}}")])
    b.add(timeseries.Panel(), "End-to-end lag p99 (now - event time)", [
        q("job:cs_event_lag_seconds:p99_rate5m", "{{job}}")], unit="s")
    b.add(timeseries.Panel(), "Consumer lag (messages)", [
        q("cs_consumer_lag_messages", "{{instance}}")])
    b.add(timeseries.Panel(), "Last event age", [
        q("cs_last_event_age_seconds", "{{instance}}")], unit="s",
        threshold="last_event_age_seconds",
        description=describe_threshold("last_event_age_seconds", duration))
    b.add(stat.Panel(), "Workers up", [q('up{job="cs-pulse"}', "{{instance}}")])
    b.add(bargauge.Panel(), "Owned partitions per worker", [
        q("cs_owned_event_partitions", "{{instance}}")])
    b.add(timeseries.Panel(), "Duplicates and late data", [
        q("sum(rate(cs_events_duplicate_total[5m]))", "duplicate events"),
        q("sum(rate(cs_facts_late_total[5m]))", "late facts", "B"),
        q("sum(rate(cs_events_late_total[5m]))", "late events", "C"),
    ])
    return b


BOARDS: dict[str, Callable[[], Board]] = {
    "floor": floor, "agents": agents, "volume": volume, "pipeline": pipeline}


def boards() -> dict[str, Board]:
    """Dashboard name -> its Board, built now from the catalogue as it is now."""
    return {name: make() for name, make in BOARDS.items()}


def _as_json(d: model.Dashboard) -> dict[str, object]:
    out: dict[str, object] = json.loads(json.dumps(d, cls=JSONEncoder))
    return out


def dashboards() -> dict[str, dict[str, object]]:
    """Dashboard name -> its JSON model (plain dicts)."""
    return {name: _as_json(b.build()) for name, b in boards().items()}


def render() -> dict[str, str]:
    """Repo-relative path -> the dashboard's JSON text, as committed."""
    return {f"{OUT_DIR}/{name}.json": json.dumps(d, indent=2, sort_keys=True) + "\n"
            for name, d in dashboards().items()}


def threshold_keys() -> dict[str, dict[str, str]]:
    """Dashboard file name -> {panel title: the THRESHOLDS key its thresholds come from}."""
    return {f"{name}.json": b.threshold_keys for name, b in boards().items()}


_LABEL_VALUES = re.compile(r"label_values\((.*),\s*\w+\)")


def queries() -> dict[str, list[str]]:
    """Dashboard file name -> every PromQL expression in its panels, variables (the series
    selector inside ``label_values``) and annotations, with the ``$variables`` left in."""
    out: dict[str, list[str]] = {}
    for name, b in boards().items():
        d = b.build()
        exprs: list[str] = []
        for p in d.panels or []:
            if isinstance(p, model.Panel):
                exprs += [t.expr for t in p.targets or []
                          if isinstance(t, prometheus_model.Dataquery)]
        for v in d.templating.list_val or []:
            query = v.query["query"] if isinstance(v.query, dict) else v.query
            m = _LABEL_VALUES.fullmatch(str(query))
            if m is None:
                raise ValueError(f"{name}: variable {v.name} is not label_values(...): {query}")
            exprs.append(m.group(1))
        exprs += [a.expr for a in d.annotations.list_val or [] if a.expr]
        out[f"{name}.json"] = exprs
    return out


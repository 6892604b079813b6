"""Custom prometheus_client collector: yields metric families at scrape time from the state of
the partitions this worker owns, so a partition that moves away stops being exported here.

Naming: base units, ``_seconds``, ``_ratio``, ``_total``; labels shop/queue/channel for queue
metrics (``cs_*``), shop/team/agent for agent metrics (``cs_agent_*``); never customer or
conversation ids. Ratios carry a ``window`` label (1m, 5m, 15m, 60m, today).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from cs_pulse.domain.aggregate import HOURLY_KINDS, Aggregator
from cs_pulse.domain.catalogue import HISTOGRAMS
from cs_pulse.domain.kpis import hist_counts, hist_stats, kpis
from cs_pulse.domain.model import series_labels
from cs_pulse.domain.staffing import recommend
from cs_pulse.engine import Engine
from cs_pulse.pipeline import LAG_BUCKETS, PipelineStats
from cs_pulse.settings import Settings

QUEUE_LABELS = ["shop", "queue", "channel"]
AGENT_LABELS = ["shop", "team", "agent"]

# Counters from totals: (name suffix, help, extra label, {label value: fact kind}).
COUNTERS: list[tuple[str, str, str, dict[str, str]]] = [
    ("conversations_total", "Conversations started.", "", {"": "conversations"}),
    ("queued_total", "Human-wait segments begun (start, bot hand-off, reopen).", "",
     {"": "queued"}),
    ("messages_total", "Messages by sender.", "sender",
     {"customer": "customer_messages", "agent": "agent_messages", "bot": "bot_messages"}),
    ("message_characters_total", "Message characters by sender.", "sender",
     {"customer": "customer_chars", "agent": "agent_chars"}),
    ("runs_total", "Customer message runs, concluded (answered, or unanswered at close).",
     "outcome", {"answered": "runs_answered", "unanswered": "runs_unanswered"}),
    ("conversations_ended_total", "Conversations closed.", "", {"": "ended"}),
    ("conversations_replied_total", "Closed conversations with at least one human reply.", "",
     {"": "ended_replied"}),
    ("service_level_contacts_total",
     "Service-level outcomes: answered within/after 30 s, abandoned within/after 5 s.",
     "outcome", {"answered_within": "sl_answered_within", "answered_after": "sl_answered_after",
                 "abandoned_within": "sl_abandoned_within",
                 "abandoned_after": "sl_abandoned_after"}),
    ("abandoned_total", "Customers who left before any human reply.", "", {"": "abandoned"}),
    ("short_abandoned_total", "Abandons within 5 s.", "", {"": "abandoned_short"}),
    ("transferred_total", "Conversations transferred at least once.", "", {"": "transferred"}),
    ("escalated_total", "Conversations escalated at least once.", "", {"": "escalated"}),
    ("reopened_total", "Conversations reopened.", "", {"": "reopened"}),
    ("resolved_total", "Conversations closed as resolved.", "", {"": "resolved"}),
    ("resolved_reopened_total", "Resolved conversations reopened within 24 h.", "",
     {"": "resolved_reopened"}),
    ("csat_satisfied_total", "Ratings >= 4 of 5.", "", {"": "csat_ge4"}),
    ("served_total", "Conversations with a first human reply (inquiries served).", "",
     {"": "served"}),
    ("converted_total", "Served conversations with an attributed payment within 24 h.", "",
     {"": "converted"}),
    ("attributed_gmv_total", "GMV of attributed payments (shop currency).", "", {"": "gmv"}),
    ("late_corrections_total", "Out-of-order events that could not rewrite a published value.",
     "", {"": "late_corrections"}),
]
HISTOGRAM_NAMES = {
    "first_response": ("first_response_seconds", "Time to first human reply."),
    "response": ("response_seconds", "First message of a customer run to the next agent reply."),
    "abandon_wait": ("abandon_wait_seconds", "Wait before abandoning."),
    "handle": ("handle_seconds", "Assigned to closed."),
    "csat": ("csat_score", "Ratings normalised to 5."),
}
WINDOW_GAUGES: dict[str, tuple[str, str]] = {
    "reply_rate": ("reply_rate_ratio", "Customer runs answered / runs concluded."),
    "conversation_reply_rate": ("conversation_reply_rate_ratio",
                                "Closed conversations with a human reply / closed."),
    "service_level": ("service_level_ratio",
                      "Answered within 30 s / (answered + abandoned after 5 s)."),
    "abandonment": ("abandonment_ratio", "Abandoned before a human reply / queued."),
    "short_abandonment": ("short_abandonment_ratio", "Abandoned within 5 s / queued."),
    "transfer": ("transfer_ratio", "Transferred / conversations."),
    "escalation": ("escalation_ratio", "Escalated / conversations."),
    "fcr": ("first_contact_resolution_ratio", "Resolved and not reopened in 24 h / resolved."),
    "csat": ("csat_mean_score", "Mean rating normalised to 5."),
    "csat_satisfied": ("csat_satisfied_ratio", "Ratings >= 4 / ratings."),
    "attitude_positive": ("attitude_positive_ratio", "Positive attitude / attitude ratings."),
    "conversion": ("conversion_ratio", "Converted / served."),
    "aht_seconds": ("handle_time_window_seconds", "Mean handle time (assigned to closed)."),
    "slot_utilisation": ("slot_utilisation_ratio",
                         "Time-weighted open sessions / max concurrency while online."),
    "online_rate": ("online_rate_ratio", "Online seconds / (last online - first online)."),
}


class _Families:
    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def gauge(self, name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = GaugeMetricFamily(name, doc, labels=labels)
        return fam  # type: ignore[return-value]

    def counter(self, name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = CounterMetricFamily(name, doc, labels=labels)
        return fam  # type: ignore[return-value]

    def histogram(self, name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = HistogramMetricFamily(name, doc, labels=labels)
        return fam  # type: ignore[return-value]


def _bounds(b: float) -> str:
    return str(int(b)) if b == int(b) else str(b)


class KpiCollector(Collector):
    def __init__(self, owned: Callable[[], Iterable[Aggregator]], pipeline: PipelineStats,
                 settings: Settings, extra: Callable[[], dict[str, Any]] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.owned = owned
        self.pipeline = pipeline
        self.settings = settings
        self.extra = extra or (lambda: {})
        self.wall = wall

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: families depend on the data

    def collect(self) -> Iterator[Metric]:
        fams = _Families()
        wall = self.wall()
        for agg in self.owned():
            now = agg.clock.now(wall)
            for series in agg.series():
                shop, queue, channel, team, agent = series_labels(series)
                if agent:
                    self._series(fams, agg, series, now, "cs_agent_", AGENT_LABELS,
                                 [shop, team, agent])
                elif queue or channel:
                    self._series(fams, agg, series, now, "cs_", QUEUE_LABELS,
                                 [shop, queue, channel])
                else:
                    self._shop(fams, agg, series, now, shop)
            fams.counter("cs_facts_duplicate_total", "Re-sent facts dropped.", []).add_metric(
                [], agg.stats.get("duplicate_facts", 0.0))
            fams.counter("cs_facts_late_total",
                         "Facts older than every rolling window (kept in totals and today).",
                         []).add_metric([], agg.stats.get("late_facts", 0.0))
        self._pipeline(fams, wall)
        yield from fams.families.values()

    # --- per series ---------------------------------------------------------------------------

    def _series(self, fams: _Families, agg: Aggregator, series: str, now: float, prefix: str,
                names: list[str], values: list[str]) -> None:
        totals = agg.totals.get(series, {})
        for suffix, doc, extra, kinds in COUNTERS:
            labels = names + ([extra] if extra else [])
            for label_value, kind in kinds.items():
                if kind in totals:
                    fam = fams.counter(prefix + suffix[: -len("_total")], doc, labels)
                    fam.add_metric(values + ([label_value] if extra else []), totals[kind])
        for kind, (suffix, doc) in HISTOGRAM_NAMES.items():
            if f"{kind}:count" not in totals:
                continue
            per_bucket = hist_counts(totals, kind)
            cumulative, buckets = 0.0, []
            for bound, c in zip([*HISTOGRAMS[kind], float("inf")], per_bucket, strict=True):
                cumulative += c
                buckets.append(("+Inf" if bound == float("inf") else _bounds(bound), cumulative))
            fams.histogram(prefix + suffix, doc, names).add_metric(
                values, buckets, totals[f"{kind}:sum"])
        self._live(fams, agg, series, now, prefix, names, values)
        for window, counts in agg.windows(series, now).items():
            wl = [*names, "window"]
            wv = [*values, window]
            for key, value in kpis(counts).items():
                if value is not None:
                    name, doc = WINDOW_GAUGES[key]
                    fams.gauge(prefix + name, doc, wl).add_metric(wv, value)
            for kind, label in (("first_response", "first_response"), ("response", "response")):
                stats = hist_stats(counts, kind)
                stat_fam = fams.gauge(f"{prefix}{label}_window_seconds",
                                 f"{label.replace('_', ' ')} p50/p90/avg over the window.",
                                 [*wl, "stat"])
                for stat, value in stats.items():
                    if value is not None:
                        stat_fam.add_metric([*wv, stat], value)
            if prefix == "cs_agent_" and "max_open" in counts:
                fams.gauge("cs_agent_max_open_sessions",
                           "Most conversations open at once in the window.", wl).add_metric(
                    wv, counts["max_open"])
            if window == "today":
                self._today(fams, counts, prefix, names, values)

    def _live(self, fams: _Families, agg: Aggregator, series: str, now: float, prefix: str,
              names: list[str], values: list[str]) -> None:
        live = agg.live.get(series)
        waiting = live.waiting if live is not None else {}
        fams.gauge(prefix + "waiting_conversations",
                   "Customers waiting now for a first or next reply.", names).add_metric(
            values, float(len(waiting)))
        fams.gauge(prefix + "oldest_waiting_seconds", "Age of the oldest wait (0 if none).",
                   names).add_metric(values, max(0.0, now - min(waiting.values()))
                                     if waiting else 0.0)
        if prefix != "cs_agent_" or live is None:
            return
        fams.gauge("cs_agent_open_sessions", "Conversations open now (concurrent sessions).",
                   names).add_metric(values, float(len(live.sessions)))
        fams.gauge("cs_agent_max_concurrency", "Configured max concurrent chats.",
                   names).add_metric(values, live.max_concurrency)
        fams.gauge("cs_agent_online", "1 while online or busy.", names).add_metric(
            values, 1.0 if live.online else 0.0)
        if live.max_concurrency > 0 and live.online:
            fams.gauge("cs_agent_slot_utilisation_now_ratio", "Open sessions / max concurrency.",
                       names).add_metric(values, len(live.sessions) / live.max_concurrency)

    def _today(self, fams: _Families, counts: dict[str, float], prefix: str,
               names: list[str], values: list[str]) -> None:
        if prefix == "cs_":
            fam = fams.gauge("cs_hourly_volume",
                             "Today's volume by local hour of day.", [*names, "hour", "kind"])
            for key, v in counts.items():
                kind, sep, hour = key.partition("@")
                if sep and kind in HOURLY_KINDS:
                    fam.add_metric([*values, hour, kind], v)
            return
        if "online_seconds" in counts or "first_online" in counts:
            online = counts.get("online_seconds", 0.0)
            fams.gauge("cs_agent_online_today_seconds", "Seconds online or busy today.",
                       names).add_metric(values, online)
            fams.gauge("cs_agent_logins_today", "Logins (offline -> available) today.",
                       names).add_metric(values, counts.get("logins", 0.0))
        if "first_online" in counts:
            first, last = counts["first_online"], counts["last_online"]
            fams.gauge("cs_agent_first_online_timestamp_seconds", "First online today.",
                       names).add_metric(values, first)
            fams.gauge("cs_agent_last_online_timestamp_seconds", "Last online today.",
                       names).add_metric(values, last)
            fams.gauge("cs_agent_offline_during_shift_today_seconds",
                       "Not online between first and last online today.", names).add_metric(
                values, max(0.0, (last - first) - counts.get("online_seconds", 0.0)))

    # --- per shop -------------------------------------------------------------------------------

    def _shop(self, fams: _Families, agg: Aggregator, series: str, now: float, shop: str) -> None:
        cal = self.settings.calendars.for_shop(shop)
        fams.gauge("cs_peak_hour", "1 while the shop's peak calendar is active (local time).",
                   ["shop"]).add_metric([shop], 1.0 if cal.is_peak(now) else 0.0)
        totals = agg.totals.get(series, {})
        if "orders_unattributed" in totals:
            fams.counter("cs_orders_unattributed", "Paid orders without a conversation.",
                         ["shop"]).add_metric([shop], totals["orders_unattributed"])
        windows = agg.windows(series, now)
        live = agg.live.get(series)
        roster = live.roster if live is not None else {}
        arrivals = windows["15m"].get("queued", 0.0) / 900.0
        hour = windows["60m"]
        aht = (kpis(hour)["aht_seconds"] or kpis(windows["today"])["aht_seconds"] or 0.0)
        waited = hour.get("first_response:sum", 0.0) + hour.get("abandon_wait:sum", 0.0)
        abandoned = hour.get("abandoned", 0.0)
        patience = waited / abandoned if abandoned > 0 else None
        concurrency = sum(roster.values()) / len(roster) if roster else 1.0
        rec = recommend(arrivals, aht, len(roster), concurrency,
                        self.settings.sl_target_level, self.settings.sl_target_seconds, patience)
        g = [shop]
        fams.gauge("cs_staffing_arrival_rate", "Arrivals per second (15 m).", ["shop"]) \
            .add_metric(g, arrivals)
        fams.gauge("cs_staffing_handle_seconds", "Mean handle time used (60 m).", ["shop"]) \
            .add_metric(g, aht)
        fams.gauge("cs_staffing_concurrency", "Effective chats per agent (mean max).",
                   ["shop"]).add_metric(g, concurrency)
        fams.gauge("cs_staffing_agents_online", "Agents online or busy now.", ["shop"]) \
            .add_metric(g, float(len(roster)))
        if aht > 0:
            fams.gauge("cs_staffing_agents_needed",
                       "Erlang C agents needed for the service-level target.", ["shop"]) \
                .add_metric(g, float(rec.agents_needed))
            fams.gauge("cs_staffing_gap_agents", "Agents needed - agents online.", ["shop"]) \
                .add_metric(g, float(rec.gap))
        if rec.expected_service_level is not None:
            fams.gauge("cs_staffing_expected_service_level_ratio",
                       "Erlang C service level with the agents online now.", ["shop"]) \
                .add_metric(g, rec.expected_service_level)
        if rec.expected_asa_seconds is not None and rec.expected_asa_seconds != float("inf"):
            fams.gauge("cs_staffing_expected_asa_seconds",
                       "Erlang C average speed of answer with the agents online now.",
                       ["shop"]).add_metric(g, rec.expected_asa_seconds)
        if rec.expected_abandon is not None:
            fams.gauge("cs_staffing_expected_abandon_ratio",
                       "Erlang A abandonment with the agents online now.", ["shop"]) \
                .add_metric(g, rec.expected_abandon)
        if patience is not None:
            fams.gauge("cs_staffing_patience_seconds", "Estimated mean customer patience.",
                       ["shop"]).add_metric(g, patience)

    # --- pipeline ------------------------------------------------------------------------------

    def _pipeline(self, fams: _Families, wall: float) -> None:
        p = self.pipeline
        fam = fams.counter("cs_events_processed", "Valid events processed.", ["type"])
        for t, v in sorted(p.processed.items()):
            fam.add_metric([t], v)
        fam = fams.counter("cs_events_rejected", "Events sent to the dead-letter topic.",
                           ["reason"])
        for r, v in sorted(p.rejected.items()):
            fam.add_metric([r], v)
        fams.counter("cs_events_duplicate", "Events with an already-applied event_id.", []) \
            .add_metric([], p.duplicates)
        fams.counter("cs_input_replayed_records", "Records re-delivered after a restart or "
                     "rebalance, dropped before decoding.", []).add_metric([], p.replayed_records)
        fams.counter("cs_input_rewinds", "Consumer rewinds after a gap in the offsets.", []) \
            .add_metric([], p.rewinds)
        fams.counter("cs_input_lost_records", "Records deleted by retention before they were "
                     "processed.", []).add_metric([], p.lost_records)
        cumulative, buckets = 0.0, []
        for bound, c in zip([*LAG_BUCKETS, float("inf")], p.lag_buckets, strict=True):
            cumulative += c
            buckets.append(("+Inf" if bound == float("inf") else _bounds(bound), cumulative))
        fams.histogram("cs_event_lag_seconds", "Processing time minus event time.", []) \
            .add_metric([], buckets, p.lag_sum)
        if p.last_event_wall is not None:
            fams.gauge("cs_last_event_age_seconds", "Seconds since the last event was consumed.",
                       []).add_metric([], max(0.0, wall - p.last_event_wall))
        for name, value in self.extra().items():
            fams.gauge(name, name.replace("_", " "), []).add_metric([], float(value))


def engine_registry(engine: Engine, settings: Settings,
                    extra: Callable[[], dict[str, Any]] | None = None) -> CollectorRegistry:
    """A registry serving what a worker holding ``engine`` exports (its owned partitions)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(lambda: list(engine.aggregators.values()), engine.pipeline,
                                   settings, extra=extra))
    return registry

"""Custom prometheus_client collector: yields metric families at scrape time from the state of
the partitions this worker owns, so a partition that moves away stops being exported here.

Naming: base units, ``_seconds``, ``_ratio``, ``_total``; labels shop/queue/channel for queue
metrics (``cs_*``), shop/team/agent for agent metrics (``cs_agent_*``), shop for shop metrics;
never customer or conversation ids. Window gauges carry ``window`` (1m, 5m, 15m, 60m, today).
Every number is defined in the README's "Metric definitions"; ``cs-pulse audit`` recomputes
them from the raw events.
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

from cs_pulse.domain.aggregate import Aggregator, Counts, Live, window_starts
from cs_pulse.domain.facts import CUSTOMER_HOUR_KINDS, HISTOGRAMS, HOURLY_KINDS, REFUND_REASONS
from cs_pulse.domain.kpis import (
    customer_kpis,
    hist_counts,
    hist_stats,
    kpis,
    presence_kpis,
    ratio,
    tier_shares,
)
from cs_pulse.domain.model import (
    AGENT,
    AGENT_LABELS,
    QUEUE,
    QUEUE_LABELS,
    TEAM,
    TEAM_LABELS,
    parse_series,
)
from cs_pulse.domain.presence import status_at
from cs_pulse.domain.staffing import recommend
from cs_pulse.domain.tiers import TIER_KINDS
from cs_pulse.settings import Settings
from cs_pulse.worker.engine import Engine
from cs_pulse.worker.pipeline import LAG_BUCKETS, PipelineStats

# Counters from totals: (name suffix, help, extra label, {label value: fact kind}).
COUNTERS: list[tuple[str, str, str, dict[str, str]]] = [
    ("conversations_total", "Conversations created (under the queue at creation).", "",
     {"": "conversations"}),
    ("queued_total", "Waits for a human, counted when settled, at their start.", "",
     {"": "queued"}),
    ("messages_total", "Messages by sender.", "sender",
     {"customer": "customer_messages", "agent": "agent_messages", "bot": "bot_messages"}),
    ("message_characters_total", "Message characters by sender.", "sender",
     {"customer": "customer_chars", "agent": "agent_chars", "bot": "bot_chars"}),
    ("customer_messages_concluded_total",
     "Customer messages to a human, answered or unanswered at the close.", "outcome",
     {"answered": "messages_answered", "unanswered": "messages_unanswered"}),
    ("runs_total", "Customer message runs, answered or unanswered at the close.", "outcome",
     {"answered": "runs_answered", "unanswered": "runs_unanswered"}),
    ("conversations_ended_total", "Segment closes.", "", {"": "ended"}),
    ("conversations_replied_total", "Segment closes with a human reply.", "",
     {"": "ended_replied"}),
    ("service_level_contacts_total",
     "Settled waits: answered within/after 30 s, abandoned within/after 5 s.", "outcome",
     {"answered_within": "sl_answered_within", "answered_after": "sl_answered_after",
      "abandoned_within": "sl_abandoned_within", "abandoned_after": "sl_abandoned_after"}),
    ("abandoned_total", "Waits abandoned before a human reply (at the wait start).", "",
     {"": "abandoned"}),
    ("first_response_within_total",
     "Answered waits within the channel's first-response tier target (at the answer).", "tier",
     TIER_KINDS),
    ("short_abandoned_total", "Waits abandoned within 5 s (at the wait start).", "",
     {"": "abandoned_short"}),
    ("transferred_total", "Conversations transferred at least once (at creation).", "",
     {"": "transferred"}),
    ("escalated_total", "Conversations escalated at least once (at creation).", "",
     {"": "escalated"}),
    ("reopened_total", "Reopens of closed conversations.", "", {"": "reopened"}),
    ("resolved_total", "Closes as resolved.", "", {"": "resolved"}),
    ("resolved_repeat_total", "Resolutions that were not first-contact (at the resolution).",
     "", {"": "resolved_repeat"}),
    ("csat_satisfied_total", "Ratings >= 4 of 5 (normalised).", "", {"": "csat_satisfied"}),
    ("csat_dissatisfied_total", "Ratings <= 2 of 5 (normalised).", "",
     {"": "csat_dissatisfied"}),
    ("csat_dissatisfied_attitude_total", "Ratings <= 2 of 5 blaming the agent's attitude.", "",
     {"": "csat_dissatisfied_attitude"}),
    ("conversations_handled_total", "Conversations handled (first held), once per agent.", "",
     {"": "handled"}),
    ("forbidden_phrases_total", "Forbidden-phrase occurrences in agent messages.", "",
     {"": "forbidden_phrases"}),
    ("served_total", "Conversations served: first wait answered.", "", {"": "served"}),
    ("converted_total", "Served conversations with a qualifying order (at the served time).",
     "", {"": "converted"}),
    ("attributed_gmv_total", "Amount of the orders crediting served conversations.", "",
     {"": "gmv"}),
    ("orders_credited_total", "(Served conversation, qualifying order) pairs (at the served "
     "time).", "", {"": "orders_credited"}),
    ("orders_returned_total", "Credited pairs whose order was returned or exchanged (at the "
     "served time).", "kind", {"return": "orders_returned", "exchange": "orders_exchanged"}),
]
# Customers (接待数), once per series and local day: agent and team series.
CUSTOMER_COUNTERS: list[tuple[str, str, str]] = [
    ("customers_received_total", "Customers received, once per series and local day.",
     "customers_received"),
    ("customers_converted_total", "Customers received who converted that day.",
     "customers_converted"),
    ("customers_refunded_total", "Converted customers who requested a refund of a credited "
     "order.", "customers_refunded"),
]
CUSTOMER_RATIOS: dict[str, tuple[str, str]] = {
    "customer_conversion": ("customer_conversion_ratio",
                            "Customers converted / customers received (today)."),
    "customer_refund": ("customer_refund_ratio", "Customers refunded / customers converted "
                        "(today)."),
}
# Shop counters, as COUNTERS: (name, help, extra label, {label value: fact kind}).
SHOP_COUNTERS: list[tuple[str, str, str, dict[str, str]]] = [
    ("cs_orders", "Paid orders.", "", {"": "orders"}),
    ("cs_orders_amount", "Amount of paid orders.", "", {"": "orders_amount"}),
    ("cs_orders_attributed", "Paid orders that credit at least one served conversation.", "",
     {"": "orders_attributed"}),
    ("cs_refunds_amount", "Amount of refund requests.", "", {"": "refunds_amount"}),
    ("cs_refunds", "Refund requests by reason.", "reason",
     {r: f"refunds_{r}" for r in REFUND_REASONS}),
    ("cs_order_returns", "Orders sent back, by kind.", "kind",
     {"return": "order_returns", "exchange": "order_exchanges"}),
]
HISTOGRAM_NAMES = {
    "first_response": ("first_response_seconds", "Wait start to the first human reply."),
    "response": ("response_seconds", "First message of a customer run to the next reply."),
    "abandon_wait": ("abandon_wait_seconds", "Wait before abandoning."),
    "resolution": ("resolution_seconds", "Segment start to the resolving close."),
    "handle": ("handle_seconds", "Handle time: segment (queue) or holding (agent)."),
    "csat": ("csat_score", "Ratings normalised to 1-5."),
}
WINDOW_GAUGES: dict[str, tuple[str, str]] = {
    "reply_rate": ("reply_rate_ratio", "Customer messages answered / concluded."),
    "run_reply_rate": ("run_reply_rate_ratio", "Customer runs answered / concluded."),
    "conversation_reply_rate": ("conversation_reply_rate_ratio",
                                "Segment closes with a human reply / segment closes."),
    "service_level": ("service_level_ratio",
                      "Answered within 30 s / (answered + abandoned after 5 s)."),
    "abandonment": ("abandonment_ratio", "Abandoned / waits (both at the wait start)."),
    "short_abandonment": ("short_abandonment_ratio", "Abandoned within 5 s / waits."),
    "transfer": ("transfer_ratio", "Transferred / conversations."),
    "escalation": ("escalation_ratio", "Escalated / conversations."),
    "fcr": ("first_contact_resolution_ratio", "First-contact resolutions / resolutions."),
    "csat": ("csat_mean_score", "Mean rating normalised to 1-5."),
    "csat_satisfied": ("csat_satisfied_ratio", "Ratings >= 4 / ratings."),
    "csat_dissatisfied": ("csat_dissatisfied_ratio", "Ratings <= 2 / ratings."),
    "attitude_positive": ("attitude_positive_ratio", "Positive attitude / attitude ratings."),
    "conversion": ("conversion_ratio", "Converted / served."),
    "aht_seconds": ("handle_time_window_seconds", "Mean handle time."),
    "resolution": ("resolution_ratio", "Resolutions / segment closes."),
    "return": ("return_ratio", "Credited orders returned / credited orders."),
    "exchange": ("exchange_ratio", "Credited orders exchanged / credited orders."),
}
# A counter that exists (at 0) as soon as its series has the other kind: a sum over items of
# that kind (violations of agent messages), like characters over messages.
ZERO_WITH = {"forbidden_phrases": "agent_messages",
             # returned and exchanged credited orders, 0 included, wherever orders are credited
             "orders_returned": "orders_credited", "orders_exchanged": "orders_credited"}
# Agent counts per window, every agent series and window (0 included): (name, help).
AGENT_WINDOW_COUNTS: dict[str, tuple[str, str]] = {
    "handled": ("handled_conversations", "Conversations handled in the window."),
    "forbidden_phrases": ("forbidden_phrase_uses", "Forbidden-phrase occurrences in the window."),
}
PRESENCE_GAUGES: dict[str, tuple[str, str]] = {
    "online_rate": ("cs_agent_online_rate_ratio",
                    "Online time / (last online - first online) in the window."),
    "slot_utilisation": ("cs_agent_slot_utilisation_ratio",
                         "Time-weighted min(open sessions, max concurrency) / max concurrency "
                         "while online."),
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


def _bound(b: float) -> str:
    return str(int(b)) if b == int(b) else str(b)


class KpiCollector(Collector):
    """Exports what the owned aggregators hold. ``now`` pins the reading instant (seconds;
    tests and the audit); by default it is the worker's event clock."""

    def __init__(self, owned: Callable[[], Iterable[Aggregator]], pipeline: PipelineStats,
                 settings: Settings, extra: Callable[[], dict[str, Any]] | None = None,
                 wall: Callable[[], float] = time.time, now: float | None = None,
                 held: Callable[[], int] = lambda: 0) -> None:
        self.owned = owned
        self.held = held
        self.pipeline = pipeline
        self.settings = settings
        self.extra = extra or (lambda: {})
        self.wall = wall
        self.now = now

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: families depend on the data

    def collect(self) -> Iterator[Metric]:
        fams = _Families()
        wall = self.wall()
        aggregators = list(self.owned())
        now = self.now
        if now is None:
            clocks = [c for c in (a.clock.now(wall) for a in aggregators) if c is not None]
            now = max(clocks) if clocks else None
        if now is not None:
            now_ms = round(now * 1000)   # every time is in whole milliseconds
            fams.gauge("cs_window_end_timestamp_seconds",
                       "The instant (event time) the windows on this page end at.", []) \
                .add_metric([], now_ms / 1000.0)
            for agg in aggregators:
                for series in agg.series():
                    kind, labels = parse_series(series)
                    if kind == QUEUE:
                        self._series(fams, agg, series, now_ms, "cs_", QUEUE_LABELS, labels)
                    elif kind == AGENT:
                        self._series(fams, agg, series, now_ms, "cs_agent_", AGENT_LABELS,
                                     labels)
                        self._customers(fams, agg, series, now_ms, "cs_agent_", AGENT_LABELS,
                                        labels)
                    elif kind == TEAM:
                        self._customers(fams, agg, series, now_ms, "cs_team_", TEAM_LABELS,
                                        labels)
                    else:
                        self._shop(fams, agg, series, now_ms, labels[0])
        fams.counter("cs_facts_duplicate", "Re-sent facts dropped.", []).add_metric(
            [], sum(a.stats.get("duplicate_facts", 0.0) for a in aggregators))
        fams.counter("cs_facts_late", "Facts older than every rolling window (kept in totals "
                     "and their day).", []).add_metric(
            [], sum(a.stats.get("late_facts", 0.0) for a in aggregators))
        targets = fams.gauge("cs_first_response_tier_target_seconds",
                             "Each channel's first-response tier targets (configuration).",
                             ["channel", "tier"])
        for channel, tiers in self.settings.calendars.tiers.items():
            for tier, target in tiers.targets().items():
                targets.add_metric([channel, tier], target)
        self._pipeline(fams, wall)
        yield from fams.families.values()

    # --- queue and agent series ----------------------------------------------------------------

    def _series(self, fams: _Families, agg: Aggregator, series: str, now: int, prefix: str,
                names: tuple[str, ...], values: tuple[str, ...]) -> None:
        labels, vals = list(names), list(values)
        totals = agg.totals.get(series, {})
        for suffix, doc, extra, kinds in COUNTERS:
            for label_value, kind in kinds.items():
                if kind in totals or ZERO_WITH.get(kind, "-") in totals:
                    fam = fams.counter(prefix + suffix[: -len("_total")], doc,
                                       labels + ([extra] if extra else []))
                    fam.add_metric(vals + ([label_value] if extra else []),
                                   totals.get(kind, 0.0))
        for kind, (suffix, doc) in HISTOGRAM_NAMES.items():
            if f"{kind}:count" not in totals:
                continue
            cumulative, buckets = 0.0, []
            for bound, c in zip([*HISTOGRAMS[kind], float("inf")], hist_counts(totals, kind),
                                strict=True):
                cumulative += c
                buckets.append(("+Inf" if bound == float("inf") else _bound(bound), cumulative))
            fams.histogram(prefix + suffix, doc, labels).add_metric(
                vals, buckets, totals[f"{kind}:sum"])
        live = agg.live.get(series)
        waiting = live.waiting if live is not None else {}
        fams.gauge(prefix + "waiting_conversations",
                   "Customers waiting now for a first or next reply.", labels).add_metric(
            vals, float(len(waiting)))
        fams.gauge(prefix + "oldest_waiting_seconds", "Age of the oldest wait (0 if none).",
                   labels).add_metric(vals, max(0.0, now - min(waiting.values())) / 1000.0
                                      if waiting else 0.0)
        wl, wv = [*labels, "window"], [*vals, "window"]
        for window, counts in agg.windows(series, now).items():
            wv[-1] = window
            for key, value in kpis(counts).items():
                if value is not None:
                    name, doc = WINDOW_GAUGES[key]
                    fams.gauge(prefix + name, doc, wl).add_metric(list(wv), value)
            if prefix == "cs_":
                shares = fams.gauge("cs_first_response_tier_ratio",
                                    "Answered waits within the channel's tier target / answered "
                                    "waits.", [*wl, "tier"])
                for tier, share in tier_shares(counts).items():
                    if share is not None:
                        shares.add_metric([*wv, tier], share)
            if prefix == "cs_agent_":
                for kind, (name, doc) in AGENT_WINDOW_COUNTS.items():
                    fams.gauge(prefix + name, doc, wl).add_metric(list(wv),
                                                                 counts.get(kind, 0.0))
            for kind in ("first_response", "response", "resolution"):
                stats = fams.gauge(f"{prefix}{kind}_window_seconds",
                                   f"{kind.replace('_', ' ')} p50/p90/avg over the window.",
                                   [*wl, "stat"])
                for stat, value in hist_stats(counts, kind).items():
                    if value is not None:
                        stats.add_metric([*wv, stat], value)
            if window == "today" and prefix == "cs_":
                self._hourly(fams, counts, labels, vals)
        if prefix == "cs_agent_":
            self._agent(fams, agg, series, now, live, labels, vals)

    def _hourly(self, fams: _Families, counts: Counts, labels: list[str],
                vals: list[str]) -> None:
        fam = fams.gauge("cs_hourly_volume", "Today's volume by local hour of day.",
                         [*labels, "hour", "kind"])
        for key, v in counts.items():
            kind, sep, hour = key.partition("@")
            if sep and kind in HOURLY_KINDS:
                fam.add_metric([*vals, hour, kind], v)

    def _customers(self, fams: _Families, agg: Aggregator, series: str, now: int, prefix: str,
                   names: tuple[str, ...], values: tuple[str, ...]) -> None:
        """Customers received (接待数) and what became of them: per agent or team and day."""
        totals = agg.totals.get(series, {})
        if "customers_received" not in totals:
            return
        labels, vals = list(names), list(values)
        for suffix, doc, kind in CUSTOMER_COUNTERS:
            fams.counter(prefix + suffix[: -len("_total")], doc, labels).add_metric(
                vals, totals.get(kind, 0.0))
        today = agg.today_counts(series, now)
        wl, wv = [*labels, "window"], [*vals, "today"]
        fams.gauge(prefix + "received_customers", "Customers received today.", wl).add_metric(
            wv, today.get("customers_received", 0.0))
        for key, value in customer_kpis(today).items():
            if value is not None:
                name, doc = CUSTOMER_RATIOS[key]
                fams.gauge(prefix + name, doc, wl).add_metric(wv, value)
        by_hour = fams.gauge(prefix + "customers_received_by_hour",
                             "Customers received today by the local hour their conversation "
                             "began (分时接待).", [*labels, "hour"])
        for hour, kind in enumerate(CUSTOMER_HOUR_KINDS):
            if today.get(kind):
                by_hour.add_metric([*vals, str(hour)], today[kind])

    def _agent(self, fams: _Families, agg: Aggregator, series: str, now: int,
               live: Live | None, labels: list[str], vals: list[str]) -> None:
        fams.gauge("cs_agent_open_sessions", "Conversations held now (concurrent sessions).",
                   labels).add_metric(vals, float(live.open_sessions() if live else 0))
        wl = [*labels, "window"]
        presence = agg.presence(series, now)
        for window, p in presence.items():
            fams.gauge("cs_agent_max_open_sessions", "Most sessions open at once in the window.",
                       wl).add_metric([*vals, window], float(p.max_open))
        if live is None or not live.status:
            return
        status, maxc = status_at(live.status, now)
        online = status in ("online", "busy")
        fams.gauge("cs_agent_online", "1 while online or busy.", labels).add_metric(
            vals, 1.0 if online else 0.0)
        fams.gauge("cs_agent_max_concurrency", "Max concurrent chats (last known).",
                   labels).add_metric(vals, maxc)
        if online:
            fams.gauge("cs_agent_slot_utilisation_now_ratio",
                       "min(open sessions, max concurrency) / max concurrency.",
                       labels).add_metric(vals, min(live.open_sessions(), maxc) / maxc)
        for window, p in presence.items():
            for key, value in presence_kpis(p).items():
                if value is not None:
                    name, doc = PRESENCE_GAUGES[key]
                    fams.gauge(name, doc, wl).add_metric([*vals, window], value)
        today = presence["today"]
        fams.gauge("cs_agent_online_today_seconds", "Seconds online or busy today.",
                   labels).add_metric(vals, today.online_ms / 1000.0)
        fams.gauge("cs_agent_logins_today", "Status changes from offline today.",
                   labels).add_metric(vals, float(today.logins))
        if today.first_online is not None and today.last_online is not None:
            fams.gauge("cs_agent_first_online_timestamp_seconds", "First online today.",
                       labels).add_metric(vals, today.first_online / 1000.0)
            fams.gauge("cs_agent_last_online_timestamp_seconds", "Last online today.",
                       labels).add_metric(vals, today.last_online / 1000.0)
            fams.gauge("cs_agent_offline_during_shift_today_seconds",
                       "Not online between first and last online today.", labels).add_metric(
                vals, (today.last_online - today.first_online - today.online_ms) / 1000.0)

    # --- per shop -------------------------------------------------------------------------------

    def _shop(self, fams: _Families, agg: Aggregator, series: str, now: int, shop: str) -> None:
        g = [shop]
        cal = self.settings.calendars.for_shop(shop)
        fams.gauge("cs_peak_hour", "1 while the shop's peak calendar is active (local time).",
                   ["shop"]).add_metric(g, 1.0 if cal.is_peak(now / 1000.0) else 0.0)
        totals = agg.totals.get(series, {})
        for name, doc, extra, kinds in SHOP_COUNTERS:
            for label_value, kind in kinds.items():
                if kind in totals:
                    fams.counter(name, doc, ["shop"] + ([extra] if extra else [])).add_metric(
                        g + ([label_value] if extra else []), totals[kind])
        windows = agg.windows(series, now)
        live = agg.live.get(series) or Live()
        first = window_starts(now)["15m"]
        unsettled = sum(1 for since in live.unsettled.values() if since >= first)
        arrivals = (windows["15m"].get("queued", 0.0) + unsettled) / 900.0
        hour = windows["60m"]
        aht = kpis(hour)["aht_seconds"] or kpis(windows["today"])["aht_seconds"] or 0.0
        patience = ratio(hour.get("first_response:sum", 0.0) + hour.get("abandon_wait:sum", 0.0),
                         hour.get("abandon_wait:count", 0.0))
        roster = live.roster
        concurrency = sum(roster.values()) / len(roster) if roster else 1.0
        rec = recommend(arrivals, aht, len(roster), concurrency,
                        self.settings.sl_target_level, self.settings.sl_target_seconds, patience)
        gauges: list[tuple[str, str, float | None]] = [
            ("cs_staffing_arrival_rate", "Waits begun per second (15 m).", arrivals),
            ("cs_staffing_handle_seconds", "Mean handle time used (60 m, else today).", aht),
            ("cs_staffing_concurrency", "Mean max concurrency of agents online.", concurrency),
            ("cs_staffing_agents_online", "Agents online or busy now.", float(len(roster))),
            ("cs_staffing_agents_needed", "Erlang C agents needed for the service-level target.",
             float(rec.agents_needed) if aht > 0 else None),
            ("cs_staffing_gap_agents", "Agents needed - agents online.",
             float(rec.gap) if aht > 0 else None),
            ("cs_staffing_expected_service_level_ratio",
             "Erlang C service level with the agents online now.", rec.expected_service_level),
            ("cs_staffing_expected_asa_seconds",
             "Erlang C average speed of answer with the agents online now.",
             rec.expected_asa_seconds if rec.expected_asa_seconds != float("inf") else None),
            ("cs_staffing_expected_abandon_ratio", "Erlang A abandonment with the agents online "
             "now.", rec.expected_abandon),
            ("cs_staffing_patience_seconds", "Estimated mean customer patience (60 m).", patience),
        ]
        for name, doc, value in gauges:
            if value is not None:
                fams.gauge(name, doc, ["shop"]).add_metric(g, value)

    # --- pipeline ------------------------------------------------------------------------------

    def _pipeline(self, fams: _Families, wall: float) -> None:
        p = self.pipeline
        fam = fams.counter("cs_events_processed", "Valid events (duplicates included).", ["type"])
        for t, v in sorted(p.processed.items()):
            fam.add_metric([t], v)
        fam = fams.counter("cs_events_rejected", "Events sent to the dead-letter topic.",
                           ["reason"])
        for r, v in sorted(p.rejected.items()):
            fam.add_metric([r], v)
        fam = fams.counter("cs_events_orphaned", "Events for a conversation not known (ended "
                           "or never started).", ["type"])
        for t, v in sorted(p.orphaned.items()):
            fam.add_metric([t], v)
        fams.counter("cs_events_duplicate", "Events with an already-applied event_id.", []) \
            .add_metric([], p.duplicates)
        fams.counter("cs_events_late", "Events behind the watermark (took effect at it).", []) \
            .add_metric([], p.late)
        fams.counter("cs_input_replayed_records", "Records re-delivered after a restart or "
                     "rebalance, dropped before decoding.", []).add_metric([], p.replayed_records)
        fams.counter("cs_input_rewinds", "Consumer rewinds after a gap in the offsets.", []) \
            .add_metric([], p.rewinds)
        fams.counter("cs_input_lost_records", "Records deleted by retention before they were "
                     "processed.", []).add_metric([], p.lost_records)
        fams.gauge("cs_input_held_records", "Records waiting for the watermark (grace period) "
                   "before they take effect.", []).add_metric([], float(self.held()))
        cumulative, buckets = 0.0, []
        for bound, c in zip([*LAG_BUCKETS, float("inf")], p.lag_buckets, strict=True):
            cumulative += c
            buckets.append(("+Inf" if bound == float("inf") else _bound(bound), cumulative))
        fams.histogram("cs_event_lag_seconds", "Processing time minus event time.", []) \
            .add_metric([], buckets, p.lag_sum)
        if p.last_event_wall is not None:
            fams.gauge("cs_last_event_age_seconds", "Seconds since the last event was consumed.",
                       []).add_metric([], max(0.0, wall - p.last_event_wall))
        if p.last_fold_wall is not None:
            fams.gauge("cs_last_fold_age_seconds", "Seconds since facts were last folded into "
                       "the windows.", []).add_metric([], max(0.0, wall - p.last_fold_wall))
        for name, value in self.extra().items():
            fams.gauge(name, name.replace("_", " "), []).add_metric([], float(value))


def engine_registry(engine: Engine, settings: Settings,
                    extra: Callable[[], dict[str, Any]] | None = None,
                    now: float | None = None) -> CollectorRegistry:
    """A registry serving what a worker holding ``engine`` exports (its owned partitions)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(
        lambda: list(engine.aggregators.values()), engine.pipeline, settings, extra=extra,
        now=now, held=lambda: sum(len(s.order.held) for s in engine.stages.values())))
    return registry

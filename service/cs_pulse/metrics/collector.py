"""Custom prometheus_client collector: at scrape time, reads the state of the partitions this
worker owns and yields the catalogue's families (``catalogue/families.py``: names, types,
labels and help are declared there, not here), so a partition that moves away stops being
exported here. Every number is defined in the README's "Metric definitions"; ``cs-pulse
audit`` recomputes them from the raw events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from cs_pulse.domain.aggregate import Aggregator, Counts, Live
from cs_pulse.domain.facts import CUSTOMER_HOUR_KINDS, HISTOGRAMS, HOURLY_KINDS
from cs_pulse.domain.kpis import (
    customer_kpis,
    hist_counts,
    hist_stats,
    kpis,
    presence_kpis,
    tier_shares,
)
from cs_pulse.domain.model import parse_series
from cs_pulse.domain.presence import status_at
from cs_pulse.domain.staffing import shop_staffing
from cs_pulse.metrics.catalogue import families as cat
from cs_pulse.metrics.catalogue.families import FAMILIES, SCOPE_OF, Scope, name_of
from cs_pulse.metrics.catalogue.slo import SERVICE_LEVEL_SECONDS, THRESHOLDS
from cs_pulse.settings import Settings
from cs_pulse.worker.engine import Engine
from cs_pulse.worker.pipeline import LAG_BUCKETS, PipelineStats

KINDS = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
         "histogram": HistogramMetricFamily}


class Page:
    """The families of one scrape, each made once from its catalogue entry."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def _family(self, name: str) -> Any:
        fam = self.families.get(name)
        if fam is None:
            spec = FAMILIES[name]
            fam = self.families[name] = KINDS[spec.type](name, spec.help,
                                                         labels=list(spec.labels))
        return fam

    def add(self, name: str, labels: Sequence[str], value: float) -> None:
        self._family(name).add_metric(list(labels), value)

    def declare(self, name: str) -> None:
        """Export the family even without samples (a labelled counter nobody has hit yet)."""
        self._family(name)

    def histogram(self, name: str, labels: Sequence[str], bounds: Iterable[float],
                  counts: Iterable[float], total: float) -> None:
        cumulative, buckets = 0.0, []
        for bound, c in zip([*bounds, float("inf")], counts, strict=True):
            cumulative += c
            buckets.append(("+Inf" if bound == float("inf") else _bound(bound), cumulative))
        self._family(name).add_metric(list(labels), buckets, total)


def _bound(b: float) -> str:
    return str(int(b)) if b == int(b) else str(b)


class KpiCollector(Collector):
    """Exports what the owned aggregators hold. ``now`` pins the reading instant (seconds;
    tests and the audit); by default it is the worker's event clock."""

    def __init__(self, owned: Callable[[], Iterable[Aggregator]], pipeline: PipelineStats,
                 settings: Settings, extra: Callable[[], dict[str, Any]] | None = None,
                 wall: Callable[[], float] = time.time, now: float | None = None,
                 held: Callable[[], int] = lambda: 0,
                 label_overflow: dict[str, float] | None = None) -> None:
        self.owned = owned
        self.held = held
        self.label_overflow = label_overflow if label_overflow is not None else {}
        self.pipeline = pipeline
        self.settings = settings
        self.extra = extra or (lambda: {})
        self.wall = wall
        self.now = now

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: families depend on the data

    def collect(self) -> Iterator[Metric]:
        page = Page()
        wall = self.wall()
        aggregators = list(self.owned())
        now = self.now
        if now is None:
            clocks = [c for c in (a.clock.now(wall) for a in aggregators) if c is not None]
            now = max(clocks) if clocks else None
        if now is not None:
            now_ms = round(now * 1000)   # every time is in whole milliseconds
            page.add("cs_window_end_timestamp_seconds", [], now_ms / 1000.0)
            for agg in aggregators:
                for series in agg.series():
                    kind, values = parse_series(series)
                    self._series(page, agg, series, SCOPE_OF[kind], values, now_ms)
        page.add("cs_facts_duplicate", [],
                 sum(a.stats.get("duplicate_facts", 0.0) for a in aggregators))
        page.add("cs_facts_late", [], sum(a.stats.get("late_facts", 0.0) for a in aggregators))
        page.declare("cs_first_response_tier_target_seconds")
        for channel, tiers in self.settings.calendars.tiers.items():
            for tier, target in tiers.targets().items():
                page.add("cs_first_response_tier_target_seconds", [channel, tier], target)
        self._pipeline(page, wall)
        yield from page.families.values()

    def _series(self, page: Page, agg: Aggregator, series: str, scope: Scope,
                values: tuple[str, ...], now: int) -> None:
        totals = agg.totals.get(series, {})
        self._counters(page, totals, scope, values)
        if scope in (Scope.QUEUE, Scope.AGENT):
            self._windows(page, agg, series, scope, values, now, totals)
        if scope is Scope.AGENT:
            self._agent(page, agg, series, values, now)
        if scope in (Scope.AGENT, Scope.TEAM) and "customers_received" in totals:
            self._customers(page, agg, series, scope, values, now)
        if scope is Scope.SHOP:
            self._shop(page, agg, series, values[0], now)

    def _counters(self, page: Page, totals: Counts, scope: Scope,
                  values: tuple[str, ...]) -> None:
        for c in cat.COUNTERS:
            if scope not in c.scopes:
                continue
            for label_value, kind in c.kinds.items():
                if kind in totals or (c.zero_with and c.zero_with in totals):
                    page.add(name_of(scope, c.suffix),
                             [*values, label_value] if c.label else values,
                             totals.get(kind, 0.0))

    # --- queue and agent series ----------------------------------------------------------------

    def _windows(self, page: Page, agg: Aggregator, series: str, scope: Scope,
                 values: tuple[str, ...], now: int, totals: Counts) -> None:
        for h in cat.HISTOGRAMS:
            if f"{h.kind}:count" in totals:
                page.histogram(name_of(scope, h.suffix), values, HISTOGRAMS[h.kind],
                               hist_counts(totals, h.kind), totals[f"{h.kind}:sum"])
        live = agg.live.get(series)
        waiting = live.waiting if live is not None else {}
        page.add(name_of(scope, "waiting_conversations"), values, float(len(waiting)))
        page.add(name_of(scope, "oldest_waiting_seconds"), values,
                 max(0.0, now - min(waiting.values())) / 1000.0 if waiting else 0.0)
        for window, counts in agg.windows(series, now).items():
            wv = [*values, window]
            ratios = kpis(counts)
            for d in cat.WINDOW_KPIS:
                if (value := ratios[d.key]) is not None:
                    page.add(name_of(scope, d.suffix), wv, value)
            if scope is Scope.QUEUE:
                page.declare("cs_first_response_tier_ratio")
                for tier, share in tier_shares(counts).items():
                    if share is not None:
                        page.add("cs_first_response_tier_ratio", [*wv, tier], share)
            else:
                for d in cat.AGENT_WINDOW_COUNTS:
                    page.add(name_of(scope, d.suffix), wv, counts.get(d.key, 0.0))
            for d in cat.WINDOW_STATS:
                name = name_of(scope, d.suffix)
                page.declare(name)
                for stat, value in hist_stats(counts, d.key).items():
                    if value is not None:
                        page.add(name, [*wv, stat], value)
            if window == "today" and scope is Scope.QUEUE:
                page.declare("cs_hourly_volume")
                for key, v in counts.items():
                    kind, sep, hour = key.partition("@")
                    if sep and kind in HOURLY_KINDS:
                        page.add("cs_hourly_volume", [*values, hour, kind], v)

    def _customers(self, page: Page, agg: Aggregator, series: str, scope: Scope,
                   values: tuple[str, ...], now: int) -> None:
        """Customers received (接待数) today and what became of them: per agent or team."""
        today = agg.today_counts(series, now)
        wv = [*values, "today"]
        page.add(name_of(scope, "received_customers"), wv, today.get("customers_received", 0.0))
        ratios = customer_kpis(today)
        for d in cat.CUSTOMER_KPIS:
            if (value := ratios[d.key]) is not None:
                page.add(name_of(scope, d.suffix), wv, value)
        by_hour = name_of(scope, "customers_received_by_hour")
        page.declare(by_hour)
        for hour, kind in enumerate(CUSTOMER_HOUR_KINDS):
            if today.get(kind):
                page.add(by_hour, [*values, str(hour)], today[kind])

    def _agent(self, page: Page, agg: Aggregator, series: str, values: tuple[str, ...],
               now: int) -> None:
        live = agg.live.get(series)
        page.add("cs_agent_open_sessions", values, float(live.open_sessions() if live else 0))
        presence = agg.presence(series, now)
        for window, p in presence.items():
            page.add("cs_agent_max_open_sessions", [*values, window], float(p.max_open))
        if live is None or not live.status:
            return
        status, maxc = status_at(live.status, now)
        online = status in ("online", "busy")
        page.add("cs_agent_online", values, 1.0 if online else 0.0)
        page.add("cs_agent_max_concurrency", values, maxc)
        if online:
            page.add("cs_agent_slot_utilisation_now_ratio", values,
                     min(live.open_sessions(), maxc) / maxc)
        for window, p in presence.items():
            ratios = presence_kpis(p)
            for d in cat.PRESENCE_KPIS:
                if (value := ratios[d.key]) is not None:
                    page.add(name_of(Scope.AGENT, d.suffix), [*values, window], value)
        today = presence["today"]
        page.add("cs_agent_online_today_seconds", values, today.online_ms / 1000.0)
        page.add("cs_agent_logins_today", values, float(today.logins))
        if today.first_online is not None and today.last_online is not None:
            page.add("cs_agent_first_online_timestamp_seconds", values,
                     today.first_online / 1000.0)
            page.add("cs_agent_last_online_timestamp_seconds", values,
                     today.last_online / 1000.0)
            page.add("cs_agent_offline_during_shift_today_seconds", values,
                     (today.last_online - today.first_online - today.online_ms) / 1000.0)

    # --- per shop -------------------------------------------------------------------------------

    def _shop(self, page: Page, agg: Aggregator, series: str, shop: str, now: int) -> None:
        cal = self.settings.calendars.for_shop(shop)
        page.add("cs_peak_hour", [shop], 1.0 if cal.is_peak(now / 1000.0) else 0.0)
        live = agg.live.get(series) or Live()
        figures = asdict(shop_staffing(agg.windows(series, now), live, now,
                                       THRESHOLDS["service_level"].critical,
                                       SERVICE_LEVEL_SECONDS))
        for d in cat.STAFFING:
            if figures[d.key] is not None:
                page.add(name_of(Scope.SHOP, d.suffix), [shop], figures[d.key])

    # --- pipeline ------------------------------------------------------------------------------

    def _pipeline(self, page: Page, wall: float) -> None:
        p = self.pipeline
        for family, counts in (("cs_events_processed", p.processed),
                               ("cs_events_rejected", p.rejected),
                               ("cs_events_orphaned", p.orphaned)):
            page.declare(family)
            for label, v in sorted(counts.items()):
                page.add(family, [label], v)
        page.declare("cs_label_overflow")
        for label, v in sorted(self.label_overflow.items()):
            page.add("cs_label_overflow", [label], v)
        page.add("cs_events_duplicate", [], p.duplicates)
        page.add("cs_events_late", [], p.late)
        page.add("cs_input_replayed_records", [], p.replayed_records)
        page.add("cs_input_rewinds", [], p.rewinds)
        page.add("cs_input_lost_records", [], p.lost_records)
        page.add("cs_input_held_records", [], float(self.held()))
        page.histogram("cs_event_lag_seconds", [], LAG_BUCKETS, p.lag_buckets, p.lag_sum)
        if p.last_event_wall is not None:
            page.add("cs_last_event_age_seconds", [], max(0.0, wall - p.last_event_wall))
        if p.last_fold_wall is not None:
            page.add("cs_last_fold_age_seconds", [], max(0.0, wall - p.last_fold_wall))
        for name, value in self.extra().items():
            page.add(name, [], float(value))


def engine_registry(engine: Engine, settings: Settings,
                    extra: Callable[[], dict[str, Any]] | None = None,
                    now: float | None = None) -> CollectorRegistry:
    """A registry serving what a worker holding ``engine`` exports (its owned partitions)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(
        lambda: list(engine.aggregators.values()), engine.pipeline, settings, extra=extra,
        now=now, held=lambda: sum(len(s.order.held) for s in engine.stages.values()),
        label_overflow=engine.labels.overflow))
    return registry


def worker_registry(engine: Engine, settings: Settings,
                    extra: Callable[[], dict[str, Any]] | None = None) -> CollectorRegistry:
    """A worker's /metrics: its engine's families, plus the process (CPU, memory, open files),
    garbage-collector and Python platform families."""
    registry = engine_registry(engine, settings, extra=extra)
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry

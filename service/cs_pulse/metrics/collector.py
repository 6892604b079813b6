"""Custom prometheus_client collector: at scrape time, reads the state of the partitions this
worker owns and yields the catalogue's families (``catalogue/families.py``: names, types,
labels, help and page are declared there, not here), so a partition that moves away stops
being exported here. Every number is defined in the README's "Metric definitions"; ``cs-pulse
audit`` recomputes them from the raw events.

``fill`` builds one page a series at a time and yields between series, so a server can give
the event loop back while it reads (``metrics/http.py``); ``collect`` (the audit, the tests)
builds both pages at once.
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
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

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
from cs_pulse.metrics.catalogue.families import (
    AGENT_WINDOWS,
    EVERY_ENDPOINT,
    FAMILIES,
    SCOPE_OF,
    Endpoint,
    Scope,
    name_of,
)
from cs_pulse.metrics.catalogue.slo import SERVICE_LEVEL_SECONDS, THRESHOLDS
from cs_pulse.settings import Settings
from cs_pulse.worker.engine import Engine
from cs_pulse.worker.pipeline import LAG_BUCKETS, PipelineStats

KINDS = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
         "histogram": HistogramMetricFamily, "summary": SummaryMetricFamily}


class Page:
    """The families of one scrape, each made once from its catalogue entry; samples of a
    family served on another endpoint are not kept."""

    def __init__(self, endpoints: frozenset[Endpoint] = EVERY_ENDPOINT) -> None:
        self.endpoints = endpoints
        self.families: dict[str, Metric] = {}

    def serves(self, name: str) -> bool:
        """The family is served on one of this page's endpoints."""
        return bool(FAMILIES[name].endpoints & self.endpoints)

    def _family(self, name: str) -> Any:
        fam = self.families.get(name)
        if fam is None:
            if not self.serves(name):
                return None
            spec = FAMILIES[name]
            fam = self.families[name] = KINDS[spec.type](name, spec.help,
                                                         labels=list(spec.labels))
        return fam

    def add(self, name: str, labels: Sequence[str], value: float) -> None:
        if (fam := self._family(name)) is not None:
            fam.add_metric(list(labels), value)

    def declare(self, name: str) -> None:
        """Export the family even without samples (a labelled counter nobody has hit yet)."""
        self._family(name)

    def histogram(self, name: str, labels: Sequence[str], bounds: Iterable[float],
                  counts: Iterable[float], total: float) -> None:
        if (fam := self._family(name)) is not None:
            fam.add_metric(list(labels), _cumulative(bounds, counts), total)

    def summary(self, name: str, labels: Sequence[str], count: float, total: float) -> None:
        if (fam := self._family(name)) is not None:
            fam.add_metric(list(labels), count, total)

    def merge(self, other: Page) -> None:
        for name, fam in other.families.items():
            if (mine := self._family(name)) is not None:
                mine.samples.extend(fam.samples)


class TextPage(Page):
    """The same page written directly in the text format (0.0.4) that ``generate_latest``
    writes, line for line: a worker's pages at 100,000 conversations cost ~10 µs a sample as
    client_python's families and ~4 µs more to encode (bench.scale)."""

    def __init__(self, endpoints: frozenset[Endpoint] = EVERY_ENDPOINT) -> None:
        super().__init__(endpoints)
        self.lines: dict[str, list[str]] = {}
        # A series' label sets recur across its families: each is written once per page.
        self._label_text: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}

    def _labels(self, names: tuple[str, ...], values: Sequence[str]) -> str:
        key = (names, tuple(values))
        text = self._label_text.get(key)
        if text is None:
            text = self._label_text[key] = _labels(names, values)
        return text

    def _lines(self, name: str) -> list[str] | None:
        lines = self.lines.get(name)
        if lines is None:
            if not self.serves(name):
                return None
            lines = self.lines[name] = []
        return lines

    def add(self, name: str, labels: Sequence[str], value: float) -> None:
        if (lines := self._lines(name)) is not None:
            sample, names = _SAMPLE[name]
            lines.append(f"{sample}{self._labels(names, labels)} {floatToGoString(value)}\n")

    def declare(self, name: str) -> None:
        self._lines(name)

    def histogram(self, name: str, labels: Sequence[str], bounds: Iterable[float],
                  counts: Iterable[float], total: float) -> None:
        if (lines := self._lines(name)) is None:
            return
        names = FAMILIES[name].labels
        buckets = _cumulative(bounds, counts)
        for le, cumulative in buckets:
            lines.append(f"{name}_bucket{self._labels((*names, 'le'), (*labels, le))} "
                         f"{floatToGoString(cumulative)}\n")
        self._count_sum(lines, name, self._labels(names, labels), buckets[-1][1], total)

    def summary(self, name: str, labels: Sequence[str], count: float, total: float) -> None:
        if (lines := self._lines(name)) is not None:
            self._count_sum(lines, name, self._labels(FAMILIES[name].labels, labels), count,
                            total)

    @staticmethod
    def _count_sum(lines: list[str], name: str, labelled: str, count: float,
                   total: float) -> None:
        lines.append(f"{name}_count{labelled} {floatToGoString(count)}\n")
        lines.append(f"{name}_sum{labelled} {floatToGoString(total)}\n")

    def merge(self, other: Page) -> None:
        assert isinstance(other, TextPage)
        for name, lines in other.lines.items():
            if (mine := self._lines(name)) is not None:
                mine.extend(lines)

    def text(self) -> str:
        out = []
        for name, lines in self.lines.items():
            spec = FAMILIES[name]
            sample = _SAMPLE[name][0] if spec.type == "counter" else name
            help_ = spec.help.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {sample} {help_}\n# TYPE {sample} {spec.type}\n")
            out.extend(lines)
        return "".join(out)


# Per family: its sample's name and label names (counters' samples end in _total).
_SAMPLE = {name: (name + "_total" if f.type == "counter" else name, f.labels)
           for name, f in FAMILIES.items()}


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    """``{a="1",b="2"}`` in label-name order, as client_python writes it; "" without labels."""
    if not names:
        return ""
    pairs = sorted(zip(names, values, strict=True))
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


def _cumulative(bounds: Iterable[float], counts: Iterable[float]) -> list[tuple[str, float]]:
    """(le, cumulative count) of each bucket, ``+Inf`` last."""
    cumulative, buckets = 0.0, []
    for bound, c in zip([*bounds, float("inf")], counts, strict=True):
        cumulative += c
        buckets.append(("+Inf" if bound == float("inf") else _bound(bound), cumulative))
    return buckets


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
        for _ in self.fill(page):
            pass
        yield from page.families.values()

    def fill(self, page: Page) -> Iterator[None]:
        """Add the samples of ``page``'s endpoints, yielding after each series. Between two
        yields the caller may let the state change: each series is read whole in one step, and
        an aggregator no longer owned at the end (a rebalance) leaves no sample."""
        wall = self.wall()
        aggregators = list(self.owned())
        now = self.now
        if now is None:
            clocks = [c for c in (a.clock.now(wall) for a in aggregators) if c is not None]
            now = max(clocks) if clocks else None
        read: list[tuple[Aggregator, Page]] = []
        if now is not None:
            now_ms = round(now * 1000)   # every time is in whole milliseconds
            page.add("cs_window_end_timestamp_seconds", [], now_ms / 1000.0)
            for agg in aggregators:
                part = type(page)(page.endpoints)
                for series in list(agg.series()):
                    kind, values = parse_series(series)
                    self._series(part, agg, series, SCOPE_OF[kind], values, now_ms)
                    yield
                read.append((agg, part))
        still_owned = {id(a) for a in self.owned()}
        for agg, part in read:
            if id(agg) in still_owned:
                page.merge(part)
        if Endpoint.FLOOR in page.endpoints:
            self._worker(page, aggregators, wall)

    def _worker(self, page: Page, aggregators: list[Aggregator], wall: float) -> None:
        page.add("cs_facts_duplicate", [],
                 sum(a.stats.get("duplicate_facts", 0.0) for a in aggregators))
        page.add("cs_facts_late", [], sum(a.stats.get("late_facts", 0.0) for a in aggregators))
        page.declare("cs_first_response_tier_target_seconds")
        for channel, tiers in self.settings.calendars.tiers.items():
            for tier, target in tiers.targets().items():
                page.add("cs_first_response_tier_target_seconds", [channel, tier], target)
        self._pipeline(page, wall)

    def _series(self, page: Page, agg: Aggregator, series: str, scope: Scope,
                values: tuple[str, ...], now: int) -> None:
        if scope is Scope.AGENT and Endpoint.AGENTS not in page.endpoints:
            self._agent_live(page, agg, series, values, now)
            return
        if scope is not Scope.AGENT and Endpoint.FLOOR not in page.endpoints:
            return
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
            if f"{h.kind}:count" not in totals:
                continue
            if scope is Scope.AGENT:
                page.summary(name_of(scope, h.suffix), values, totals[f"{h.kind}:count"],
                             totals[f"{h.kind}:sum"])
            else:
                page.histogram(name_of(scope, h.suffix), values, HISTOGRAMS[h.kind],
                               hist_counts(totals, h.kind), totals[f"{h.kind}:sum"])
        live = agg.live.get(series)
        waiting = live.waiting if live is not None else {}
        page.add(name_of(scope, "waiting_conversations"), values, float(len(waiting)))
        page.add(name_of(scope, "oldest_waiting_seconds"), values,
                 max(0.0, now - min(waiting.values())) / 1000.0 if waiting else 0.0)
        windows = agg.windows(series, now, AGENT_WINDOWS if scope is Scope.AGENT else None)
        for window, counts in windows.items():
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

    def _agent_live(self, page: Page, agg: Aggregator, series: str, values: tuple[str, ...],
                    now: int) -> tuple[str, float] | None:
        """The floor page's three per agent; the status and max concurrency at ``now``."""
        live = agg.live.get(series)
        page.add("cs_agent_open_sessions", values, float(live.open_sessions() if live else 0))
        if live is None or not live.status:
            return None
        status, maxc = status_at(live.status, now)
        page.add("cs_agent_online", values, 1.0 if status in ("online", "busy") else 0.0)
        page.add("cs_agent_max_concurrency", values, maxc)
        return status, maxc

    def _agent(self, page: Page, agg: Aggregator, series: str, values: tuple[str, ...],
               now: int) -> None:
        now_status = self._agent_live(page, agg, series, values, now)
        presence = agg.presence(series, now, AGENT_WINDOWS)
        for window, p in presence.items():
            page.add("cs_agent_max_open_sessions", [*values, window], float(p.max_open))
        live = agg.live.get(series)
        if now_status is None or live is None:
            return
        status, maxc = now_status
        online = status in ("online", "busy")
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


def engine_collector(engine: Engine, settings: Settings,
                     extra: Callable[[], dict[str, Any]] | None = None,
                     now: float | None = None) -> KpiCollector:
    """What a worker holding ``engine`` exports (its owned partitions)."""
    return KpiCollector(
        lambda: list(engine.aggregators.values()), engine.pipeline, settings, extra=extra,
        now=now, held=lambda: sum(len(s.order.held) for s in engine.stages.values()),
        label_overflow=engine.labels.overflow)


def engine_registry(engine: Engine, settings: Settings,
                    extra: Callable[[], dict[str, Any]] | None = None,
                    now: float | None = None) -> CollectorRegistry:
    """Both of a worker's pages in one registry (the audit, the tests)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(engine_collector(engine, settings, extra=extra, now=now))
    return registry


def process_collectors() -> list[Collector]:
    """The process (CPU, memory, open files), garbage-collector and Python platform families
    of a worker's floor page."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    return [registry]

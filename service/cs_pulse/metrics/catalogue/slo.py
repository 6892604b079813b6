"""The SLO catalogue: objectives, thresholds, and the alerts and recording rules built from them.
The only place these numbers are written: rules, boards, the README and the staffing gauges are
generated from or read them here. ``python -m cs_pulse.metrics.rules`` writes the Prometheus rule
files and Grafana's floor rules from ``recording_groups()`` and ``alerts()``.

Like kubernetes-mixin's ``_config``, every tunable is a field of one ``Config`` (``CONFIG``) and
the rules are functions of it: a changed threshold reaches every expression and text naming it.

The service-level split (answered within 30 s, abandoned within 5 s is not counted) is a fact
definition, so it lives with the facts (``domain/facts.py``) and is re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cs_pulse.domain.facts import SERVICE_LEVEL_TARGET_MS, SHORT_ABANDON_MS
from cs_pulse.domain.tiers import DEFAULT_TIERS

SERVICE_LEVEL_SECONDS = SERVICE_LEVEL_TARGET_MS // 1000   # "answered within 30 s"
SHORT_ABANDON_SECONDS = SHORT_ABANDON_MS // 1000


@dataclass(frozen=True)
class Threshold:
    """Levels on one number; ``below`` means lower is worse. ``critical`` is the line the
    alert fires at (and the target a board marks); ``warning`` is a second step a board
    colours, wherever it lies: boards colour by value order (dashboards.threshold_steps), so
    the service level is red below 70 %, orange to 80 % and green from the 80 % target."""

    critical: float
    warning: float | None = None
    below: bool = False


THRESHOLDS: dict[str, Threshold] = {
    # Floor target: share of customers answered within SERVICE_LEVEL_SECONDS. Also the
    # staffing target (agents needed for it) and the first-response tier share target.
    "service_level": Threshold(critical=0.80, warning=0.70, below=True),
    "first_response_tier": Threshold(critical=0.80, warning=0.70, below=True),
    "first_response_p90_seconds": Threshold(critical=float(SERVICE_LEVEL_SECONDS)),
    "oldest_waiting_seconds": Threshold(critical=120.0, warning=60.0),
    "abandonment": Threshold(critical=0.10),
    "reply_rate": Threshold(critical=0.90, below=True),
    "staffing_gap_agents": Threshold(critical=0.0),
    "forbidden_phrases_per_day": Threshold(critical=5.0, warning=1.0),
    "last_event_age_seconds": Threshold(critical=300.0),
    # Facts not folded for this long while the consumer lags: the windows are frozen.
    "last_fold_age_seconds": Threshold(critical=60.0),
}

Severity = Literal["page", "ticket"]
RUNBOOK_BASE_URL = "https://github.com/cs-pulse/cs-pulse/blob/main/docs/runbooks/"
# Peak hours come from the service's time-zone-aware cs_peak_hour (one series per shop).
AT_PEAK = "and on (shop) (shop:cs_peak_hour:max == 1)"


# --- numbers as PromQL and as words: every text formats the same value the expression uses ---

_UNITS = ((86400, "day", "d"), (3600, "hour", "h"), (60, "minute", "min"))
_WINDOW = re.compile(r"(\d+)([smhd])")


def promql_number(x: float) -> str:
    """0.8 -> "0.8", 120.0 -> "120" (Prometheus reads both; whole numbers read better)."""
    return str(int(x)) if float(x).is_integer() else repr(x)


def as_percent(ratio: float) -> str:
    """0.8 -> "80 %"."""
    return f"{ratio * 100:g} %"


def as_duration(seconds: float, *, short: bool = False) -> str:
    """120 -> "2 minutes" ("2 min" if short), 3600 -> "1 hour", 30 -> "30 s"."""
    for size, name, abbreviation in _UNITS:
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {abbreviation}" if short else f"{n} {name}{'' if n == 1 else 's'}"
    return f"{promql_number(seconds)} s"


def window_seconds(window: str) -> int:
    """A PromQL range ("5m", "6h") in seconds."""
    match = _WINDOW.fullmatch(window)
    if not match:
        raise ValueError(f"not a simple PromQL range: {window!r}")
    n, unit = match.groups()
    return int(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def over(window: str) -> str:
    """A window in words: "1h" -> "over the last hour", "6h" -> "over 6 hours"."""
    words = as_duration(window_seconds(window))
    return f"over the last {words[2:]}" if words.startswith("1 ") else f"over {words}"


def _label(name: str) -> str:
    return f"{{{{ $labels.{name} }}}}"


def _value(*pipes: str) -> str:
    return "{{ " + " | ".join(("$value", *pipes)) + " }}"


SHOP, INSTANCE, CHANNEL = _label("shop"), _label("instance"), _label("channel")
SHOP_QUEUE = f"{SHOP}/{_label('queue')}"


# --- the catalogue's types ---

@dataclass(frozen=True)
class BurnRate:
    """One multiwindow burn-rate page (SRE workbook): the error ratio over both windows above
    ``factor`` times the error budget, for ``for_``. The short window makes it resolve fast."""

    alert: str
    factor: float
    long_window: str
    short_window: str
    for_: str
    trend: str   # how the summary says the target is going ("collapsing", "slipping")


@dataclass(frozen=True)
class Slo:
    """An objective on a counter split by ``outcome``: good / (good + bad). Outcomes in neither
    (short abandons) are not counted. It holds only where ``scope`` holds (PromQL ``and``)."""

    objective: float
    period: str                 # the error budget's period, for the burn-rate arithmetic
    metric: str
    good: tuple[str, ...]
    bad: tuple[str, ...]
    scope: str
    burn_rates: tuple[BurnRate, ...]

    @property
    def error_budget(self) -> float:
        return round(1 - self.objective, 10)   # 1 - 0.95 is 0.050000000000000044 in floats

    @property
    def windows(self) -> tuple[str, ...]:
        """Every window a burn rate reads, shortest first."""
        used = {w for r in self.burn_rates for w in (r.long_window, r.short_window)}
        return tuple(sorted(used, key=window_seconds))

    def selector(self, outcomes: tuple[str, ...]) -> str:
        if len(outcomes) == 1:
            return f'{{outcome="{outcomes[0]}"}}'
        return f'{{outcome=~"{"|".join(outcomes)}"}}'

    @property
    def counted(self) -> tuple[str, ...]:
        return self.good + self.bad


@dataclass(frozen=True)
class Config:
    """Every tunable of the rules, in one place (kubernetes-mixin's ``_config``)."""

    service_level_seconds: int
    short_abandon_seconds: int
    thresholds: Mapping[str, Threshold]
    paging_slo: Slo
    queue_kpi_window: str      # abandonment and reply rate: long enough to not flap on one chat
    tier: str                  # the first-response tier a channel is alerted on
    tier_window: str
    tier_min_answers: int      # fewer answers than this in tier_window: a quiet channel, no ticket


PAGING_SLO = Slo(
    objective=0.95,
    period="30d",
    metric="cs_service_level_contacts_total",
    good=("answered_within",),
    bad=("answered_after", "abandoned_after"),
    scope=AT_PEAK,
    burn_rates=(
        BurnRate("CsServiceLevelFastBurn", 14.4, "1h", "5m", "2m", "collapsing"),
        BurnRate("CsServiceLevelSlowBurn", 6.0, "6h", "30m", "15m", "slipping"),
    ),
)

CONFIG = Config(
    service_level_seconds=SERVICE_LEVEL_SECONDS,
    short_abandon_seconds=SHORT_ABANDON_SECONDS,
    thresholds=THRESHOLDS,
    paging_slo=PAGING_SLO,
    queue_kpi_window="15m",
    tier="good",
    tier_window="6h",
    tier_min_answers=20,
)


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str
    why: str = ""   # a comment above the rule


@dataclass(frozen=True)
class RecordingGroup:
    name: str
    interval: str
    rules: tuple[Recording, ...]
    why: str = ""


@dataclass(frozen=True)
class Breach:
    """``measure`` past ``threshold``'s critical bound, only where ``guard`` holds. Kept apart
    (not one PromQL string) so Grafana can evaluate the same bound in its threshold step."""

    measure: str
    threshold: Threshold
    guard: str = ""   # an ``and ...`` clause

    @property
    def op(self) -> Literal["<", ">"]:
        return "<" if self.threshold.below else ">"

    @property
    def bound(self) -> float:
        return self.threshold.critical

    @property
    def promql(self) -> str:
        test = f"{self.measure} {self.op} {promql_number(self.bound)}"
        return f"{test}\n{self.guard}" if self.guard else test

    @property
    def query(self) -> str:
        """The measure where the guard holds, for a threshold evaluated elsewhere (Grafana)."""
        return f"{self.measure} {self.guard}".rstrip()


@dataclass(frozen=True)
class FloorRule:
    """The alert is also a Grafana-managed rule, where supervisors see and receive it."""

    uid: str
    title: str
    lookback_seconds: int   # the query's relative time range


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str | Breach
    for_: str
    severity: Severity
    summary: str
    description: str
    runbook: str            # a file in docs/runbooks/
    why: str = ""           # a comment above the rule
    floor: FloorRule | None = None
    prometheus: bool = True  # False: only the floor's Grafana rule

    def __post_init__(self) -> None:
        if self.floor and not isinstance(self.expr, Breach):
            raise ValueError(f"{self.name}: a floor rule needs a Breach (Grafana's threshold)")
        if not (self.prometheus or self.floor):
            raise ValueError(f"{self.name}: rendered nowhere")

    @property
    def promql(self) -> str:
        return self.expr.promql if isinstance(self.expr, Breach) else self.expr

    @property
    def runbook_url(self) -> str:
        return RUNBOOK_BASE_URL + self.runbook


# --- the rules ---

def error_ratio_record(window: str) -> str:
    return f"shop_queue:cs_service_level_errors:ratio_rate{window}"


def burn_rate_rules(config: Config = CONFIG) -> tuple[tuple[Recording, ...], tuple[Alert, ...]]:
    """The error ratio for every window the burn rates read, and one page per burn rate: the one
    generator of both, so a window cannot be paged on without being recorded."""
    slo = config.paging_slo
    sl = as_duration(config.service_level_seconds)
    records = tuple(
        Recording(error_ratio_record(w), "\n".join((
            f"sum by (shop, queue) (rate({slo.metric}{slo.selector(slo.bad)}[{w}]))",
            "/",
            f"sum by (shop, queue) (rate({slo.metric}{slo.selector(slo.counted)}[{w}]))")))
        for w in slo.windows)

    def page(rate: BurnRate) -> Alert:
        factor = promql_number(rate.factor)
        burning = f"> ({factor} * {promql_number(slo.error_budget)})"
        return Alert(
            name=rate.alert,
            expr="\n".join((
                "(",
                f"  {error_ratio_record(rate.long_window)} {burning}",
                f"  and {error_ratio_record(rate.short_window)} {burning}",
                ")",
                slo.scope)),
            for_=rate.for_,
            severity="page",
            summary=f"{SHOP_QUEUE}: {sl} response target {rate.trend} at peak",
            description=(f"{_value('humanizePercentage')} of customers in {SHOP_QUEUE} missed the "
                         f"{sl} target {over(rate.long_window)} (burn rate above {factor}x)."),
            runbook="service-level-burn.md")

    return records, tuple(page(rate) for rate in slo.burn_rates)


def recording_groups(config: Config = CONFIG) -> tuple[RecordingGroup, ...]:
    slo = config.paging_slo
    kpi, tier_window = config.queue_kpi_window, config.tier_window
    error_ratios, _ = burn_rate_rules(config)
    ratio5m = error_ratio_record("5m")
    if ratio5m not in {r.record for r in error_ratios}:   # the boards' current service level
        raise ValueError("the paging SLO's burn rates must read a 5m window")

    def tier_share(window: str) -> Recording:
        return Recording(
            f"shop_channel_tier:cs_first_response_within:ratio_rate{window}", "\n".join((
                f"sum by (shop, channel, tier) (rate(cs_first_response_within_total[{window}]))",
                "/ on (shop, channel) group_left",
                f"sum by (shop, channel) (rate(cs_first_response_seconds_count[{window}]))")))

    return (
        RecordingGroup("cs_pulse_service_level", "30s", (
            Recording("shop_queue:cs_service_level_contacts:rate5m",
                      f"sum by (shop, queue, outcome) (rate({slo.metric}[5m]))"),
            *error_ratios,
            Recording("shop_queue:cs_service_level:ratio_rate5m", f"1 - {ratio5m}"),
            Recording("shop:cs_service_level:ratio_rate5m", "\n".join((
                f"sum by (shop) (rate({slo.metric}{slo.selector(slo.good)}[5m]))",
                "/",
                f"sum by (shop) (rate({slo.metric}{slo.selector(slo.counted)}[5m]))"))),
        )),
        RecordingGroup("cs_pulse_catalogue", "1m", why=(
            "The seeds' catalogue, live: resolution, handled conversations, forbidden phrases, "
            "reviews."), rules=(
            Recording("shop_queue:cs_resolution:ratio_rate1h", "\n".join((
                "sum by (shop, queue) (rate(cs_resolved_total[1h]))",
                "/ sum by (shop, queue) (rate(cs_conversations_ended_total[1h]))"))),
            Recording("shop_queue:cs_resolution_seconds:p50_rate1h",
                      "histogram_quantile(0.5, sum by (shop, queue, le) "
                      "(rate(cs_resolution_seconds_bucket[1h])))"),
            Recording("shop_agent:cs_agent_conversations_handled:increase1h",
                      "sum by (shop, agent) (increase(cs_agent_conversations_handled_total[1h]))"),
            Recording("shop_agent:cs_agent_forbidden_phrases:increase1d",
                      "sum by (shop, agent) (increase(cs_agent_forbidden_phrases_total[1d]))"),
            Recording("shop_agent:cs_agent_csat_dissatisfied:increase1d",
                      "sum by (shop, agent) (increase(cs_agent_csat_dissatisfied_total[1d]))"),
            Recording("shop_agent:cs_agent_customers_received:increase1d",
                      "sum by (shop, agent) (increase(cs_agent_customers_received_total[1d]))"),
            Recording("shop_agent:cs_agent_customer_refund:ratio_increase7d", "\n".join((
                "sum by (shop, agent) (increase(cs_agent_customers_refunded_total[7d]))",
                "/ sum by (shop, agent) (increase(cs_agent_customers_converted_total[7d]))")),
                why="After-sales arrive days after the order: rates over a week of counts."),
            Recording("shop_agent:cs_agent_orders_returned:ratio_increase7d", "\n".join((
                "sum by (shop, agent, kind) (increase(cs_agent_orders_returned_total[7d]))",
                "/ on (shop, agent) group_left",
                "sum by (shop, agent) (increase(cs_agent_orders_credited_total[7d]))"))),
            Recording("shop:cs_refunds:increase1d",
                      "sum by (shop, reason) (increase(cs_refunds_total[1d]))"),
        )),
        RecordingGroup("cs_pulse_first_response_tiers", "1m", why=(
            'First response against each channel\'s tiers (README "First response against '
            'channel tiers"): the worker classifies every answered wait against its channel\'s '
            "own targets, so one rule serves chat's minutes and email's business hours alike. "
            f"1h for the boards, {tier_window} for the tier alert."), rules=(
            *(tier_share(w) for w in sorted({"1h", tier_window}, key=window_seconds)),
            Recording(f"shop_channel:cs_first_response_seconds_count:increase{tier_window}",
                      "sum by (shop, channel) "
                      f"(increase(cs_first_response_seconds_count[{tier_window}]))"),
            Recording("channel_tier:cs_first_response_tier_target_seconds:max",
                      "max by (channel, tier) (cs_first_response_tier_target_seconds)"),
        )),
        RecordingGroup("cs_pulse_kpis", "30s", (
            Recording("shop_queue:cs_first_response_seconds:p50_rate5m",
                      "histogram_quantile(0.5, sum by (shop, queue, le) "
                      "(rate(cs_first_response_seconds_bucket[5m])))"),
            Recording("shop_queue:cs_first_response_seconds:p90_rate5m",
                      "histogram_quantile(0.9, sum by (shop, queue, le) "
                      "(rate(cs_first_response_seconds_bucket[5m])))"),
            Recording("shop_queue:cs_first_response_seconds:avg_rate5m", "\n".join((
                "sum by (shop, queue) (rate(cs_first_response_seconds_sum[5m]))",
                "/ sum by (shop, queue) (rate(cs_first_response_seconds_count[5m]))"))),
            Recording("shop_queue:cs_response_seconds:p90_rate5m",
                      "histogram_quantile(0.9, sum by (shop, queue, le) "
                      "(rate(cs_response_seconds_bucket[5m])))"),
            Recording(f"shop_queue:cs_abandonment:ratio_rate{kpi}", "\n".join((
                f"sum by (shop, queue) (rate(cs_abandoned_total[{kpi}]))",
                f"/ sum by (shop, queue) (rate(cs_queued_total[{kpi}]))"))),
            Recording(f"shop_queue:cs_reply_rate:ratio_rate{kpi}", "\n".join((
                "sum by (shop, queue) "
                f'(rate(cs_customer_messages_concluded_total{{outcome="answered"}}[{kpi}]))',
                f"/ sum by (shop, queue) (rate(cs_customer_messages_concluded_total[{kpi}]))"))),
            Recording("shop_queue:cs_queued:rate5m",
                      "sum by (shop, queue) (rate(cs_queued_total[5m]))"),
            Recording("shop_queue:cs_waiting_conversations:sum",
                      "sum by (shop, queue) (cs_waiting_conversations)"),
            Recording("shop_queue:cs_oldest_waiting_seconds:max",
                      "max by (shop, queue) (cs_oldest_waiting_seconds)"),
            Recording("shop_agent:cs_agent_open_sessions:sum",
                      "sum by (shop, team, agent) (cs_agent_open_sessions)"),
            Recording("shop:cs_agent_online:sum", "sum by (shop) (cs_agent_online)"),
            Recording("shop:cs_peak_hour:max", "max by (shop) (cs_peak_hour)"),
            Recording("shop:cs_staffing_gap_agents:max", "max by (shop) (cs_staffing_gap_agents)"),
            Recording("shop:cs_staffing_agents_needed:max",
                      "max by (shop) (cs_staffing_agents_needed)"),
        )),
        RecordingGroup("cs_pulse_pipeline", "30s", (
            Recording("job:cs_events_processed:rate5m",
                      "sum by (job) (rate(cs_events_processed_total[5m]))"),
            Recording("job:cs_events_rejected:rate5m",
                      "sum by (job, reason) (rate(cs_events_rejected_total[5m]))"),
            Recording("job:cs_event_lag_seconds:p99_rate5m",
                      "histogram_quantile(0.99, sum by (job, le) "
                      "(rate(cs_event_lag_seconds_bucket[5m])))"),
            # Facts partitions (the KPI series) no ready worker serves: a takeover under way,
            # or nobody left to take them. 0 when every one is served.
            Recording("job:cs_fact_partitions_unserved:count",
                      "max by (job) (cs_partitions) - (sum by (job) (cs_owned_fact_partitions "
                      "and on (job, instance) cs_ready == 1) or max by (job) (cs_partitions) "
                      "* 0)"),
        )),
    )


def alerts(config: Config = CONFIG) -> tuple[Alert, ...]:
    """Every alert once, pages first. Floor rules are the supervisors' Grafana view."""
    t = config.thresholds
    sl = as_duration(config.service_level_seconds)
    floor_target = as_percent(t["service_level"].critical)
    kpi = as_duration(window_seconds(config.queue_kpi_window), short=True)
    tier, tier_window = config.tier, config.tier_window
    oldest = as_duration(t["oldest_waiting_seconds"].critical)
    tier_share = as_percent(t["first_response_tier"].critical)
    # " of 4h 0m 0s": the channel's configured target, read back from its gauge at alert time
    tier_target = ('{{ with printf "channel_tier:cs_first_response_tier_target_seconds:max'
                   f"{{channel='%s',tier='{tier}'}}\" $labels.channel | query }}}}"
                   " of {{ . | first | value | humanizeDuration }}{{ end }}")
    default_good = {ch: as_duration(getattr(DEFAULT_TIERS[ch], tier), short=True)
                    for ch in ("chat", "social", "email")}
    _, burn_pages = burn_rate_rules(config)
    return (
        *burn_pages,
        Alert(
            name="CsFirstResponseP90AboveTarget",
            expr=Breach("shop_queue:cs_first_response_seconds:p90_rate5m",
                        t["first_response_p90_seconds"], guard=AT_PEAK),
            for_="10m",
            severity="page",
            summary=(f"{SHOP_QUEUE}: first-response p90 above "
                     f"{as_duration(t['first_response_p90_seconds'].critical)} at peak"),
            description=f"First-response p90 is {_value('humanizeDuration')} in {SHOP_QUEUE}.",
            runbook="first-response-p90.md"),
        Alert(
            name="CsServiceLevelBelowFloorTarget",
            expr=Breach("shop:cs_service_level:ratio_rate5m", t["service_level"], guard=AT_PEAK),
            for_="10m",
            severity="ticket",
            summary=f"Service level {sl} below the {floor_target} target at peak",
            description=f"{SHOP} answers fewer than {floor_target} of customers within {sl}.",
            runbook="service-level-burn.md",
            floor=FloorRule("cs-floor-sl30-peak",
                            f"Service level {sl} below {floor_target} during peak", 600),
            # On-call is paged by the burn rates; the floor target is the supervisors' view.
            prometheus=False),
        Alert(
            name="CsFirstResponseTierMissed",
            expr=Breach(
                f'shop_channel_tier:cs_first_response_within:ratio_rate{tier_window}'
                f'{{tier="{tier}"}}',
                t["first_response_tier"],
                guard=(f"and on (shop, channel) shop_channel:cs_first_response_seconds_count:"
                       f"increase{tier_window} >= {config.tier_min_answers}")),
            for_="30m",
            severity="ticket",
            summary=(f"{SHOP}/{CHANNEL}: fewer than {tier_share} of first responses within "
                     f"the channel's {tier} tier"),
            description=(f"Only {_value('humanizePercentage')} of {CHANNEL} first responses in "
                         f"{SHOP} met the {tier} target{tier_target} {over(tier_window)} "
                         f"(objective {tier_share})."),
            runbook="first-response-tier.md",
            why=(f'Each channel against its own "{tier}" tier (chat {default_good["chat"]}, '
                 f'social {default_good["social"]}, email {default_good["email"]} of business '
                 f"time by default); {config.tier_min_answers} answers at least, so a quiet "
                 "channel cannot flap.")),
        Alert(
            name="CsAbandonmentHigh",
            expr=Breach(f"shop_queue:cs_abandonment:ratio_rate{config.queue_kpi_window}",
                        t["abandonment"]),
            for_="15m",
            severity="ticket",
            summary=f"{SHOP_QUEUE}: abandonment above {as_percent(t['abandonment'].critical)}",
            description=(f"{_value('humanizePercentage')} of queued customers left before a "
                         f"human reply ({kpi})."),
            runbook="abandonment-high.md"),
        Alert(
            name="CsReplyRateLow",
            expr=Breach(f"shop_queue:cs_reply_rate:ratio_rate{config.queue_kpi_window}",
                        t["reply_rate"]),
            for_="15m",
            severity="ticket",
            summary=f"{SHOP_QUEUE}: reply rate below {as_percent(t['reply_rate'].critical)}",
            description=(f"Only {_value('humanizePercentage')} of customer messages were "
                         f"answered ({kpi})."),
            runbook="reply-rate-low.md"),
        Alert(
            name="CsOldestWaitingTooLong",
            expr=Breach("shop_queue:cs_oldest_waiting_seconds:max", t["oldest_waiting_seconds"]),
            for_="2m",
            severity="ticket",
            summary=f"{SHOP_QUEUE}: a customer has waited over {oldest}",
            description=(f"The oldest waiting customer has waited "
                         f"{_value('humanizeDuration')}."),
            runbook="oldest-waiting.md",
            floor=FloorRule("cs-floor-oldest-waiting", f"A customer has waited over {oldest}",
                            300)),
        Alert(
            name="CsStaffingGap",
            expr=Breach("shop:cs_staffing_gap_agents:max", t["staffing_gap_agents"]),
            for_="10m",
            severity="ticket",
            summary=f"{SHOP}: {_value()} more agents needed",
            description=(f"Erlang C says {_value()} more agents are needed to answer "
                         f"{floor_target} within {sl} at the current arrival rate and handle "
                         "time."),
            runbook="staffing-gap.md",
            floor=FloorRule("cs-floor-staffing-gap", "More agents needed than online", 600)),
        Alert(
            name="CsPipelineStalled",
            expr=Breach("max by (job, instance) (cs_last_event_age_seconds)",
                        t["last_event_age_seconds"]),
            for_="5m",
            severity="ticket",
            summary=(f"{INSTANCE}: no events consumed for "
                     f"{as_duration(t['last_event_age_seconds'].critical)}"),
            description=(f"The worker has not consumed an event for "
                         f"{_value('humanizeDuration')}; KPIs are frozen."),
            runbook="pipeline-stalled.md"),
        Alert(
            name="CsStageUnowned",
            expr="\n".join((
                "max by (job, instance) (cs_owned_event_partitions) > 0",
                "and on (job, instance) (",
                "  max by (job, instance) (cs_owned_fact_partitions) == 0",
                "  or max by (job, instance) (cs_owned_customer_partitions) == 0)")),
            for_="2m",
            severity="ticket",
            summary=f"{INSTANCE}: reads events but owns no facts or customer partitions",
            description=("Events are decoded but nothing reaches the windows: the boards and "
                         "alerts of its partitions are frozen."),
            runbook="stage-unowned.md"),
        Alert(
            name="CsPartitionsUnserved",
            expr="job:cs_fact_partitions_unserved:count > 0",
            for_="3m",
            severity="page",
            summary="{{ $value }} facts partitions without a serving worker",
            description=("No ready worker serves {{ $value }} partitions of the KPI series for "
                         "3 minutes: the shops hashed there are blind (their series absent, "
                         "their burn-rate alerts without data) until a worker takes them over."),
            runbook="partitions-unserved.md"),
        Alert(
            name="CsFoldingStalled",
            expr=Breach("max by (job, instance) (cs_last_fold_age_seconds)",
                        t["last_fold_age_seconds"],
                        guard=("and on (job, instance) "
                               "max by (job, instance) (cs_consumer_lag_messages) > 0")),
            for_="2m",
            severity="ticket",
            summary=f"{INSTANCE}: nothing folded into the windows while input waits",
            description=(f"No facts folded for {_value('humanizeDuration')} while the consumer "
                         "lags; KPIs are frozen."),
            runbook="folding-stalled.md"),
        Alert(
            name="CsLabelOverflow",
            expr="sum by (job, instance, label) (increase(cs_label_overflow_total[10m])) > 0",
            for_="0m",
            severity="ticket",
            summary=f"{INSTANCE}: too many distinct {{{{ $labels.label }}}} values",
            description=("Events with a new {{ $labels.label }} value past its limit are "
                         "counted under \"other\" ({{ $value }} in 10 minutes): a producer "
                         "sends ids where names belong, or the limit is too low."),
            runbook="label-overflow.md"),
        Alert(
            name="CsWorkerDown",
            expr='up{job="cs-pulse"} == 0',
            for_="2m",
            severity="ticket",
            summary=f"{INSTANCE}: cs-pulse worker down",
            description=("Prometheus cannot scrape the worker; its partitions move to the others "
                         "after the session timeout."),
            runbook="worker-down.md"),
    )

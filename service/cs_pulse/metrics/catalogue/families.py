"""Every exported metric family, declared once: name, type, labels, help and unit.

Most families exist per series scope (queue ``cs_*``, agent ``cs_agent_*``, team ``cs_team_*``,
shop ``cs_*`` with ``shop`` only, worker ``cs_*`` without labels). A declaration names its
scopes and the fact kinds it reads; ``FAMILIES`` is the concrete list the collector exports,
the README's metric table shows and a test holds every page to.

Naming: base units, ``_seconds``, ``_ratio``, ``_total`` (counters are declared without it,
as client_python's families are); never customer or conversation ids as labels.

Size: a worker serves two pages (``Endpoint``). Per agent, only the live three are on the floor
page; the rest is on the agent page, with durations as summaries (no buckets) and windows
``AGENT_WINDOWS`` only: at 2,000 agents the single page had 465,000 lines, four fifths of
them per-agent detail that only the Agent scorecard board reads (README "Exposition rules").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cs_pulse.domain.facts import REFUND_REASONS
from cs_pulse.domain.model import SeriesKind
from cs_pulse.domain.tiers import TIER_KINDS
from cs_pulse.metrics.catalogue.slo import SERVICE_LEVEL_SECONDS, SHORT_ABANDON_SECONDS

SL = f"{SERVICE_LEVEL_SECONDS} s"
SHORT = f"{SHORT_ABANDON_SECONDS} s"


class Endpoint(StrEnum):
    """The page of a worker a family is served on."""

    FLOOR = "/metrics"              # scraped every 15 s: rules, alerts, the floor boards
    AGENTS = "/metrics/agents"      # scraped every 60 s: the Agent scorecard board


EVERY_ENDPOINT = frozenset(Endpoint)


class Scope(StrEnum):
    QUEUE = "queue"
    AGENT = "agent"
    TEAM = "team"
    SHOP = "shop"
    WORKER = "worker"


PREFIX = {Scope.QUEUE: "cs_", Scope.AGENT: "cs_agent_", Scope.TEAM: "cs_team_",
          Scope.SHOP: "cs_", Scope.WORKER: "cs_"}
LABELS: dict[Scope, tuple[str, ...]] = {
    Scope.QUEUE: ("shop", "queue", "channel"), Scope.AGENT: ("shop", "team", "agent"),
    Scope.TEAM: ("shop", "team"), Scope.SHOP: ("shop",), Scope.WORKER: ()}
SCOPE_OF = {SeriesKind.QUEUE: Scope.QUEUE, SeriesKind.AGENT: Scope.AGENT,
            SeriesKind.TEAM: Scope.TEAM, SeriesKind.SHOP: Scope.SHOP}
QA = (Scope.QUEUE, Scope.AGENT)
AT = (Scope.AGENT, Scope.TEAM)


@dataclass(frozen=True)
class Family:
    name: str
    type: str                     # counter, gauge, histogram, summary
    help: str
    labels: tuple[str, ...]
    unit: str = ""                # seconds, ratio, score or "" (a count)
    endpoints: frozenset[Endpoint] = frozenset({Endpoint.FLOOR})


@dataclass(frozen=True)
class FactCounter:
    """A counter over totals of fact kinds; with ``label``, one sample per label value."""

    suffix: str
    help: str
    kinds: dict[str, str]               # label value ("" without label) -> fact kind
    label: str = ""
    scopes: tuple[Scope, ...] = QA
    # Exported (at 0) as soon as its series has this other kind: a sum over items of that
    # kind (violations of agent messages), like characters over messages.
    zero_with: str = ""


@dataclass(frozen=True)
class Derived:
    """A gauge (or counter) computed by the collector; ``key`` is what it reads (a KPI name,
    fact kind or fact histogram) where that differs from the name."""

    suffix: str
    help: str
    scopes: tuple[Scope, ...]
    labels: tuple[str, ...] = ()
    unit: str = ""
    key: str = ""
    type: str = "gauge"


@dataclass(frozen=True)
class FactHistogram:
    suffix: str
    help: str
    kind: str                           # histogram fact kind (domain/facts.HISTOGRAMS)
    unit: str = "seconds"
    scopes: tuple[Scope, ...] = QA


W = ("window",)
COUNTERS: tuple[FactCounter, ...] = (
    FactCounter("conversations", "Conversations created (under the queue at creation).",
                {"": "conversations"}),
    FactCounter("queued", "Waits for a human, counted when settled, at their start.",
                {"": "queued"}),
    FactCounter("messages", "Messages by sender.", {"customer": "customer_messages",
                "agent": "agent_messages", "bot": "bot_messages"}, "sender"),
    FactCounter("message_characters", "Message characters by sender.", {
        "customer": "customer_chars", "agent": "agent_chars", "bot": "bot_chars"}, "sender"),
    FactCounter("customer_messages_concluded",
                "Customer messages to a human, answered or unanswered at the close.",
                {"answered": "messages_answered", "unanswered": "messages_unanswered"},
                "outcome"),
    FactCounter("runs", "Customer message runs, answered or unanswered at the close.",
                {"answered": "runs_answered", "unanswered": "runs_unanswered"}, "outcome"),
    FactCounter("conversations_ended", "Segment closes.", {"": "ended"}),
    FactCounter("conversations_replied", "Segment closes with a human reply.",
                {"": "ended_replied"}),
    FactCounter("service_level_contacts",
                f"Settled waits: answered within/after {SL}, abandoned within/after {SHORT}.",
                {"answered_within": "sl_answered_within", "answered_after": "sl_answered_after",
                 "abandoned_within": "sl_abandoned_within",
                 "abandoned_after": "sl_abandoned_after"}, "outcome"),
    FactCounter("abandoned", "Waits abandoned before a human reply (at the wait start).",
                {"": "abandoned"}),
    FactCounter("first_response_within", "Answered waits within the channel's first-response "
                "tier target (at the answer).", TIER_KINDS, "tier"),
    FactCounter("short_abandoned", f"Waits abandoned within {SHORT} (at the wait start).",
                {"": "abandoned_short"}),
    FactCounter("transferred", "Conversations transferred at least once (at creation).",
                {"": "transferred"}),
    FactCounter("escalated", "Conversations escalated at least once (at creation).",
                {"": "escalated"}),
    FactCounter("reopened", "Reopens of closed conversations.", {"": "reopened"}),
    FactCounter("resolved", "Closes as resolved.", {"": "resolved"}),
    FactCounter("resolved_repeat", "Resolutions that were not first-contact (at the "
                "resolution).", {"": "resolved_repeat"}),
    FactCounter("csat_satisfied", "Ratings >= 4 of 5 (normalised).", {"": "csat_satisfied"}),
    FactCounter("csat_dissatisfied", "Ratings <= 2 of 5 (normalised).",
                {"": "csat_dissatisfied"}),
    FactCounter("csat_dissatisfied_attitude", "Ratings <= 2 of 5 blaming the agent's attitude.",
                {"": "csat_dissatisfied_attitude"}),
    FactCounter("conversations_handled", "Conversations handled (first held), once per agent.",
                {"": "handled"}),
    FactCounter("forbidden_phrases", "Forbidden-phrase occurrences in agent messages.",
                {"": "forbidden_phrases"}, zero_with="agent_messages"),
    FactCounter("served", "Conversations served: first wait answered.", {"": "served"}),
    FactCounter("converted", "Served conversations with a qualifying order (at the served "
                "time).", {"": "converted"}),
    FactCounter("attributed_gmv", "Amount of the orders crediting served conversations.",
                {"": "gmv"}),
    FactCounter("orders_credited", "(Served conversation, qualifying order) pairs (at the "
                "served time).", {"": "orders_credited"}),
    FactCounter("orders_returned", "Credited pairs whose order was returned or exchanged (at "
                "the served time).", {"return": "orders_returned",
                                      "exchange": "orders_exchanged"}, "kind",
                zero_with="orders_credited"),
    # Customers (接待数), once per series and local day: agent and team series.
    FactCounter("customers_received", "Customers received, once per series and local day.",
                {"": "customers_received"}, scopes=AT),
    FactCounter("customers_converted", "Customers received who converted that day.",
                {"": "customers_converted"}, scopes=AT, zero_with="customers_received"),
    FactCounter("customers_refunded", "Converted customers who requested a refund of a "
                "credited order.", {"": "customers_refunded"}, scopes=AT,
                zero_with="customers_received"),
    # Per shop.
    FactCounter("orders", "Paid orders.", {"": "orders"}, scopes=(Scope.SHOP,)),
    FactCounter("orders_amount", "Amount of paid orders.", {"": "orders_amount"},
                scopes=(Scope.SHOP,)),
    FactCounter("orders_attributed", "Paid orders that credit at least one served "
                "conversation.", {"": "orders_attributed"}, scopes=(Scope.SHOP,)),
    FactCounter("refunds_amount", "Amount of refund requests.", {"": "refunds_amount"},
                scopes=(Scope.SHOP,)),
    FactCounter("refunds", "Refund requests by reason.",
                {r: f"refunds_{r}" for r in REFUND_REASONS}, "reason", scopes=(Scope.SHOP,)),
    FactCounter("order_returns", "Orders sent back, by kind.",
                {"return": "order_returns", "exchange": "order_exchanges"}, "kind",
                scopes=(Scope.SHOP,)),
)
HISTOGRAMS: tuple[FactHistogram, ...] = (
    FactHistogram("first_response_seconds", "Wait start to the first human reply.",
                  "first_response"),
    FactHistogram("response_seconds", "First message of a customer run to the next reply.",
                  "response"),
    FactHistogram("abandon_wait_seconds", "Wait before abandoning.", "abandon_wait"),
    FactHistogram("resolution_seconds", "Segment start to the resolving close.", "resolution"),
    FactHistogram("handle_seconds", "Handle time: segment (queue) or holding (agent).",
                  "handle"),
    FactHistogram("csat_score", "Ratings normalised to 1-5.", "csat", unit="score"),
)
# Window gauges from ``domain.kpis.kpis`` (key: the KPI name), every window, None left out.
WINDOW_KPIS: tuple[Derived, ...] = tuple(Derived(s, h, QA, W, u, k) for k, s, h, u in (
    ("reply_rate", "reply_rate_ratio", "Customer messages answered / concluded.", "ratio"),
    ("run_reply_rate", "run_reply_rate_ratio", "Customer runs answered / concluded.", "ratio"),
    ("conversation_reply_rate", "conversation_reply_rate_ratio",
     "Segment closes with a human reply / segment closes.", "ratio"),
    ("service_level", "service_level_ratio",
     f"Answered within {SL} / (answered + abandoned after {SHORT}).", "ratio"),
    ("abandonment", "abandonment_ratio", "Abandoned / waits (both at the wait start).",
     "ratio"),
    ("short_abandonment", "short_abandonment_ratio", f"Abandoned within {SHORT} / waits.",
     "ratio"),
    ("transfer", "transfer_ratio", "Transferred / conversations.", "ratio"),
    ("escalation", "escalation_ratio", "Escalated / conversations.", "ratio"),
    ("fcr", "first_contact_resolution_ratio", "First-contact resolutions / resolutions.",
     "ratio"),
    ("csat", "csat_mean_score", "Mean rating normalised to 1-5.", "score"),
    ("csat_satisfied", "csat_satisfied_ratio", "Ratings >= 4 / ratings.", "ratio"),
    ("csat_dissatisfied", "csat_dissatisfied_ratio", "Ratings <= 2 / ratings.", "ratio"),
    ("attitude_positive", "attitude_positive_ratio", "Positive attitude / attitude ratings.",
     "ratio"),
    ("conversion", "conversion_ratio", "Converted / served.", "ratio"),
    ("aht_seconds", "handle_time_window_seconds", "Mean handle time.", "seconds"),
    ("resolution", "resolution_ratio", "Resolutions / segment closes.", "ratio"),
    ("return", "return_ratio", "Credited orders returned / credited orders.", "ratio"),
    ("exchange", "exchange_ratio", "Credited orders exchanged / credited orders.", "ratio"),
))
# p50/p90/avg of a histogram over each window (key: the histogram fact kind).
WINDOW_STATS: tuple[Derived, ...] = tuple(
    Derived(f"{kind}_window_seconds", f"{kind.replace('_', ' ')} p50/p90/avg over the window.",
            QA, ("window", "stat"), "seconds", kind)
    for kind in ("first_response", "response", "resolution"))
# Agent counts per window, every agent series and window, 0 included (key: the fact kind).
AGENT_WINDOW_COUNTS: tuple[Derived, ...] = (
    Derived("handled_conversations", "Conversations handled in the window.", (Scope.AGENT,), W,
            key="handled"),
    Derived("forbidden_phrase_uses", "Forbidden-phrase occurrences in the window.",
            (Scope.AGENT,), W, key="forbidden_phrases"),
)
CUSTOMER_KPIS: tuple[Derived, ...] = (
    Derived("customer_conversion_ratio", "Customers converted / customers received (today).",
            AT, W, "ratio", "customer_conversion"),
    Derived("customer_refund_ratio", "Customers refunded / customers converted (today).", AT,
            W, "ratio", "customer_refund"),
)
PRESENCE_KPIS: tuple[Derived, ...] = (
    Derived("online_rate_ratio", "Online time / (last online - first online) in the window.",
            (Scope.AGENT,), W, "ratio", "online_rate"),
    Derived("slot_utilisation_ratio", "Time-weighted min(open sessions, max concurrency) / max "
            "concurrency while online.", (Scope.AGENT,), W, "ratio", "slot_utilisation"),
)
# Staffing per shop (key: the field of domain.staffing.Staffing).
STAFFING: tuple[Derived, ...] = tuple(Derived(s, h, (Scope.SHOP,), (), u, k) for s, h, u, k in (
    ("staffing_arrival_rate", "Waits begun per second (15 m).", "", "arrivals_per_second"),
    ("staffing_handle_seconds", "Mean handle time used (60 m, else today).", "seconds",
     "handle_seconds"),
    ("staffing_concurrency", "Mean max concurrency of agents online.", "", "concurrency"),
    ("staffing_agents_online", "Agents online or busy now.", "", "agents_online"),
    ("staffing_agents_needed", f"Erlang C agents needed to answer the target share within "
     f"{SL}.", "", "agents_needed"),
    ("staffing_gap_agents", "Agents needed - agents online.", "", "gap"),
    ("staffing_expected_service_level_ratio", "Erlang C service level with the agents online "
     "now.", "ratio", "expected_service_level"),
    ("staffing_expected_asa_seconds", "Erlang C average speed of answer with the agents online "
     "now.", "seconds", "expected_asa_seconds"),
    ("staffing_expected_abandon_ratio", "Erlang A abandonment with the agents online now.",
     "ratio", "expected_abandon"),
    ("staffing_patience_seconds", "Estimated mean customer patience (60 m).", "seconds",
     "patience_seconds"),
))
AGENT = (Scope.AGENT,)
QUEUE = (Scope.QUEUE,)
# Per agent, the windows the Agent scorecard board reads; queue series have every window.
AGENT_WINDOWS = ("60m", "today")
# Per agent on the floor page: what the recording rules, floor and volume boards read.
LIVE_AGENT = ("open_sessions", "online", "max_concurrency")
# On both pages: each page's windows end at the instant it was read (the audit reads it).
ON_EVERY_PAGE = ("window_end_timestamp_seconds",)
OTHERS: tuple[Derived, ...] = (
    Derived("waiting_conversations", "Customers waiting now for a first or next reply.", QA),
    Derived("oldest_waiting_seconds", "Age of the oldest wait (0 if none).", QA,
            unit="seconds"),
    Derived("first_response_tier_ratio", "Answered waits within the channel's tier target / "
            "answered waits.", QUEUE, ("window", "tier"), "ratio"),
    Derived("hourly_volume", "Today's volume by local hour of day.", QUEUE, ("hour", "kind")),
    Derived("received_customers", "Customers received today.", AT, W),
    Derived("customers_received_by_hour", "Customers received today by the local hour their "
            "conversation began (分时接待).", AT, ("hour",)),
    Derived("open_sessions", "Conversations held now (concurrent sessions).", AGENT),
    Derived("max_open_sessions", "Most sessions open at once in the window.", AGENT, W),
    Derived("online", "1 while online or busy.", AGENT),
    Derived("max_concurrency", "Max concurrent chats (last known).", AGENT),
    Derived("slot_utilisation_now_ratio", "min(open sessions, max concurrency) / max "
            "concurrency.", AGENT, unit="ratio"),
    Derived("online_today_seconds", "Seconds online or busy today.", AGENT, unit="seconds"),
    Derived("logins_today", "Status changes from offline today.", AGENT),
    Derived("first_online_timestamp_seconds", "First online today.", AGENT, unit="seconds"),
    Derived("last_online_timestamp_seconds", "Last online today.", AGENT, unit="seconds"),
    Derived("offline_during_shift_today_seconds", "Not online between first and last online "
            "today.", AGENT, unit="seconds"),
    Derived("peak_hour", "1 while the shop's peak calendar is active (local time).",
            (Scope.SHOP,)),
)
WORKER = (Scope.WORKER,)
PIPELINE: tuple[Derived, ...] = (
    Derived("window_end_timestamp_seconds", "The instant (event time) the windows on this page "
            "end at.", WORKER, unit="seconds"),
    Derived("facts_duplicate", "Re-sent facts dropped.", WORKER, type="counter"),
    Derived("facts_late", "Facts older than every rolling window (kept in totals and their "
            "day).", WORKER, type="counter"),
    Derived("first_response_tier_target_seconds", "Each channel's first-response tier targets "
            "(configuration).", WORKER, ("channel", "tier"), "seconds"),
    Derived("events_processed", "Valid events (duplicates included).", WORKER, ("type",),
            type="counter"),
    Derived("events_rejected", "Events sent to the dead-letter topic.", WORKER, ("reason",),
            type="counter"),
    Derived("events_orphaned", "Events for a conversation not known (ended or never started).",
            WORKER, ("type",), type="counter"),
    Derived("label_overflow", "Events whose label value was folded into \"other\": the label "
            "had reached its limit of distinct values on this worker.", WORKER, ("label",),
            type="counter"),
    Derived("events_duplicate", "Events with an already-applied event_id.", WORKER,
            type="counter"),
    Derived("events_late", "Events behind the watermark (took effect at it).", WORKER,
            type="counter"),
    Derived("input_replayed_records", "Records re-delivered after a restart or rebalance, "
            "dropped before decoding.", WORKER, type="counter"),
    Derived("input_rewinds", "Consumer rewinds after a gap in the offsets.", WORKER,
            type="counter"),
    Derived("input_lost_records", "Records deleted by retention before they were processed.",
            WORKER, type="counter"),
    Derived("input_held_records", "Records waiting for the watermark (grace period) before "
            "they take effect.", WORKER),
    Derived("event_lag_seconds", "Processing time minus event time.", WORKER, unit="seconds",
            type="histogram"),
    Derived("last_event_age_seconds", "Seconds since the last event was consumed.", WORKER,
            unit="seconds"),
    Derived("last_fold_age_seconds", "Seconds since facts were last folded into the windows.",
            WORKER, unit="seconds"),
    # From the Kafka side (app.FaustBus.gauges).
    Derived("ready", "1 when every stage owns partitions here and recovery is over.", WORKER),
    Derived("partitions", "Partitions of each stage's topic (CS_PULSE_PARTITIONS).", WORKER),
    Derived("owned_event_partitions", "Events partitions owned by this worker.", WORKER),
    Derived("owned_customer_partitions", "Customers partitions owned by this worker.", WORKER),
    Derived("owned_fact_partitions", "Facts partitions owned by this worker.", WORKER),
    Derived("consumer_lag_messages", "Records not yet read, over the partitions owned.",
            WORKER),
    Derived("changelog_fenced_rows", "Changelog rows dropped as fenced off (at a recovery or "
            "while following as a standby): written by a worker after a new owner had fenced "
            "the partition (a zombie).", WORKER, type="counter"),
    Derived("changelog_recovered_rows", "Changelog rows read by recoveries (this worker's "
            "start, takeovers), not by following as a standby.", WORKER, type="counter"),
    Derived("changelog_standby_rows", "Changelog rows held ready for a takeover: the latest "
            "row of each key of the partitions other workers own (CS_PULSE_WARM_STANDBY).",
            WORKER),
    Derived("changelog_standby_lag_messages", "Changelog records of other workers' partitions "
            "not yet read by this worker's standby.", WORKER),
)


@dataclass
class Catalogue:
    families: dict[str, Family] = field(default_factory=dict)

    def add(self, family: Family) -> None:
        assert family.name not in self.families, f"declared twice: {family.name}"
        self.families[family.name] = family


def name_of(scope: Scope, suffix: str) -> str:
    return PREFIX[scope] + suffix


def endpoints_of(scope: Scope, suffix: str) -> frozenset[Endpoint]:
    if suffix in ON_EVERY_PAGE:
        return EVERY_ENDPOINT
    if scope is Scope.AGENT and suffix not in LIVE_AGENT:
        return frozenset({Endpoint.AGENTS})
    return frozenset({Endpoint.FLOOR})


def _build() -> dict[str, Family]:
    cat = Catalogue()
    for c in COUNTERS:
        for scope in c.scopes:
            cat.add(Family(name_of(scope, c.suffix), "counter", c.help,
                           LABELS[scope] + ((c.label,) if c.label else ()),
                           endpoints=endpoints_of(scope, c.suffix)))
    for h in HISTOGRAMS:
        for scope in h.scopes:
            cat.add(Family(name_of(scope, h.suffix),
                           "summary" if scope is Scope.AGENT else "histogram", h.help,
                           LABELS[scope], h.unit, endpoints_of(scope, h.suffix)))
    for d in (*WINDOW_KPIS, *WINDOW_STATS, *AGENT_WINDOW_COUNTS, *CUSTOMER_KPIS,
              *PRESENCE_KPIS, *STAFFING, *OTHERS, *PIPELINE):
        for scope in d.scopes:
            cat.add(Family(name_of(scope, d.suffix), d.type, d.help, LABELS[scope] + d.labels,
                           d.unit, endpoints_of(scope, d.suffix)))
    return cat.families


FAMILIES: dict[str, Family] = _build()

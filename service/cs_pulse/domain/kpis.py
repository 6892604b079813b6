"""KPI formulas over folded counts and presence: the single definition the exporter uses."""

from __future__ import annotations

from .facts import HISTOGRAMS, quantile
from .presence import Presence
from .tiers import TIER_KINDS

Counts = dict[str, float]


def ratio(num: float, den: float) -> float | None:
    return None if den <= 0 else num / den


def hist_counts(counts: Counts, kind: str) -> list[float]:
    return [counts.get(f"{kind}:{i}", 0.0) for i in range(len(HISTOGRAMS[kind]) + 1)]


def hist_stats(counts: Counts, kind: str) -> dict[str, float | None]:
    buckets = hist_counts(counts, kind)
    bounds = HISTOGRAMS[kind]
    return {
        "p50": quantile(bounds, buckets, 0.5),
        "p90": quantile(bounds, buckets, 0.9),
        "avg": ratio(counts.get(f"{kind}:sum", 0.0), counts.get(f"{kind}:count", 0.0)),
    }


def kpis(c: Counts) -> dict[str, float | None]:
    """Window ratios and means; None where the denominator is zero (no data, not 0 %)."""
    g = c.get
    answered = g("sl_answered_within", 0.0) + g("sl_answered_after", 0.0)
    ratings = g("csat:count", 0.0)
    return {
        "reply_rate": ratio(g("messages_answered", 0.0),
                            g("messages_answered", 0.0) + g("messages_unanswered", 0.0)),
        "run_reply_rate": ratio(g("runs_answered", 0.0),
                                g("runs_answered", 0.0) + g("runs_unanswered", 0.0)),
        "conversation_reply_rate": ratio(g("ended_replied", 0.0), g("ended", 0.0)),
        "service_level": ratio(g("sl_answered_within", 0.0),
                               answered + g("sl_abandoned_after", 0.0)),
        "abandonment": ratio(g("abandoned", 0.0), g("queued", 0.0)),
        "short_abandonment": ratio(g("abandoned_short", 0.0), g("queued", 0.0)),
        "transfer": ratio(g("transferred", 0.0), g("conversations", 0.0)),
        "escalation": ratio(g("escalated", 0.0), g("conversations", 0.0)),
        "fcr": ratio(g("resolved", 0.0) - g("resolved_repeat", 0.0), g("resolved", 0.0)),
        "csat": ratio(g("csat:sum", 0.0), ratings),
        "csat_satisfied": ratio(g("csat_satisfied", 0.0), ratings),
        "csat_dissatisfied": ratio(g("csat_dissatisfied", 0.0), ratings),
        "attitude_positive": ratio(g("attitude_positive", 0.0), g("attitude_rated", 0.0)),
        "conversion": ratio(g("converted", 0.0), g("served", 0.0)),
        "aht_seconds": ratio(g("handle:sum", 0.0), g("handle:count", 0.0)),
        "resolution": ratio(g("resolved", 0.0), g("ended", 0.0)),
        "return": ratio(g("orders_returned", 0.0), g("orders_credited", 0.0)),
        "exchange": ratio(g("orders_exchanged", 0.0), g("orders_credited", 0.0)),
    }


def customer_kpis(c: Counts) -> dict[str, float | None]:
    """A day's customer ratios (接待 counts are per day): conversion by customers (咨询转换率)
    and the refund rate (退款率) of converted customers."""
    return {
        "customer_conversion": ratio(c.get("customers_converted", 0.0),
                                     c.get("customers_received", 0.0)),
        "customer_refund": ratio(c.get("customers_refunded", 0.0),
                                 c.get("customers_converted", 0.0)),
    }


def tier_shares(c: Counts) -> dict[str, float | None]:
    """Per tier: answered waits within its target / answered waits (tiers.py). Only tiers the
    counts know of: queue series have them, agent and shop series (no channel) do not."""
    answered = c.get("first_response:count", 0.0)
    return {tier: ratio(c[kind], answered) for tier, kind in TIER_KINDS.items() if kind in c}


def presence_kpis(p: Presence) -> dict[str, float | None]:
    span = (p.last_online - p.first_online
            if p.first_online is not None and p.last_online is not None else 0.0)
    return {
        "online_rate": p.online_ms / span if span > 0 else None,
        "slot_utilisation": ratio(p.used_ms, p.capacity_ms),
    }

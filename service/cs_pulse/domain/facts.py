"""The fact catalogue: every fact kind, how it aggregates, and the thresholds of the README.

One obvious place for each concept: the conversation and customer stages emit facts of these
kinds, the aggregation stage folds them, and the exporter names them for Prometheus.
"""

from __future__ import annotations

import bisect

from .tiers import TIER_KINDS

SECOND = 1000   # ms
HOUR = 3600 * SECOND
DAY = 24 * HOUR

SERVICE_LEVEL_TARGET_MS = 30 * SECOND
SHORT_ABANDON_MS = 5 * SECOND
FCR_HORIZON_MS = DAY
CONVERSION_HORIZON_MS = DAY
CLOSED_KEPT_MS = DAY + HOUR          # closed conversations: reopen within 24 h, plus margin
OPEN_IDLE_MS = 7 * DAY               # open conversations idle this long are closed by timeout
CUSTOMER_KEPT_MS = DAY + HOUR        # customer-stage records past every source's progress
AFTERSALE_HORIZON_MS = 30 * DAY      # a refund or return matches an order paid this long before
PROGRESS_STEP_MS = 10 * 60 * SECOND  # an events partition reports progress this often

ONLINE_STATUSES = frozenset({"online", "busy"})

REFUND_REASONS = ("quality", "not_as_described", "damaged", "wrong_item", "late_delivery",
                  "changed_mind", "other")
CUSTOMER_HOUR_KINDS = tuple(f"customers_hour_{h:02d}" for h in range(24))
DAY_KINDS = frozenset({"customers_received", "customers_converted", "customers_refunded",
                       *CUSTOMER_HOUR_KINDS})


def refund_reason(reason: object) -> str:
    """A refund's reason as one of REFUND_REASONS (a label: never free text)."""
    return reason if isinstance(reason, str) and reason in REFUND_REASONS else "other"

# Buckets cluster around the 30 s target so p50/p90 near it are sharp, then reach email's
# hours: every default tier target (tiers.py) is a bound, and 7 days is OPEN_IDLE_MS.
RESPONSE_BUCKETS: tuple[float, ...] = (
    5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0,
    1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0, 172800.0, 604800.0
)
HANDLE_BUCKETS: tuple[float, ...] = (
    60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0
)
CSAT_BUCKETS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)

# Histogram fact kinds: value is an observation (seconds, or a 1-5 score for csat).
HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "first_response": RESPONSE_BUCKETS,
    "response": RESPONSE_BUCKETS,
    "abandon_wait": RESPONSE_BUCKETS,
    "resolution": RESPONSE_BUCKETS,         # segment start to the resolving close
    "handle": HANDLE_BUCKETS,
    "csat": CSAT_BUCKETS,
}

# Counter fact kinds: value is added. The README's metric definitions say what each counts.
COUNTERS: frozenset[str] = frozenset(
    {
        "conversations",
        "queued",                               # settled waits, at the wait start
        "customer_messages", "customer_chars",
        "agent_messages", "agent_chars",
        "bot_messages", "bot_chars",
        "messages_answered", "messages_unanswered",   # customer messages to a human, concluded
        "runs_answered", "runs_unanswered",
        "ended", "ended_replied",
        "sl_answered_within", "sl_answered_after",
        "sl_abandoned_within", "sl_abandoned_after",
        "abandoned", "abandoned_short",         # at the wait start (denominator: queued)
        "transferred", "escalated",             # at the conversation's creation
        "reopened",
        "resolved", "resolved_repeat",          # FCR = (resolved - resolved_repeat) / resolved
        "csat_satisfied", "csat_dissatisfied", "csat_dissatisfied_attitude",
        "attitude_rated", "attitude_positive",
        "handled",                              # conversations, once per agent (first holding)
        "forbidden_phrases",                    # violations of agent messages
        "served", "converted", "gmv",           # converted and gmv at the served time
        "orders", "orders_amount", "orders_attributed",
        "orders_credited",                      # (served conversation, order) pairs, at served
        "orders_returned", "orders_exchanged",  # credited pairs sent back, at the served time
        "refunds_amount", *(f"refunds_{r}" for r in REFUND_REASONS),   # per shop
        "order_returns", "order_exchanges",                            # per shop
        *DAY_KINDS,
        # answered waits within each tier (queue series; the aggregation stage classifies
        # first_response facts, see tiers.py)
        *TIER_KINDS.values(),
    }
)

# Customer counts (接待数) belong to a day, not an instant: they are stamped at the local midnight
# that starts the day and folded into totals and days only, never into the rolling windows.
# "customers_hour_HH": received customers by the local hour (HH) their conversation began.

# Kinds not listed above are stateful: the aggregation stage keeps them as a series' live
# state (wait_open/close, unsettled_open/close, session_open/close, status, roster).

HOURLY_KINDS = frozenset(
    {"conversations", "customer_messages", "agent_messages", "customer_chars", "agent_chars"}
)


def bucket_index(bounds: tuple[float, ...], value: float) -> int:
    """Index of the first bucket whose upper bound is >= value (len(bounds) is +Inf)."""
    return bisect.bisect_left(bounds, value)


def quantile(bounds: tuple[float, ...], counts: list[float], q: float) -> float | None:
    """Quantile from per-bucket (non-cumulative) counts, interpolated like histogram_quantile."""
    total = sum(counts, 0.0)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0.0
    for i, c in enumerate(counts):
        if cumulative + c >= rank and c > 0:
            if i >= len(bounds):  # above every finite bound: say so, never a capped number
                return float("inf")
            lower = 0.0 if i == 0 else bounds[i - 1]
            return lower + (bounds[i] - lower) * (rank - cumulative) / c
        cumulative += c
    return bounds[-1]

"""The metric catalogue: every fact kind, how it aggregates, and the thresholds of the SPEC.

One obvious place for each concept: the conversation stage emits facts of these kinds, the
aggregation stage folds them into counts, and the exporter names them for Prometheus.
"""

from __future__ import annotations

import bisect

SERVICE_LEVEL_TARGET_SECONDS = 30.0
SHORT_ABANDON_SECONDS = 5.0
FCR_HORIZON_SECONDS = 24 * 3600.0
CONVERSION_HORIZON_SECONDS = 24 * 3600.0

# Buckets cluster around the 30 s target so p50/p90 near it are sharp.
RESPONSE_BUCKETS: tuple[float, ...] = (
    5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1800.0
)
HANDLE_BUCKETS: tuple[float, ...] = (60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
CSAT_BUCKETS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)

# Histogram fact kinds: value is an observation in seconds (or score for csat).
HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "first_response": RESPONSE_BUCKETS,
    "response": RESPONSE_BUCKETS,
    "abandon_wait": RESPONSE_BUCKETS,
    "handle": HANDLE_BUCKETS,
    "csat": CSAT_BUCKETS,
}

# Counter fact kinds: value is added. Documented in the README's metric table.
COUNTERS: frozenset[str] = frozenset(
    {
        "conversations",          # conversation.started
        "queued",                 # human-wait segments begun (start, reopen)
        "customer_messages", "customer_chars",
        "agent_messages", "agent_chars",
        "bot_messages",
        "runs_answered", "runs_unanswered",   # customer message runs, concluded
        "ended", "ended_replied",             # conversations closed, with >=1 human reply
        "sl_answered_within", "sl_answered_after",     # first reply vs 30 s
        "sl_abandoned_within", "sl_abandoned_after",   # abandon vs 5 s short-abandon threshold
        "abandoned", "abandoned_short",
        "transferred", "escalated", "reopened",
        "resolved", "resolved_reopened",      # FCR = (resolved - resolved_reopened) / resolved
        "csat_ge4", "attitude_rated", "attitude_positive",
        "served", "converted", "gmv", "orders_unattributed",
        "late_corrections",      # out-of-order events that could not rewrite a published value
    }
)

# Kinds that describe the queue rather than the agent who answered: not duplicated to agents.
QUEUE_ONLY = frozenset(
    {"conversations", "queued", "bot_messages", "abandoned", "abandoned_short", "abandon_wait",
     "sl_abandoned_within", "sl_abandoned_after", "customer_messages", "customer_chars"}
)

# Kinds also folded into the shop's own series: the live staffing inputs (arrivals, handle
# time, patience) must be whole on one worker.
SHOP_KINDS = frozenset({"queued", "handle", "abandoned", "abandon_wait", "first_response"})

# Stateful kinds handled by the live state of a series rather than summed.
LIVE = frozenset(
    {"wait_open", "wait_close", "session_open", "session_close", "presence", "roster"}
)


def bucket_index(bounds: tuple[float, ...], value: float) -> int:
    """Index of the first bucket whose upper bound is >= value (len(bounds) is +Inf)."""
    return bisect.bisect_left(bounds, value)


def quantile(bounds: tuple[float, ...], counts: list[float], q: float) -> float | None:
    """Quantile from per-bucket (non-cumulative) counts, interpolated like histogram_quantile."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0.0
    for i, c in enumerate(counts):
        if cumulative + c >= rank and c > 0:
            if i >= len(bounds):  # +Inf bucket: answer with the highest finite bound
                return bounds[-1]
            lower = 0.0 if i == 0 else bounds[i - 1]
            return lower + (bounds[i] - lower) * (rank - cumulative) / c
        cumulative += c
    return bounds[-1]

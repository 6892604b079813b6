"""Pipeline health counters kept by a worker (pure Python; exported by the collector)."""

from __future__ import annotations

from dataclasses import dataclass, field

LAG_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class PipelineStats:
    processed: dict[str, float] = field(default_factory=dict)    # by event type
    rejected: dict[str, float] = field(default_factory=dict)     # by reason
    duplicates: float = 0.0
    late: float = 0.0               # arrived behind the watermark: took effect at it
    orphaned: dict[str, float] = field(default_factory=dict)   # by event type
    replayed_records: float = 0.0   # re-delivered below the cursor, dropped before decoding
    rewinds: float = 0.0            # consumer rewinds asked for after a gap
    lost_records: float = 0.0       # gone from the topic (retention) before being processed
    lag_buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LAG_BUCKETS) + 1))
    lag_sum: float = 0.0
    lag_count: float = 0.0
    last_event_wall: float | None = None
    last_fold_wall: float | None = None   # the aggregation stage last folded facts
    facts_sent: float = 0.0
    dlq_sent: float = 0.0

    def processed_event(self, type_: str, event_ts: float, wall: float) -> None:
        self.processed[type_] = self.processed.get(type_, 0.0) + 1.0
        lag = max(0.0, wall - event_ts)
        i = 0
        while i < len(LAG_BUCKETS) and lag > LAG_BUCKETS[i]:
            i += 1
        self.lag_buckets[i] += 1.0
        self.lag_sum += lag
        self.lag_count += 1.0
        self.last_event_wall = wall

    def rejected_event(self, reason: str, wall: float) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0.0) + 1.0
        self.last_event_wall = wall

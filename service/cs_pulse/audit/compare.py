"""Compare exported samples with a recomputation: which numbers differ, and by how much.

Absent and 0 are the same for counts (a counter, a bucket, a waiting gauge); for a ratio, a
mean, a quantile, a timestamp or a staffing figure, absent means "no denominator" and must
match. Sums of seconds may differ in the last bits with the order of addition, hence a relative
tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Sample = tuple[str, dict[str, str], float]
Key = tuple[str, tuple[tuple[str, str], ...]]

# Describe the worker, not the data (or depend on its process lifetime and wall clock).
# Label overflow depends on which worker saw which value first; fenced rows on its recoveries.
NOT_COMPARED = ("cs_input_", "cs_facts_", "cs_event_lag", "cs_last_event_age",
                "cs_last_fold_age", "cs_consumer_lag", "cs_owned_", "cs_partitions",
                "cs_window_end", "cs_ready",
                "cs_label_overflow", "cs_changelog_")
PIPELINE = ("cs_events_",)
MUST_BE_PRESENT_SUFFIXES = ("_ratio", "_score", "_window_seconds", "_timestamp_seconds")
MUST_BE_PRESENT = ("cs_staffing_", "cs_agent_max_concurrency", "cs_agent_online")


def key(name: str, labels: dict[str, str]) -> Key:
    if "le" in labels:   # "30" and "30.0" are the same bucket
        labels = {**labels, "le": repr(float(labels["le"]))}
    return name, tuple(sorted(labels.items()))


def compared(samples: Iterable[Sample], pipeline: bool = True) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for name, labels, value in samples:
        if (not name.startswith("cs_") or name.startswith(NOT_COMPARED)
                or (not pipeline and name.startswith(PIPELINE))):
            continue   # process_* and python_* (client_python's) describe the process
        k = key(name, labels)
        out[k] = out.get(k, 0.0) + value
    return out


def presence_matters(name: str) -> bool:
    return name.endswith(MUST_BE_PRESENT_SUFFIXES) or name.startswith(MUST_BE_PRESENT)


@dataclass(frozen=True)
class Difference:
    name: str
    labels: tuple[tuple[str, str], ...]
    recomputed: float | None
    live: float | None

    @property
    def size(self) -> float:
        if self.recomputed is None or self.live is None:
            return float("inf")
        return abs(self.live - self.recomputed)


def differences(recomputed: dict[Key, float], live: dict[Key, float],
                tolerance: float = 1e-6, only: set[Key] | None = None) -> list[Difference]:
    """Keys whose values differ beyond ``tolerance`` (relative, or absolute below 1);
    ``only``: compare just these keys (a worker exports the series it owns)."""
    out = []
    keys = (set(recomputed) | set(live)) if only is None else only
    for k in sorted(keys):
        name, labels = k
        want, got = recomputed.get(k), live.get(k)
        if want is None or got is None:
            if presence_matters(name):
                if want is not got:
                    out.append(Difference(name, labels, want, got))
                continue
            want, got = want or 0.0, got or 0.0
        if got == want:   # also +Inf quantiles (above every bucket) on both sides
            continue
        if abs(got - want) > tolerance * max(1.0, abs(want)):
            out.append(Difference(name, labels, want, got))
    return out


def table(diffs: list[Difference], limit: int = 40) -> str:
    def fmt(v: float | None) -> str:
        return "absent" if v is None else f"{v:.6g}"

    rows = [("metric", "labels", "recomputed", "live", "difference")]
    for d in sorted(diffs, key=lambda d: -d.size)[:limit]:
        labels = ",".join(f"{k}={v}" for k, v in d.labels)
        rows.append((d.name, labels, fmt(d.recomputed), fmt(d.live),
                     "-" if d.size == float("inf") else f"{d.size:.3g}"))
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(5)]
    lines = ["  ".join(cell[:60].ljust(w) for cell, w in zip(r, widths, strict=True))
             for r in rows]
    if len(diffs) > limit:
        lines.append(f"... and {len(diffs) - limit} more")
    return "\n".join(lines)

"""Independent oracle: first-response figures straight from the raw IBM Twitter customer-care JSON.

Reads only the dataset's own files (a list of dialogs: `dialogHeader`, `dialogContent`,
`agentURL`) and applies the README's *Metric definitions* (Conversations; Waits; First response
against channel tiers; Exposition rules) and the "IBM Twitter customer care" replay mapping with
plain arithmetic -- no adapter, no engine. Per shop (the dialog's company) and in total: answered
waits, the sum of first-response seconds, the answered waits within each social tier (wall clock:
these shops have no opening hours, so business time = wall time) and the count per first-response
histogram bucket; for the total also the tier shares, the mean and the median bucket. Run it to
print the dev and test sets side by side.

Judgement calls, each with the README sentence that decides it:

* Order. "`cs-pulse replay FILE` ... publish a history in event-time order", so no record is late
  and every effective time is the tweet's own time; within a dialog the tweets are already in
  time order (checked: the final agent tweet is never earlier than the last dialog turn).
  Equal times keep file order ("events take effect in the order of (effective time, offset)");
  the one tie in the files (two customer tweets in a test dialog) cannot move a figure.
* Senders. "a customer or agent message per tweet": a turn with `agent` is a human agent
  message, one with `client` or `client1` a customer message -- even when the `client` account is
  a brand (e.g. `TMobile`) or the `agent` account is not the dialog's company (two test turns by
  `AmazonHelp` in an `AppleSupport` dialog). The shop is always the dialog's company ("shop = the
  company"; "`shop` ... come[s] from the creating event").
* Silence. "an open one [is forgotten] when the watermark passes 7 days after its last event, and
  it is first closed by timeout at that instant (`last event + 7 d`)" and "An event that arrives
  for a forgotten conversation is treated as for an unknown one (a new conversation with the same
  id ...)"; the check is "gap from its last event ... > 7 d open": a gap of more than 7 days
  (strictly, in ms) ends the conversation and the next tweet starts a new one. An unanswered wait
  is then *abandoned* ("abandoned if the segment is closed before it is answered ... by expiry";
  abandon wait = last event + 7 d - wait start).
* One wait per conversation. "Wait start (at most one per segment)" and each segment is an
  "open period"; no reopen events are produced, so each (post-silence) conversation has one
  segment and at most one wait: customer tweets after the answer start nothing.
* Wait start / answer. Channel social, no bot, no queued/assigned events, so "otherwise: the
  segment's first customer message" is the wait start, and "The wait is answered by the first human
  agent message that takes effect after the wait start"; "an agent message before the wait start
  does not answer" (a conversation opened by an agent tweet -- here only after a > 7 d silence --
  has no wait until a customer tweets).
* Final close. The mapping closes each dialog "resolved by the agent at the last tweet", which is
  the final agent tweet itself; the close is taken after that message, so it never leaves a wait
  "closed unanswered" (and it is never an abandonment: closed_by agent).
* Tiers. "it is **within** a tier if its *tier time* <= the tier's target"; social targets 900,
  3600, 7200 s, clock business, and "A shop with no opening hours is always open (business =
  wall)". Compared in exact milliseconds.
* Buckets. Prometheus classic buckets: an observation v goes in the first bucket with v <= le
  (`buckets` below are per-bucket counts, not cumulative; the last key is +Inf).
* Median. "rank = q x count; take the first non-empty bucket whose cumulative count reaches the
  rank and interpolate linearly between its lower bound (0 for the first bucket) and its upper
  bound"; the lower bound is the previous bucket's upper bound.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

DATA = Path("/work/shared/data/ibm_twitter_care")
EXPIRY_MS = 7 * 24 * 3600 * 1000  # open-conversation idle limit
TWITTER_EPOCH_MS = 1288834974657  # snowflake epoch, 2010-11-04T01:42:54.657Z
TIERS = {"excellent": 900, "good": 3600, "acceptable": 7200}  # social, seconds
BUCKETS = (5, 10, 15, 20, 25, 30, 40, 60, 90, 120, 180, 300, 600, 900, 1800, 3600, 7200, 14400,
           28800, 43200, 86400, 172800, 604800, math.inf)  # responses and waits, seconds


def _iso_ms(stamp: str) -> int:
    """'2020-02-25T17:40:50.000Z' -> epoch ms (UTC)."""
    dt = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return round(dt.timestamp() * 1000)


def _snowflake_ms(tweet_id: str) -> int:
    return (int(tweet_id) >> 22) + TWITTER_EPOCH_MS


def _tweets(dialog: dict[str, Any]) -> list[tuple[int, bool]]:
    """(time ms, is_agent) per tweet: each dialog turn, then the final agent tweet (no datetime)."""
    out = [(_iso_ms(turn["datetime"]), "agent" in turn) for turn in dialog["dialogContent"]]
    out.append((_snowflake_ms(dialog["agentURL"]["tweet_ID"]), True))
    # Stable sort: file order breaks ties (a no-op on these files, which are in time order).
    return sorted(out, key=lambda t: t[0])


def _waits(tweets: list[tuple[int, bool]]) -> list[tuple[str, int]]:
    """('answered', first response ms) or ('abandoned', abandon wait ms), one per wait."""
    out: list[tuple[str, int]] = []
    start: int | None = None  # wait start of the current conversation, None before one
    settled = False  # the current conversation's one wait is answered or gone
    last: int | None = None
    for t, is_agent in tweets:
        if last is not None and t - last > EXPIRY_MS:
            # Expired at last + 7 d: an unanswered wait is abandoned; the tweet opens a new one.
            if start is not None and not settled:
                out.append(("abandoned", last + EXPIRY_MS - start))
            start, settled = None, False
        last = t
        if settled:
            continue
        if not is_agent and start is None:
            start = t  # the segment's first customer message
        elif is_agent and start is not None:
            out.append(("answered", t - start))
            settled = True
        # an agent message before any customer message answers nothing
    # The final close (by agent, at the last tweet) follows the final agent message: every wait
    # of the last conversation is answered by then (that message is an agent tweet).
    return out


def _empty() -> dict[str, Any]:
    return {
        "answered": 0,
        "first_response_ms": 0,
        **{f"within_{tier}": 0 for tier in TIERS},
        "buckets": dict.fromkeys(BUCKETS, 0),
        "abandoned": 0,
        "abandon_wait_ms": 0,
    }


def _add(acc: dict[str, Any], kind: str, ms: int) -> None:
    if kind == "abandoned":
        acc["abandoned"] += 1
        acc["abandon_wait_ms"] += ms
        return
    acc["answered"] += 1
    acc["first_response_ms"] += ms
    for tier, target in TIERS.items():
        acc[f"within_{tier}"] += ms <= target * 1000
    le = next(b for b in BUCKETS if ms <= b * 1000)
    acc["buckets"][le] += 1


def _finish(acc: dict[str, Any]) -> dict[str, Any]:
    """Milliseconds to seconds; the README's names for the sums."""
    out = {k: v for k, v in acc.items() if not k.endswith("_ms")}
    out["first_response_seconds_sum"] = acc["first_response_ms"] / 1000
    out["abandon_wait_seconds_sum"] = acc["abandon_wait_ms"] / 1000
    out["waits"] = acc["answered"] + acc["abandoned"]
    return out


def quantile_bucket(buckets: dict[float, int], q: float) -> tuple[float, float, float]:
    """(lower, upper, interpolated value) of the bucket holding rank q x count (README rule)."""
    count = sum(buckets.values())
    if not count:
        return (math.nan, math.nan, math.nan)
    rank, cum, lower = q * count, 0, 0.0
    for upper, n in buckets.items():
        if n and cum + n >= rank:
            if math.isinf(upper):
                return (lower, upper, math.inf)
            return (lower, upper, lower + (upper - lower) * (rank - cum) / n)
        cum, lower = cum + n, upper
    raise AssertionError("unreachable: the cumulative count reaches q x count")


def figures(path: Path) -> dict[str, Any]:
    dialogs = json.loads(path.read_text(encoding="utf-8"))
    shops: dict[str, dict[str, Any]] = {}
    total = _empty()
    for dialog in dialogs:
        shop = shops.setdefault(dialog["dialogHeader"]["company"], _empty())
        for kind, ms in _waits(_tweets(dialog)):
            _add(shop, kind, ms)
            _add(total, kind, ms)
    out = _finish(total)
    answered = out["answered"]
    out["dialogs"] = len(dialogs)
    out["mean_first_response_seconds"] = (
        out["first_response_seconds_sum"] / answered if answered else math.nan
    )
    for tier in TIERS:
        out[f"share_{tier}"] = out[f"within_{tier}"] / answered if answered else math.nan
    lower, upper, p50 = quantile_bucket(out["buckets"], 0.5)
    out["median_bucket"] = (lower, upper)
    out["p50_seconds"] = p50
    return {"total": out, "shops": {name: _finish(acc) for name, acc in sorted(shops.items())}}


def _cell(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(f"{x:g}" for x in v) + "]"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}"


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or [DATA / "dev.json", DATA / "test.json"]
    results = [figures(p) for p in paths]
    keys = ["dialogs", "waits", "answered", "abandoned", "first_response_seconds_sum",
            "mean_first_response_seconds", *(f"within_{t}" for t in TIERS),
            *(f"share_{t}" for t in TIERS), "median_bucket", "p50_seconds",
            "abandon_wait_seconds_sum"]
    print("| figure | " + " | ".join(p.stem for p in paths) + " |")
    print("|---|" + "---:|" * len(paths))
    for key in keys:
        print(f"| {key} | " + " | ".join(_cell(r["total"][key]) for r in results) + " |")
    print()
    print("first-response bucket counts (le, per bucket):")
    print("| le | " + " | ".join(p.stem for p in paths) + " |")
    print("|---|" + "---:|" * len(paths))
    for le in BUCKETS:
        name = "+Inf" if math.isinf(le) else f"{le:g}"
        print(f"| {name} | " + " | ".join(f"{r['total']['buckets'][le]:,}" for r in results) + " |")
    print()
    cols = ("answered", "mean_s", "exc", "good", "acc", "abandoned")
    print("| shop | " + " | ".join(f"{p.stem} {c}" for p in paths for c in cols) + " |")
    print("|---|" + "---:|" * (len(cols) * len(paths)))
    for shop in sorted({s for r in results for s in r["shops"]}):
        cells = []
        for r in results:
            s = r["shops"].get(shop) or _finish(_empty())
            n = s["answered"]
            mean = f"{s['first_response_seconds_sum'] / n:,.1f}" if n else "-"
            cells += [f"{n:,}", mean, *(f"{s[f'within_{t}']:,}" for t in TIERS),
                      f"{s['abandoned']:,}"]
        print(f"| {shop} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Replay a recorded history to ``cs.events`` in event-time order.

Adapters turn each source into event dicts of the project's model:

* ``jsonl``    the project's own format, one event per line;
* ``technion`` the "Anonymous Bank" call-centre files (one row per call, tab separated, some
  rows space separated, CRLF line ends, negative VRU times, undocumented call types);
* ``twitter``  the IBM Twitter customer-care conversations (client and agent turns).

Call-centre and Twitter histories are years old; by default timestamps are shifted so the last
event lands at the start of the replay, which puts the history inside the live windows
(``--keep-time`` keeps the recorded times).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from cs_pulse.settings import Settings
from cs_pulse.sources.produce import EventProducer, paced

log = logging.getLogger("cs_pulse.sources.replay")
Event = dict[str, Any]
BANK_SHOP = "anonymous-bank"
BANK_COLUMNS = ("vru+line", "call_id", "customer_id", "priority", "type", "date", "vru_entry",
                "vru_exit", "vru_time", "q_start", "q_exit", "q_time", "outcome", "ser_start",
                "ser_exit", "ser_time", "server")
TWITTER_EPOCH_MS = 1288834974657   # snowflake ids carry ms since this instant in the top bits


def _event(type_: str, ts: float, event_id: str, shop: str, **fields: Any) -> Event:
    return {"schema_version": 1, "event_id": event_id, "type": type_, "ts": round(ts * 1000),
            "shop_id": shop, **fields}


# --- project JSONL ------------------------------------------------------------------------------

def read_jsonl(path: Path) -> Iterator[Event]:
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


# --- Anonymous Bank call centre -----------------------------------------------------------------

BANK_TZ = ZoneInfo("Asia/Jerusalem")
NO_TIME = "0:00:00"


def _seconds(hms: str) -> int:
    h, m, sec = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + sec


def _call_times(row: dict[str, str], names: list[str]) -> list[int]:
    """Seconds after the row's local midnight, in the order given, never going backwards: a
    time more than 12 h before the previous one is on the next day (the call crossed
    midnight); one still before it is raised to it (negative VRU times, a service that starts
    a second before the queue ends)."""
    out: list[int] = []
    prev = 0
    for name in names:
        t = _seconds(row[name])
        if prev - t > 12 * 3600:
            t += 86400
        prev = max(prev, t)
        out.append(prev)
    return out


def bank_call_events(row: dict[str, str], source: str) -> list[Event]:
    """One call, mapped as the README's "Real data" section says: the VRU is self-service (a
    bot), then queue entry, then service or a hang-up. PHANTOM calls are not calls."""
    if row["outcome"] == "PHANTOM":
        return []
    day = datetime.strptime(row["date"], "%y%m%d").replace(tzinfo=BANK_TZ)
    cid = f"{source}-{row['vru+line']}-{row['call_id']}"   # call ids repeat across VRU lines
    common: dict[str, Any] = {"conversation_id": cid, "channel": "phone",
                              "queue": row["type"].lower()}   # PS, NW, ... and undocumented AA
    if row["customer_id"].isdigit() and int(row["customer_id"]) != 0:  # 0: unidentified;
        common["customer_id"] = row["customer_id"]   # "6.02E+11": mangled by a spreadsheet
    queued = row["q_start"] != NO_TIME or int(row["q_time"]) > 0
    served = row["outcome"] == "AGENT"
    names = ["vru_entry"] + (["q_start"] if queued else [])
    if served and row["ser_start"] != NO_TIME:
        names += ["ser_start", "ser_exit"]
    else:   # hung up (in the queue or the VRU), or served with no service times recorded
        names.append("q_exit" if queued else "vru_exit")
    times = dict(zip(names, _call_times(row, names), strict=True))
    if served and "ser_start" not in times:   # served, and closed, on leaving the queue
        times["ser_start"] = times["ser_exit"] = times[names[-1]]

    def ev(type_: str, name: str, suffix: str, **fields: Any) -> Event:
        ts = day.timestamp() + times[name]   # local midnight + seconds: DST-safe enough here
        return _event(type_, ts, f"{cid}:{suffix}", BANK_SHOP, **fields, **common)

    out = [ev("conversation.started", "vru_entry", "s"),
           ev("message.sent", "vru_entry", "v", sender="bot", chars=0)]
    if queued:
        out.append(ev("conversation.queued", "q_start", "q"))
    if served:
        agent = row["server"]
        out += [ev("conversation.assigned", "ser_start", "a", agent_id=agent),
                ev("message.sent", "ser_start", "m", sender="agent", chars=0, agent_id=agent),
                ev("conversation.closed", "ser_exit", "c", resolved=True, closed_by="agent",
                   agent_id=agent)]
    elif queued:
        out.append(ev("conversation.abandoned", "q_exit", "x"))
    else:
        out.append(ev("conversation.closed", "vru_exit", "c", resolved=False,
                      closed_by="customer"))
    return out


def read_technion(path: Path) -> Iterator[Event]:
    source = path.stem
    with path.open(encoding="latin-1", newline=None) as f:   # universal newlines eat the CRs
        header = f.readline().split()
        if tuple(header) != BANK_COLUMNS:
            raise ValueError(f"{path}: unexpected header {header}")
        for n, line in enumerate(f, start=2):
            fields = line.split()   # tabs, or the stray spaces of the split October rows
            if not fields:
                continue
            if len(fields) != len(BANK_COLUMNS):
                log.warning("%s:%d: %d fields, skipped", path, n, len(fields))
                continue
            yield from bank_call_events(dict(zip(BANK_COLUMNS, fields, strict=True)), source)


# --- IBM Twitter customer care ------------------------------------------------------------------

def _iso(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def snowflake_seconds(tweet_id: str) -> float:
    return ((int(tweet_id) >> 22) + TWITTER_EPOCH_MS) / 1000.0


def twitter_dialog_events(dialog: dict[str, Any]) -> list[Event]:
    header = dialog["dialogHeader"]
    shop = header["company"]
    cid = header["sessionID"]
    common: dict[str, Any] = {"conversation_id": cid, "channel": "social", "queue": "twitter"}
    agent = f"{shop}-agent"
    turns = [(_iso(t["datetime"]), "agent" if "agent" in t else "customer", t)
             for t in dialog["dialogContent"]]
    final = dialog.get("agentURL") or {}
    if final.get("tweet_ID"):
        turns.append((snowflake_seconds(final["tweet_ID"]), "agent",
                      {"tweet_ID": final["tweet_ID"], "message": final.get("url_utterance", "")}))
    turns.sort(key=lambda t: t[0])
    out = [_event("conversation.started", turns[0][0], f"{cid}:s", shop, **common)]
    for ts, sender, turn in turns:
        extra = {"agent_id": agent} if sender == "agent" else {}
        out.append(_event("message.sent", ts, f"{cid}:{turn['tweet_ID']}", shop, sender=sender,
                          chars=len(turn.get("message", "")), **extra, **common))
    out.append(_event("conversation.closed", turns[-1][0], f"{cid}:c", shop, resolved=True,
                      closed_by="agent", **common))
    return out


def read_twitter(path: Path) -> Iterator[Event]:
    for dialog in json.loads(path.read_text()):
        yield from twitter_dialog_events(dialog)


# --- replay ---------------------------------------------------------------------------------

READERS = {"jsonl": read_jsonl, "technion": read_technion, "twitter": read_twitter}


def guess_format(path: Path) -> str:
    if path.suffix == ".txt":
        return "technion"
    if path.suffix == ".json":
        return "twitter"
    return "jsonl"


def load(path: Path, fmt: str | None = None, keep_time: bool = False,
         now: float | None = None) -> list[Event]:
    """All events of a file in event-time order (stable: ties keep file order)."""
    events = sorted(READERS[fmt or guess_format(path)](path), key=lambda e: e["ts"])
    if events and not keep_time:
        shift = round((now if now is not None else time.time()) * 1000) - events[-1]["ts"]
        for e in events:
            e["ts"] += shift
    return events


async def publish(events: Iterable[Event], producer: EventProducer, speedup: float = 0.0
                  ) -> int:
    """Send in order, spaced by event time / ``speedup`` (0: as fast as possible); returns how
    many were sent."""
    return await producer.send_stream(paced(events, speedup))


async def run_replay(settings: Settings, path: Path, fmt: str | None = None, *,
                     speedup: float = 0.0, limit: int = 0, keep_time: bool = False) -> int:
    """Publish the events of ``path`` (format ``fmt``, guessed if None) to the events topic in
    event-time order: ``speedup`` as in ``publish``, the first ``limit`` only (0: all),
    recorded times kept or shifted so that the last event is now."""
    events = load(path, fmt, keep_time=keep_time)
    if limit:
        events = events[:limit]
    async with EventProducer(settings, settings.events_topic) as producer:
        sent = await publish(events, producer, speedup)
    print(f"replayed {sent} events from {path} to {settings.events_topic}")
    return 0

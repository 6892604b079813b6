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

import argparse
import json
import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from cs_pulse.produce import EventProducer, paced
from cs_pulse.settings import Settings

log = logging.getLogger("cs_pulse.replay")
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

def _clock(day: datetime, hms: str) -> float:
    h, m, s = (int(x) for x in hms.split(":"))
    return (day + timedelta(hours=h, minutes=m, seconds=s)).timestamp()


def bank_call_events(row: dict[str, str], source: str) -> list[Event]:
    """One call -> started [queued] then assigned+answer+closed, or abandoned, or closed (hung
    up in the VRU). Times never go backwards (negative VRU times are clamped)."""
    day = datetime.strptime(row["date"], "%y%m%d").replace(tzinfo=UTC)
    cid = f"{source}-{row['call_id']}"
    queue = row["type"].lower()   # PS, NW, NE, TT, IN, PE and the undocumented AA
    common: dict[str, Any] = {"conversation_id": cid, "channel": "phone", "queue": queue}
    if row["customer_id"].isdigit() and row["customer_id"] != "0":   # 0 = unidentified;
        common["customer_id"] = row["customer_id"]   # "6.02E+11" = mangled by a spreadsheet
    last = _clock(day, row["vru_entry"])

    def at(hms: str) -> float:
        nonlocal last
        t = _clock(day, hms)
        while t < last - 12 * 3600:   # passed midnight
            t += 86400
        last = max(last, t)
        return last

    started = last
    out = [_event("conversation.started", started, f"{cid}:s", BANK_SHOP, **common)]
    queued = row["q_start"] != "0:00:00" or int(row["q_time"]) > 0
    if queued:
        out.append(_event("conversation.queued", at(row["q_start"]), f"{cid}:q", BANK_SHOP,
                          **common))
    if row["outcome"] == "AGENT":
        agent = row["server"]
        answered = at(row["ser_start"])
        out += [
            _event("conversation.assigned", answered, f"{cid}:a", BANK_SHOP, agent_id=agent,
                   **common),
            _event("message.sent", answered, f"{cid}:m", BANK_SHOP, sender="agent", chars=0,
                   agent_id=agent, **common),
            _event("conversation.closed", at(row["ser_exit"]), f"{cid}:c", BANK_SHOP,
                   resolved=True, closed_by="agent", agent_id=agent, **common),
        ]
    elif queued:   # HANG or PHANTOM while waiting
        out.append(_event("conversation.abandoned", at(row["q_exit"]), f"{cid}:x", BANK_SHOP,
                          **common))
    else:          # hung up in the VRU, never reached the queue
        out.append(_event("conversation.closed", at(row["vru_exit"]), f"{cid}:c", BANK_SHOP,
                          resolved=False, closed_by="customer", **common))
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


async def run_replay(args: argparse.Namespace) -> int:
    settings = Settings()
    events = load(Path(args.file), args.format, keep_time=args.keep_time)
    if args.limit:
        events = events[: args.limit]
    async with EventProducer(settings.bootstrap, settings.events_topic) as producer:
        sent = await publish(events, producer, args.speedup)
    print(f"replayed {sent} events from {args.file} to {settings.events_topic}")
    return 0

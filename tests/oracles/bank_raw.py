"""Independent oracle: call-centre figures straight from the raw "Anonymous Bank" month files.

Applies the README definitions (*Waits* and the Anonymous Bank replay mapping) to each row with
plain arithmetic -- no adapter, no engine. Run it to print both months side by side.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

DATA = Path("/work/shared/data/technion_callcenter")
DAY = 24 * 3600
HALF_DAY = 12 * 3600

# Diagnostics from the last figures() call: rows whose times needed the clamp / next-day rule.
ADJUSTED: Counter[str] = Counter()


def _clock(hms: str) -> int:
    """'h:mm:ss' -> seconds after midnight of the row's date."""
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    # Split on any whitespace: a few rows use spaces for tabs; split() also drops the CRLFs.
    with path.open(encoding="ascii") as f:
        header = f.readline().split()
        for n, line in enumerate(f, start=2):
            fields = line.split()
            if fields and len(fields) != len(header):
                raise ValueError(f"{path.name}:{n}: {len(fields)} fields, expected {len(header)}")
            if fields:
                yield dict(zip(header, fields, strict=True))


def _reached_queue(row: dict[str, str]) -> bool:
    return row["q_start"] != "0:00:00" or int(row["q_time"]) > 0


def _times(row: dict[str, str]) -> dict[str, int]:
    """The call's times, in the mapping's order, made non-decreasing.

    Order: vru_entry, q_start (only if the call reached the queue), then ser_start and ser_exit
    (served), or q_exit (hung up in the queue), or vru_exit (hung up in the VRU). Each time is a
    clock time of `date`; one that is earlier than the previous time by more than 12 h is taken
    on the next day, and one still earlier than the previous time is raised to it.
    A few AGENT rows carry ser_start = ser_exit = 0:00:00 (no service times recorded): per the
    mapping they are served, and closed, when they left the queue (q_exit) or the VRU.
    """
    queued = _reached_queue(row)
    names = ["vru_entry"] + (["q_start"] if queued else [])
    if row["outcome"] == "AGENT" and row["ser_start"] != "0:00:00":
        names += ["ser_start", "ser_exit"]
    else:
        names.append("q_exit" if queued else "vru_exit")
    out: dict[str, int] = {}
    prev, flags = 0, set()  # prev = 0 leaves vru_entry as it is
    for name in names:
        t = _clock(row[name])
        if prev - t > HALF_DAY:
            t += DAY  # crossed midnight
            flags.add("next_day")
        if t < prev:
            t = prev  # e.g. q_start before vru_entry (the negative vru_time rows)
            flags.add(f"clamp_{name}")
        out[name] = prev = t
    ADJUSTED.update(flags | ({"any"} if flags else set()))
    if row["outcome"] == "AGENT" and "ser_start" not in out:
        out["ser_start"] = out["ser_exit"] = prev   # served and closed on leaving the queue
        ADJUSTED.update({"no_service_times"})
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def figures(path: Path) -> dict[str, float]:
    ADJUSTED.clear()
    calls = answered = within = abandoned = short = 0
    first_response = abandon_wait = handle = 0
    customers: set[int] = set()
    for row in _rows(path):
        if row["outcome"] == "PHANTOM":
            continue  # virtual calls, ignored per the data's documentation
        calls += 1
        cid = row["customer_id"]
        if cid.isdigit() and int(cid) != 0:  # '3.06E+08' (Excel-mangled) is not an id
            customers.add(int(cid))
        t = _times(row)
        queued = _reached_queue(row)
        if row["outcome"] == "AGENT":
            # A wait starts at the first hand-off: queued at q_start, else assigned at ser_start;
            # the agent message at ser_start answers it (first response 0 straight from the VRU).
            answered += 1
            fr = t["ser_start"] - t["q_start"] if queued else 0
            first_response += fr
            within += fr <= 30
            handle += t["ser_exit"] - t["ser_start"]  # queue handle time, served calls only
        elif queued:
            # Hung up in the queue: abandoned at q_exit; abandon wait = q_exit - q_start.
            abandoned += 1
            aw = t["q_exit"] - t["q_start"]
            abandon_wait += aw
            short += aw < 5
        # else: hung up in the VRU -- self-service only, never a wait.
    waits = answered + abandoned  # every served call and every hang-up in the queue
    return {
        "calls": calls,
        "waits": waits,
        "answered": answered,
        "answered_within_30s": within,
        "abandoned": abandoned,
        "abandoned_short": short,
        "service_level": _ratio(within, answered + abandoned - short),
        "abandonment": _ratio(abandoned, waits),
        "short_abandonment": _ratio(short, waits),
        "mean_first_response_seconds": _ratio(first_response, answered),
        "mean_abandon_wait_seconds": _ratio(abandon_wait, abandoned),
        "mean_handle_seconds": _ratio(handle, answered),
        "customers": len(customers),
    }


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or [DATA / "january.txt", DATA / "october.txt"]
    results, adjusted = zip(*((figures(p), dict(ADJUSTED)) for p in paths), strict=True)
    print(f"{'figure':<30}" + "".join(f"{p.stem:>14}" for p in paths))
    for key in results[0]:
        cells = (
            f"{r[key]:>14,.4f}" if isinstance(r[key], float) else f"{r[key]:>14,}" for r in results
        )
        print(f"{key:<30}" + "".join(cells))
    for p, adj in zip(paths, adjusted, strict=True):
        print(f"{p.stem}: rows adjusted {adj or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1:])

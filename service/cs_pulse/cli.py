"""Console entry point: ``cs-pulse worker|simulate|replay|audit|sink|scorecard|demo|staffing|
webhook|kafka``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cs-pulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worker", help="run a stream worker (Faust) serving /metrics")
    w.add_argument("--loglevel", default=os.environ.get("CS_PULSE_LOGLEVEL", "warn"))

    s = sub.add_parser("simulate", help="produce simulated shop traffic to Kafka")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--speed", type=float, default=60.0,
                   help="simulated seconds per wall second (60 = an hour a minute)")
    s.add_argument("--duration", type=float, default=600.0, help="wall seconds to run")
    s.add_argument("--rate", type=float, default=2000.0, help="max events per wall second")
    s.add_argument("--shops", type=int, default=2)
    s.add_argument("--agents", type=int, default=24, help="agents per shop")
    s.add_argument("--start", default=None, help="simulated start (ISO, default: now)")

    r = sub.add_parser("replay", help="publish a recorded history in event-time order")
    r.add_argument("file")
    r.add_argument("--format", choices=["jsonl", "technion", "twitter"], default=None)
    r.add_argument("--speedup", type=float, default=0.0, help="0 = as fast as possible")
    r.add_argument("--limit", type=int, default=0)
    r.add_argument("--keep-time", action="store_true",
                   help="keep recorded timestamps (default: shift so the last event is now)")

    d = sub.add_parser("demo", help="embedded broker + worker + simulator with a live summary")
    d.add_argument("--duration", type=float, default=600.0, help="stop after N seconds")
    d.add_argument("--speed", type=float, default=10.0, help="simulated seconds per second")

    st = sub.add_parser("staffing", help="print an Erlang C/A recommendation table")
    st.add_argument("--arrivals", type=float, required=True, help="contacts per interval")
    st.add_argument("--interval", type=float, default=1800.0, help="interval seconds")
    st.add_argument("--aht", type=float, required=True, help="handle time seconds")
    st.add_argument("--target", type=float, default=0.8)
    st.add_argument("--within", type=float, default=30.0)
    st.add_argument("--concurrency", type=float, default=1.0)
    st.add_argument("--patience", type=float, default=0.0, help="mean patience s (Erlang A)")

    wh = sub.add_parser("webhook", help="Chatwoot webhook receiver producing to Kafka")
    wh.add_argument("--port", type=int, default=int(os.environ.get("CS_PULSE_WEBHOOK_PORT",
                                                                   "8088")))

    a = sub.add_parser("audit", help="recompute every number from the raw events (DuckDB SQL) "
                       "and compare with a worker's /metrics or the in-process engine")
    a.add_argument("file", nargs="?", help="history file (default: read the events topic)")
    a.add_argument("--format", choices=["jsonl", "technion", "twitter"], default=None)
    a.add_argument("--url", action="append", default=[],
                   help="a worker's /metrics URL (repeat for each worker); default: the engine "
                        "in process")
    a.add_argument("--at", type=float, default=None,
                   help="instant (epoch s) for the in-process comparison (default: last event)")
    a.add_argument("--tolerance", type=float, default=1e-6, help="relative tolerance")
    a.add_argument("--wait", type=float, default=300.0,
                   help="seconds to wait for the workers to settle")
    a.add_argument("--no-pipeline", action="store_true",
                   help="skip cs_events_* (per process; they restart with a worker)")
    a.add_argument("--limit", type=int, default=40, help="rows of the difference table")

    sk = sub.add_parser("sink", help="copy the events topic into durable history files")
    sk.add_argument("--dir", default=os.environ.get("CS_PULSE_HISTORY_DIR", "history"))
    sk.add_argument("--keep-days", type=int,
                    default=int(os.environ.get("CS_PULSE_HISTORY_DAYS", "400")),
                    help="delete day folders older than this")
    sk.add_argument("--idle-exit", type=float, default=None,
                    help="stop after this many seconds without new records")

    sc = sub.add_parser("scorecard", help="the monthly agent scorecard from the history")
    sc.add_argument("--month", required=True, help="YYYY-MM, in each shop's time zone")
    sc.add_argument("--team", default=None)
    sc.add_argument("--rules", default=None, help="JSON: indicators, targets, weights, floor, cap")
    sc.add_argument("--soft", default=None, help="CSV agent,indicator,score (supervisor)")
    sc.add_argument("--output", choices=["table", "csv", "json"], default="table")

    at = sub.add_parser("attendance", help="days worked, mean first/last online, a day's log")
    at.add_argument("--from", dest="first", required=True, help="YYYY-MM-DD (local)")
    at.add_argument("--to", dest="last", required=True, help="YYYY-MM-DD (local), included")
    at.add_argument("--day", default=None, help="also print this day's on/off log")
    for p in (sc, at):
        p.add_argument("--history", default=os.environ.get("CS_PULSE_HISTORY_DIR", "history"),
                       help="the sink's directory")
        p.add_argument("--file", default=None,
                       help="a history file instead (jsonl, technion, twitter)")
        p.add_argument("--format", choices=["jsonl", "technion", "twitter"], default=None)

    k = sub.add_parser("kafka", help="run the embedded development Kafka broker")
    k.add_argument("--port", type=int, default=9092)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.command == "worker":
        from cs_pulse.settings import Settings
        from cs_pulse.worker.app import run_worker

        return run_worker(Settings(), args.loglevel)
    if args.command == "simulate":
        from cs_pulse.sources.simulate import run_simulation

        return asyncio.run(run_simulation(args))
    if args.command == "replay":
        from cs_pulse.sources.replay import run_replay

        return asyncio.run(run_replay(args))
    if args.command == "demo":
        from cs_pulse.devtools.demo import run_demo

        return run_demo(args)
    if args.command == "staffing":
        from cs_pulse.reports.staffing_table import print_table

        print_table(args)
        return 0
    if args.command == "webhook":
        from cs_pulse.sources.chatwoot import run_webhook

        return asyncio.run(run_webhook(args.port))
    if args.command == "audit":
        from cs_pulse.audit.run import run_audit

        return run_audit(args)
    if args.command == "sink":
        return run_sink_command(args)
    if args.command == "scorecard":
        return run_scorecard_command(args)
    if args.command == "attendance":
        return run_attendance_command(args)
    if args.command == "kafka":
        from cs_pulse.devtools.embedded_kafka import KafkaBroker

        broker = KafkaBroker(port=args.port).start()
        print(f"Kafka on {broker.bootstrap} (^C to stop)", flush=True)
        try:
            assert broker.process is not None
            broker.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            broker.stop()
        return 0
    return 2


def run_sink_command(args: argparse.Namespace) -> int:
    import signal
    from pathlib import Path

    from cs_pulse.reports.history import run_sink
    from cs_pulse.settings import Settings

    settings = Settings()

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        copied = await run_sink(settings.bootstrap, settings.events_topic, Path(args.dir),
                                args.keep_days, stop=stop, idle_exit=args.idle_exit)
        logging.getLogger("cs_pulse").info("history sink stopped after %d records", copied)
        return 0

    return asyncio.run(run())


def run_scorecard_command(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from cs_pulse.reports import scorecard
    from cs_pulse.settings import Settings

    settings = Settings()
    records = history_records(args, settings)
    rules = (scorecard.Rules.from_config(json.loads(Path(args.rules).read_text()))
             if args.rules else scorecard.DEFAULT_RULES)
    counts = scorecard.monthly(records, args.month, settings)
    cards = scorecard.cards(counts, rules, args.team,
                            scorecard.soft_scores(Path(args.soft) if args.soft else None))
    sys.stdout.write(scorecard.render(cards, args.output,
                                      scorecard.team_figures(counts, args.team)))
    return 0


def history_records(args: argparse.Namespace, settings: Any) -> list[Any]:
    """The records a report reads: ``--file`` in a replay format, else the sink's history."""
    from pathlib import Path

    if args.file:
        from cs_pulse.audit.run import partition_file

        return partition_file(Path(args.file), args.format, settings.partitions)
    from cs_pulse.reports.history import read_history

    return read_history(Path(args.history))


def run_attendance_command(args: argparse.Namespace) -> int:
    from datetime import date

    from cs_pulse.reports import attendance
    from cs_pulse.settings import Settings

    settings = Settings()
    records = history_records(args, settings)
    rows = attendance.attendance(records, date.fromisoformat(args.first),
                                 date.fromisoformat(args.last), settings)
    sys.stdout.write(attendance.render(rows))
    if args.day:
        for shop, team, agent, local, status in attendance.day_log(
                records, date.fromisoformat(args.day), settings):
            print(f"{shop} {team or '-'} {agent} {local:%H:%M:%S} {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

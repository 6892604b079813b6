"""Console entry point: ``cs-pulse worker|simulate|replay|audit|sink|scorecard|demo|staffing|
webhook|kafka``."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import click
from pydantic import ValidationError

from cs_pulse.settings import ConfigError, Settings, describe, load_settings

EX_USAGE = 2          # bad command line or configuration (click's usage errors exit 2 too)
FORMATS = click.Choice(["jsonl", "technion", "twitter"])
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


class ConfigProblem(click.ClickException):
    """A configuration error, shown as one line ``Error: CS_PULSE_X: ...``, exit code 2."""

    exit_code = EX_USAGE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", file=file or sys.stderr)


class KafkaProblem(ConfigProblem):
    """Kafka unreachable or refusing this client (``kafka_client.KafkaAccessError``): one line
    ``Error: cannot connect to Kafka at host:port: ...``, and its exit code (77: credentials
    or certificates, 78: a protocol mismatch, 69: no answer)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Group(click.Group):
    """Turns a configuration error raised anywhere in a command into ``ConfigProblem``, and
    a refused Kafka connection into ``KafkaProblem``."""

    def invoke(self, ctx: click.Context) -> Any:
        from cs_pulse.kafka_client import KafkaAccessError

        try:
            return super().invoke(ctx)
        except KafkaAccessError as exc:
            raise KafkaProblem(str(exc), exc.exit_code) from None
        except ConfigError as exc:
            raise ConfigProblem(str(exc)) from None
        except ValidationError as exc:
            if exc.title != Settings.__name__:
                raise
            raise ConfigProblem(describe(exc)) from None


def current_settings() -> Settings:
    """The validated configuration (``CS_PULSE_*``), read once per command line."""
    ctx = click.get_current_context()
    meta = ctx.find_root().meta
    if "cs_pulse.settings" not in meta:
        meta["cs_pulse.settings"] = load_settings()
    loaded: Settings = meta["cs_pulse.settings"]
    return loaded


def kafka_settings() -> Settings:
    """``current_settings()``, once Kafka has accepted a connection with them (within
    ``CS_PULSE_KAFKA_CONNECT_TIMEOUT``): a wrong password or CA fails here in one line
    instead of in the retries of a client."""
    from cs_pulse.kafka_client import require_connection

    s = current_settings()
    require_connection(s)
    return s


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             help="cs-pulse, real-time KPIs of customer-service chat teams: worker, simulate, "
                  "replay, audit, sink, scorecard, attendance, demo, staffing, webhook, kafka.")
def cli() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@cli.command("worker", help="run a stream worker (Faust) serving /metrics")
@click.option("--loglevel", default=None, help="Faust log level (default: CS_PULSE_LOGLEVEL, "
              "warn)")
def worker_command(loglevel: str | None) -> int:
    from cs_pulse.worker.app import run_worker

    s = current_settings()
    return run_worker(s, loglevel or s.loglevel)


@cli.command("simulate", help="produce simulated shop traffic to Kafka")
@click.option("--seed", type=int, default=7)
@click.option("--speed", type=float, default=60.0,
              help="simulated seconds per wall second (60 = an hour a minute)")
@click.option("--duration", type=float, default=600.0, help="wall seconds to run")
@click.option("--rate", type=float, default=2000.0, help="max events per wall second")
@click.option("--shops", type=int, default=2)
@click.option("--agents", type=int, default=24, help="agents per shop")
@click.option("--start", default=None, help="simulated start (ISO, default: now)")
def simulate_command(seed: int, speed: float, duration: float, rate: float, shops: int,
                     agents: int, start: str | None) -> int:
    from cs_pulse.sources.simulate import run_simulation

    try:
        origin = datetime.fromisoformat(start).timestamp() if start else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--start") from None
    return asyncio.run(run_simulation(kafka_settings(), seed=seed, speed=speed, duration=duration,
                                      rate=rate, shops=shops, agents_per_shop=agents,
                                      start=origin))


@cli.command("replay", help="publish a recorded history in event-time order")
@click.argument("file", type=EXISTING_FILE)
@click.option("--format", "fmt", type=FORMATS, default=None)
@click.option("--speedup", type=float, default=0.0, help="0 = as fast as possible")
@click.option("--limit", type=int, default=0)
@click.option("--keep-time", is_flag=True,
              help="keep recorded timestamps (default: shift so the last event is now)")
def replay_command(file: Path, fmt: str | None, speedup: float, limit: int,
                   keep_time: bool) -> int:
    from cs_pulse.sources.replay import run_replay

    return asyncio.run(run_replay(kafka_settings(), file, fmt, speedup=speedup, limit=limit,
                                  keep_time=keep_time))


@cli.command("demo", help="embedded Kafka, a worker, Prometheus, Alertmanager and a scripted "
                          "scenario on a live terminal board")
@click.option("--duration", type=float, default=600.0,
              help="stop after N seconds of traffic (^C stops sooner)")
@click.option("--speed", type=float, default=None,
              help="simulated seconds per second (default: the scenario's, 30)")
@click.option("--scenario", type=click.Choice(["peak-breach", "steady"]), default="peak-breach",
              help="peak-breach: agents log off at peak, the page fires, staffing recovers, "
                   "it resolves; steady: nobody logs off")
@click.option("--headless", is_flag=True,
              help="plain lines (webhook notifications, a status line every 15 s), no board")
def demo_command(duration: float, speed: float | None, scenario: str, headless: bool) -> int:
    from cs_pulse.devtools.demo import DemoError, run_demo

    try:
        run_demo(duration, speed, scenario, headless=headless, cache=current_settings().cache)
    except DemoError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    return 0


@cli.command("staffing", help="print an Erlang C/A recommendation table")
@click.option("--arrivals", type=float, required=True, help="contacts per interval")
@click.option("--interval", type=float, default=1800.0, help="interval seconds")
@click.option("--aht", type=float, required=True, help="handle time seconds")
@click.option("--target", type=float, default=0.8)
@click.option("--within", type=float, default=30.0)
@click.option("--concurrency", type=float, default=1.0)
@click.option("--patience", type=float, default=0.0, help="mean patience s (Erlang A)")
def staffing_command(arrivals: float, interval: float, aht: float, target: float, within: float,
                     concurrency: float, patience: float) -> int:
    from cs_pulse.reports.staffing_table import print_table

    print_table(arrivals, interval, aht, target, within, concurrency, patience)
    return 0


@cli.command("webhook", help="chat platforms' webhooks (Chatwoot, Intercom) into Kafka, "
                              "through a disk spool")
@click.option("--port", type=int, default=None,
              help="listening port (default: CS_PULSE_WEBHOOK_PORT, 8088)")
def webhook_command(port: int | None) -> int:
    from cs_pulse.sources.webhooks.receiver import run_webhook

    # Not kafka_settings(): the receiver answers platforms while Kafka is down (the spool).
    return asyncio.run(run_webhook(current_settings(), port))


AUDIT_HELP = ("recompute every number from the raw events (DuckDB SQL) and compare with a "
              "worker's /metrics or the in-process engine")


@cli.command("audit", help=AUDIT_HELP, short_help=AUDIT_HELP)
@click.argument("file", required=False, type=EXISTING_FILE)
@click.option("--format", "fmt", type=FORMATS, default=None)
@click.option("--url", "urls", multiple=True,
              help="a worker's /metrics URL (repeat for each worker); default: the engine "
                   "in process")
@click.option("--at", type=float, default=None,
              help="instant (epoch s) for the in-process comparison (default: last event)")
@click.option("--tolerance", type=float, default=1e-6, help="relative tolerance")
@click.option("--wait", type=float, default=300.0,
              help="seconds to wait for the workers to settle")
@click.option("--no-pipeline", is_flag=True,
              help="skip cs_events_* (per process; they restart with a worker)")
@click.option("--limit", type=int, default=40, help="rows of the difference table")
def audit_command(file: Path | None, fmt: str | None, urls: tuple[str, ...], at: float | None,
                  tolerance: float, wait: float, no_pipeline: bool, limit: int) -> int:
    from cs_pulse.audit.run import run_audit

    settings = current_settings() if file is not None else kafka_settings()
    return run_audit(settings, file, fmt, urls=list(urls), at=at, tolerance=tolerance,
                     wait=wait, pipeline=not no_pipeline, limit=limit)


@cli.command("sink", help="copy the events topic into durable history files")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="history directory (default: CS_PULSE_HISTORY_DIR, history)")
@click.option("--keep-days", type=int, default=None,
              help="delete day folders older than this (default: CS_PULSE_HISTORY_DAYS, 400)")
@click.option("--idle-exit", type=float, default=None,
              help="stop after this many seconds without new records")
def sink_command(directory: Path | None, keep_days: int | None, idle_exit: float | None) -> int:
    s = kafka_settings()
    return run_sink_command(s, directory or s.history_dir,
                            s.history_days if keep_days is None else keep_days, idle_exit)


def history_options(f: Any) -> Any:
    """``--history``, ``--file`` and ``--format``: where a report reads its records."""
    f = click.option("--format", "fmt", type=FORMATS, default=None)(f)
    f = click.option("--file", type=EXISTING_FILE, default=None,
                     help="a history file instead (jsonl, technion, twitter)")(f)
    f = click.option("--history", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="the sink's directory (default: CS_PULSE_HISTORY_DIR, "
                     "history)")(f)
    return f


@cli.command("scorecard", help="the monthly agent scorecard from the history")
@click.option("--month", required=True, help="YYYY-MM, in each shop's time zone")
@click.option("--team", default=None)
@click.option("--rules", type=EXISTING_FILE, default=None,
              help="JSON: indicators, targets, weights, floor, cap")
@click.option("--soft", type=EXISTING_FILE, default=None,
              help="CSV agent,indicator,score (supervisor)")
@click.option("--output", type=click.Choice(["table", "csv", "json"]), default="table")
@history_options
def scorecard_command(month: str, team: str | None, rules: Path | None, soft: Path | None,
                      output: str, history: Path | None, file: Path | None,
                      fmt: str | None) -> int:
    s = current_settings()
    return run_scorecard_command(s, month, team=team, rules=rules, soft=soft, output=output,
                                 history=history or s.history_dir, file=file, fmt=fmt)


DAY = click.DateTime(formats=["%Y-%m-%d"])


@cli.command("attendance", help="days worked, mean first/last online, a day's log")
@click.option("--from", "first", type=DAY, required=True, help="YYYY-MM-DD (local)")
@click.option("--to", "last", type=DAY, required=True, help="YYYY-MM-DD (local), included")
@click.option("--day", type=DAY, default=None, help="also print this day's on/off log")
@history_options
def attendance_command(first: datetime, last: datetime, day: datetime | None,
                       history: Path | None, file: Path | None, fmt: str | None) -> int:
    s = current_settings()
    return run_attendance_command(s, first.date(), last.date(), day.date() if day else None,
                                  history=history or s.history_dir, file=file, fmt=fmt)


@cli.command("kafka", help="run the embedded development Kafka broker")
@click.option("--port", type=int, default=9092)
def kafka_command(port: int) -> int:
    from cs_pulse.devtools.children import stopped_on_signals
    from cs_pulse.devtools.embedded_kafka import KafkaBroker

    # SIGINT, SIGTERM and SIGHUP stop the broker and remove its data; the broker also dies
    # with this process if it is killed outright (devtools/children.py).
    with stopped_on_signals():
        broker = KafkaBroker(port=port, cache=current_settings().cache)
        try:
            broker.start()
            print(f"Kafka on {broker.bootstrap} (^C to stop)", flush=True)
            assert broker.process is not None
            broker.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            broker.stop()
    return 0


def run_sink_command(settings: Settings, directory: Path, keep_days: int,
                     idle_exit: float | None = None) -> int:
    """Copy the events topic into day files under ``directory`` until SIGTERM/SIGINT (or
    ``idle_exit`` seconds without records), deleting days older than ``keep_days``."""
    import signal

    from cs_pulse.reports.history import run_sink

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        copied = await run_sink(settings, settings.events_topic, directory,
                                keep_days, stop=stop, idle_exit=idle_exit)
        logging.getLogger("cs_pulse").info("history sink stopped after %d records", copied)
        return 0

    return asyncio.run(run())


def run_scorecard_command(settings: Settings, month: str, *, team: str | None = None,
                          rules: Path | None = None, soft: Path | None = None,
                          output: str = "table", history: Path = Path("history"),
                          file: Path | None = None, fmt: str | None = None) -> int:
    """Print the scorecard of ``month`` (``YYYY-MM``) as ``output`` (table, csv or json)."""
    import json

    from cs_pulse.reports import scorecard

    records = history_records(settings, history, file, fmt)
    card_rules = (scorecard.Rules.from_config(json.loads(rules.read_text()))
                  if rules else scorecard.DEFAULT_RULES)
    counts = scorecard.monthly(records, month, settings)
    cards = scorecard.cards(counts, card_rules, team, scorecard.soft_scores(soft))
    sys.stdout.write(scorecard.render(cards, output, scorecard.team_figures(counts, team)))
    return 0


def history_records(settings: Settings, history: Path, file: Path | None = None,
                    fmt: str | None = None) -> list[Any]:
    """The records a report reads: ``file`` in a replay format, else the sink's history."""
    if file is not None:
        from cs_pulse.audit.run import partition_file

        return partition_file(file, fmt, settings.partitions)
    from cs_pulse.reports.history import read_history

    return read_history(history)


def run_attendance_command(settings: Settings, first: date, last: date,
                           day: date | None = None, *, history: Path = Path("history"),
                           file: Path | None = None, fmt: str | None = None) -> int:
    """Print attendance from ``first`` to ``last`` (local dates, included), and ``day``'s
    on/off log if given."""
    from cs_pulse.reports import attendance

    records = history_records(settings, history, file, fmt)
    rows = attendance.attendance(records, first, last, settings)
    sys.stdout.write(attendance.render(rows))
    if day is not None:
        for shop, team, agent, local, status in attendance.day_log(records, day, settings):
            print(f"{shop} {team or '-'} {agent} {local:%H:%M:%S} {status}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a command line (``sys.argv[1:]`` if None) and return its exit code: the command's,
    2 for a usage or configuration error (one line on stderr), 130 when interrupted."""
    try:
        result = cli.main(args=argv, prog_name="cs-pulse", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

"""``cs-pulse demo``: a tour for a newcomer, on 127.0.0.1 without Docker.

Starts an embedded Kafka broker, one worker, Debian's Prometheus (the project's rule files,
scraping the worker every second, every rule group evaluated every 2 s) and Alertmanager (the
project's routes with the receivers pointed at a local webhook receiver, grouping timers of a
few seconds), then a scripted scenario's traffic (``scenario.py``; by default ``peak-breach``:
a shop's agents log off at peak, the service-level page fires, staffing recovers, the page
resolves). A rich board shows the shops' KPIs, the alerts and what reached the receiver; the
children's output goes to log files in one folder, whose path is printed. Everything stops
after ``duration`` seconds of traffic or on ^C. ``headless`` prints plain lines instead of the
board, and ``run_demo`` returns what the receiver got (the end-to-end test uses that).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live

from cs_pulse.devtools import board as b
from cs_pulse.devtools.children import spawn, stopped_on_signals
from cs_pulse.devtools.embedded_kafka import KafkaBroker, free_port, stop_process
from cs_pulse.devtools.promstack import Alertmanager, Prometheus, WebhookSink, wait_http
from cs_pulse.devtools.scenario import SCENARIOS, Scenario
from cs_pulse.kafka_client import child_env

PAGE = "CsServiceLevelFastBurn"          # the page the peak-breach scenario drives
RULE_INTERVAL = "2s"
ALERTMANAGER_TIMERS = {"group_wait": "2s", "group_interval": "5s"}
STATUS_EVERY = 15.0                      # headless: a status line every 15 s


@dataclass
class DemoResult:
    scenario: str
    log_dir: Path
    notifications: list[b.Notification] = field(default_factory=list)
    traffic_seconds: float = 0.0

    def received(self, alertname: str, status: str, receiver: str = "/oncall"
                 ) -> list[b.Notification]:
        return [n for n in self.notifications if n.alertname == alertname
                and n.status == status and n.receiver == receiver]

    def page_fired_and_resolved(self, alertname: str = PAGE) -> bool:
        """A page reached on-call, and every shop/queue it fired for was resolved since."""
        last_fired = {_where(n): n.at for n in self.received(alertname, "firing")}
        resolved = {_where(n) for n in self.received(alertname, "resolved")
                    if n.at >= last_fired.get(_where(n), float("inf"))}
        return bool(last_fired) and set(last_fired) <= resolved

    def timeline(self) -> list[str]:
        return [f"+{n.at:4.0f} s  {n.receiver:<14} {n.status:<8} {n.alertname} "
                + b.where(*_where(n)) for n in self.notifications]


def _where(n: b.Notification) -> tuple[str, str]:
    return n.labels.get("shop", ""), n.labels.get("queue", "")


class DemoError(RuntimeError):
    pass


def run_demo(duration: float = 600.0, speed: float | None = None,
             scenario: str = "peak-breach", headless: bool = False,
             until: Callable[[DemoResult], bool] | None = None,
             cache: Path | None = None) -> DemoResult:
    """Run the demo: ``duration`` wall seconds of the scenario's traffic (at ``speed``
    simulated seconds per wall second, default the scenario's) after start-up, or until
    ``until(result)`` holds, or ^C. ``cache``: the Kafka jars' folder."""
    sc = SCENARIOS[scenario]
    speed = speed or sc.speed
    log_dir = Path(tempfile.mkdtemp(prefix="cs-pulse-demo-"))
    result = DemoResult(scenario, log_dir)
    console = Console(highlight=False)
    say = console.print
    say(f"cs-pulse demo, scenario {scenario}: logs of every process in {log_dir}")
    try:
        with stopped_on_signals(), _log_to(log_dir / "demo.log"), ExitStack() as stack:
            stack.callback(_remove_data, log_dir)
            say("starting Kafka (the first run downloads the broker jars with mvn) ...")
            broker = KafkaBroker(port=free_port(), cache=cache).start()
            stack.callback(_stop_broker, broker, log_dir)
            port = free_port()
            env = _child_env(broker.bootstrap, port, log_dir, sc)
            say("starting the worker, Prometheus and Alertmanager ...")
            worker = _spawn("worker", ["worker"], env, log_dir)
            stack.callback(stop_process, worker, 20)
            sink = WebhookSink()
            stack.callback(sink.close)
            am = Alertmanager(log_dir, sink, timers=ALERTMANAGER_TIMERS)
            stack.callback(am.stop)
            prom = Prometheus(log_dir, [f"127.0.0.1:{port}"], am.port,
                              rule_interval=RULE_INTERVAL)
            stack.callback(prom.stop)
            _wait_ready(worker, f"http://127.0.0.1:{port}/ready", log_dir / "worker.log")
            start = sc.start(time.time(), duration, speed)
            traffic = _spawn("simulator", [
                "-m", "cs_pulse.devtools.scenario", scenario, "--start", str(start),
                "--duration", str(duration), "--speed", str(speed)], env, log_dir)
            stack.callback(stop_process, traffic, 20)
            urls = {"Prometheus": prom.url, "Alertmanager": am.url,
                    "worker": f"http://127.0.0.1:{port}/metrics",
                    "webhook receiver": f"{sink.url}/oncall (and /supervisors)"}
            for name, url in urls.items():
                say(f"  {name + ':':<18} {url}")
            say(f"  {'Kafka:':<18} {broker.bootstrap}")
            stack.callback(say, "stopping ...")
            stack.callback(_ignore_interrupts)    # a second ^C does not cut the stopping short
            _watch(_Feeds(prom, am, sink, sc, start, speed, urls, log_dir), result, worker,
                   duration, headless, until, console)
    except KeyboardInterrupt:
        say("interrupted")
    for line in result.timeline():
        say(line)
    say(f"logs: {log_dir}")
    return result


# --- children ----------------------------------------------------------------------------

def _child_env(bootstrap: str, port: int, log_dir: Path, sc: Scenario) -> dict[str, str]:
    # The children are cs-pulse processes: they inherit this environment (PATH, HOME, the
    # virtualenv, and the user's other CS_PULSE_* settings, which they validate themselves),
    # with the demo's broker, listener, partitions, data folder and shop calendar on top.
    # The demo's broker is plaintext: no CS_PULSE_KAFKA_* of the user's applies to it.
    return dict(os.environ,  # env-ok: devtools, environment of child processes
                **child_env(bootstrap), CS_PULSE_METRICS_HOST="127.0.0.1",
                CS_PULSE_METRICS_PORT=str(port), CS_PULSE_PARTITIONS="4",
                CS_PULSE_DATA_DIR=str(log_dir / "worker-data"),
                CS_PULSE_SHOPS=json.dumps(sc.shops_config()))


def _spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path
           ) -> subprocess.Popen[bytes]:
    """``python -m cs_pulse.cli ARGS`` (or ``python ARGS`` when they start with -m), its output
    in ``log_dir/NAME.log``, in its own session: a ^C reaches only the demo, which stops the
    children in order (and the child dies with the demo however the demo dies)."""
    argv = [sys.executable, *(args if args[0] == "-m" else ["-m", "cs_pulse.cli", *args])]
    with open(log_dir / f"{name}.log", "ab") as log:
        return spawn(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 120.0
                ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the worker exited with {proc.returncode}; see {log}")
        try:
            wait_http(url, timeout=1.0)
            return
        except TimeoutError:
            pass
    raise DemoError(f"the worker was not ready in {timeout:.0f} s; see {log}")


def _stop_broker(broker: KafkaBroker, log_dir: Path) -> None:
    if broker.log_path is not None and broker.log_path.exists():
        shutil.copy(broker.log_path, log_dir / "kafka.log")
    broker.stop()


def _remove_data(log_dir: Path) -> None:
    """Keep the logs and configuration files; drop the data folders."""
    for name in ("worker-data", "prometheus-data", "alertmanager-data"):
        shutil.rmtree(log_dir / name, ignore_errors=True)


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """This process's own log records (the Kafka client's, while the broker starts) go to a
    file, not over the board."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved
        handler.close()


def _ignore_interrupts() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# --- the board -----------------------------------------------------------------------------

@dataclass
class _Feeds:
    prom: Prometheus
    am: Alertmanager
    sink: WebhookSink
    scenario: Scenario
    start: float                 # simulated start, epoch seconds
    speed: float
    urls: dict[str, str]
    log_dir: Path
    t0: float = field(default_factory=time.time)   # wall time the traffic started
    seen: int = 0
    last: b.Board | None = None

    def new_notifications(self) -> list[b.Notification]:
        posts = list(self.sink.posts)
        at = time.time() - self.t0
        out = [n for path, payload in posts[self.seen:] for n in b.notifications(at, path,
                                                                               payload)]
        self.seen = len(posts)
        return out

    def clock(self) -> tuple[str, str]:
        """The simulated time the worker's windows end at, and the story's chapter."""
        try:
            sim = b.vector(self.prom.query(b.CLOCK), label="").get("")
        except (OSError, ValueError):
            sim = None
        if sim is None:
            return "-", self.scenario.chapter(0)
        local = self.scenario.calendar.local(sim)
        return local.strftime("%H:%M:%S"), self.scenario.chapter(sim - self.start)

    def board(self, result: DemoResult) -> b.Board:
        now = time.time()
        try:
            values = {name: b.vector(self.prom.query(q)) for name, q in b.SHOP_QUERIES.items()}
            points = b.TREND_SECONDS // b.TREND_STEP + 1
            since = now - b.TREND_SECONDS
            trends = b.matrix(self.prom.query_range(b.SL30, since, now, b.TREND_STEP), since,
                              b.TREND_STEP, points)
            alerts = b.alert_rows(self.am.alerts(), self.prom.alerts())
            clock, chapter = self.clock()
        except (OSError, ValueError, KeyError) as exc:
            if self.last is None:
                raise
            self.last.note = f"Prometheus or Alertmanager did not answer: {exc}"
            return self.last
        self.last = b.Board(self.scenario.name, clock, chapter, now - self.t0, self.speed,
                            b.shop_rows(values, trends), alerts, list(result.notifications),
                            self.urls, str(self.log_dir))
        return self.last


def _watch(feeds: _Feeds, result: DemoResult, worker: subprocess.Popen[bytes],
           duration: float, headless: bool, until: Callable[[DemoResult], bool] | None,
           console: Console) -> None:
    """Refresh the board (or print plain lines) once a second until ``duration`` has passed
    since the traffic started, or ``until(result)``."""
    feeds.t0 = time.time()
    deadline = feeds.t0 + duration
    next_status, chapter = 0.0, ""
    live = nullcontext() if headless else Live(console=console, screen=True,
                                               auto_refresh=False)
    with live:
        while time.time() < deadline:
            tick = time.monotonic()
            if worker.poll() is not None:
                raise DemoError(f"the worker exited with {worker.returncode}; see "
                                f"{feeds.log_dir / 'worker.log'}")
            fresh = feeds.new_notifications()
            result.notifications += fresh
            result.traffic_seconds = time.time() - feeds.t0
            if until is not None and until(result):
                break
            if isinstance(live, Live):
                live.update(b.render(feeds.board(result)), refresh=True)
            else:
                for line in result.timeline()[len(result.notifications) - len(fresh):]:
                    console.print(line)
                _, now_chapter = feeds.clock()
                if now_chapter != chapter:
                    chapter = now_chapter
                    console.print(f"+{result.traffic_seconds:4.0f} s  {chapter}")
                if result.traffic_seconds >= next_status:
                    next_status += STATUS_EVERY
                    console.print(status_line(feeds.board(result)))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


def status_line(board: b.Board) -> str:
    """The headless demo's periodic line: each shop's SL30, staffing and queue; the alerts
    firing (and how many Prometheus has pending)."""
    shops = " | ".join(
        f"{r.shop} SL30 {b.pct(r.sl30)} online {b.count(r.online)}/{b.count(r.needed)} "
        f"waiting {b.count(r.waiting)}" for r in board.shops)
    firing = ", ".join(f"{a.name} {b.where(a.shop, a.queue)} ({a.severity})"
                       for a in board.alerts if a.state == "firing")
    pending = sum(a.state == "pending" for a in board.alerts)
    return (f"+{board.elapsed:4.0f} s  {board.clock}  {shops}  firing: {firing or 'none'}; "
            f"{pending} pending")

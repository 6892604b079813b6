"""Debian's ``prometheus`` and ``alertmanager`` on loopback with the project's rules and routes,
plus a webhook receiver: for the demo and the end-to-end tests.

Each runs on a free port with its data and log in a given folder. Prometheus loads the
generated rule files (``deploy/prometheus/rules``) unchanged, or with every group evaluated at
one shorter interval; Alertmanager loads ``deploy/alertmanager/alertmanager.yml`` with the
receivers pointed at the local webhook and, if asked, shorter grouping timers. Configuration is
written as JSON, which both binaries read as YAML.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cs_pulse.devtools.children import spawn
from cs_pulse.devtools.embedded_kafka import REPO_ROOT, free_port, stop_process

REPO = REPO_ROOT
RULES = REPO / "deploy" / "prometheus" / "rules"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RECEIVER_PLACEHOLDER = "http://alert-receiver:9095"


def wait_http(url: str, timeout: float = 60.0) -> None:
    """Until ``url`` answers 2xx (``TimeoutError`` after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


def get_json(url: str, timeout: float = 10.0) -> Any:
    """The JSON body of ``url``; an HTTP error's body too (Prometheus explains a 400 there)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return json.loads(err.read())


class WebhookSink:
    """Collects Alertmanager webhook posts (path, payload), in arrival order."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Daemon:
    """A binary on a free loopback port, its output in ``<name>.log``, in its own session (a
    ^C in the demo's terminal reaches the demo, which stops it in order)."""

    name = ""
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def _start(self, tmp: Path, argv: list[str]) -> None:
        self.log_path = tmp / f"{self.name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = spawn(argv, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
        try:
            wait_http(f"{self.url}/-/ready")
        except TimeoutError:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(f"{names[0]} is not installed (Debian: apt-get install {names[-1]}; "
                       "./dev setup does it)")


class Alertmanager(_Daemon):
    """The project's routes, every receiver pointed at ``sink``; ``timers`` replaces the
    grouping timers everywhere they are set (e.g. ``{"group_wait": "2s"}``)."""

    name = "alertmanager"

    def __init__(self, tmp: Path, sink: WebhookSink, timers: dict[str, str] | None = None
                 ) -> None:
        self.port = free_port()
        text = ALERTMANAGER_CONFIG.read_text().replace(RECEIVER_PLACEHOLDER, sink.url)
        for key, value in (timers or {}).items():
            text = re.sub(rf"(?m)^(\s*{re.escape(key)}:) \S+$", rf"\1 {value}", text)
        config = tmp / "alertmanager.yml"
        config.write_text(text)
        self._start(tmp, [
            _binary("prometheus-alertmanager", "alertmanager"), f"--config.file={config}",
            f"--storage.path={tmp / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
        ])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts that are neither silenced nor inhibited (API v2)."""
        return list(get_json(f"{self.url}/api/v2/alerts?active=true&silenced=false"
                             "&inhibited=false&unprocessed=false", timeout=5))


class Prometheus(_Daemon):
    """Scrapes the workers ``targets`` (jobs ``cs-pulse`` and ``cs-pulse-agents``, their two
    pages) every ``scrape_interval`` with the project's rule
    files; ``rule_interval`` evaluates every group at that interval instead of the files' own
    (the rules themselves are unchanged). Sends alerts to ``alertmanager_port`` if given."""

    name = "prometheus"

    def __init__(self, tmp: Path, targets: list[str], alertmanager_port: int | None = None,
                 rule_interval: str | None = None, scrape_interval: str = "1s") -> None:
        self.port = free_port()
        rules = []
        for name in ("recording.yml", "alerts.yml"):
            text = (RULES / name).read_text()
            if rule_interval:
                text = re.sub(r"(?m)^\s+interval: \S+\n", "", text)
            path = tmp / name
            path.write_text(text)
            rules.append(str(path))
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval,
                       "evaluation_interval": rule_interval or scrape_interval},
            "rule_files": rules,
            "scrape_configs": [{"job_name": "cs-pulse",
                                "static_configs": [{"targets": targets}]},
                               {"job_name": "cs-pulse-agents", "metrics_path": "/metrics/agents",
                                "static_configs": [{"targets": targets}]}],
        }
        if alertmanager_port:
            config["alerting"] = {"alertmanagers": [{"static_configs": [
                {"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]}
        path = tmp / "prometheus.yml"
        path.write_text(json.dumps(config, indent=1))
        self._start(tmp, [
            _binary("prometheus"), f"--config.file={path}",
            f"--storage.tsdb.path={tmp / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ])

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query (``status`` ``error`` if it does not parse)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return get_json(url)

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        url = f"{self.url}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": start, "end": end, "step": step})
        return get_json(url)

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts as Prometheus sees them."""
        return list(get_json(f"{self.url}/api/v1/alerts", timeout=5)["data"]["alerts"])

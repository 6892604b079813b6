"""Debian's prometheus and alertmanager binaries on loopback, plus a webhook sink."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from cs_pulse.devtools.embedded_kafka import free_port

REPO = Path(__file__).parents[1]


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


class WebhookSink:
    """Collects Alertmanager webhook posts (path, payload)."""

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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class Alertmanager:
    def __init__(self, tmp: Path, sink: WebhookSink) -> None:
        self.port = free_port()
        text = (REPO / "deploy/alertmanager/alertmanager.yml").read_text()
        config = tmp / "alertmanager.yml"
        config.write_text(text.replace("http://alert-receiver:9095",
                                       f"http://127.0.0.1:{sink.port}"))
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        assert binary, "Debian's prometheus-alertmanager is not installed"
        self.log = open(tmp / "alertmanager.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([
            binary, f"--config.file={config}", f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
        ], stdout=self.log, stderr=subprocess.STDOUT)
        _wait_http(f"http://127.0.0.1:{self.port}/-/ready")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


class Prometheus:
    def __init__(self, tmp: Path, targets: list[str], alertmanager_port: int | None = None,
                 rule_interval: str | None = None) -> None:
        self.port = free_port()
        rules = []
        for name in ("recording.yml", "alerts.yml"):
            doc = yaml.safe_load((REPO / "deploy/prometheus/rules" / name).read_text())
            if rule_interval:  # tests evaluate faster; the rules themselves are unchanged
                for group in doc["groups"]:
                    group["interval"] = rule_interval
            path = tmp / name
            path.write_text(yaml.safe_dump(doc))
            rules.append(str(path))
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rules,
            "scrape_configs": [{"job_name": "cs-pulse",
                                "static_configs": [{"targets": targets}]}],
        }
        if alertmanager_port:
            config["alerting"] = {"alertmanagers": [{"static_configs": [
                {"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]}
        path = tmp / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        binary = shutil.which("prometheus")
        assert binary, "Debian's prometheus is not installed"
        self.log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([
            binary, f"--config.file={path}", f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ], stdout=self.log, stderr=subprocess.STDOUT)
        _wait_http(f"http://127.0.0.1:{self.port}/-/ready")

    def query(self, expr: str) -> dict[str, Any]:
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as err:   # 400 = the query does not parse
            return json.loads(err.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)

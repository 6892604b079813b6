"""A real single-node Kafka broker (KRaft) for development and tests, without Docker.

The broker jars are resolved from Maven Central with ``mvn`` using ``deploy/kafka/pom.xml`` and
cached under ``Settings.cache`` (``CS_PULSE_CACHE``, default ``~/.cache/cs-pulse``). The broker
listens on 127.0.0.1 only, keeps its data in a temporary directory and is stopped (and the
directory removed) on exit.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_KAFKA_VERSION = "3.9.1"
REPO_ROOT = Path(__file__).resolve().parents[3]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"


def cache_dir() -> Path:
    """The configured jar cache (``CS_PULSE_CACHE``)."""
    from cs_pulse.settings import Settings

    return Settings().cache


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM, and SIGKILL if the process has not exited ``timeout`` seconds later."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def resolve_jars(version: str = DEFAULT_KAFKA_VERSION, cache: Path | None = None) -> Path:
    """Download (once) the broker runtime for ``version`` into ``cache`` (default: the
    configured ``cache_dir()``) and return the folder of jars."""
    libs = (cache if cache is not None else cache_dir()) / f"kafka-{version}"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    libs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            f"-Dkafka.version={version}", f"-DoutputDirectory={libs}",
        ],
        check=True,
    )
    marker.touch()
    return libs


def _server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir / 'logs'}",
            "num.partitions=4",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.flush.interval.messages=1000000",
            "",
        ]
    )


@dataclass
class KafkaBroker:
    """Handle on a running broker; use as a context manager or call ``start``/``stop``."""

    version: str = DEFAULT_KAFKA_VERSION
    port: int = 0
    heap: str = "512m"
    process: subprocess.Popen[bytes] | None = None
    data_dir: Path | None = None
    log_path: Path | None = None
    cache: Path | None = None        # the jar cache; None: the configured ``cache_dir()``
    _controller_port: int = field(default=0, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        libs = resolve_jars(self.version, self.cache)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="cs-pulse-kafka-"))
        self.port = self.port or free_port()
        self._controller_port = self._controller_port or free_port()
        props = self.data_dir / "server.properties"
        props.write_text(_server_properties(self.data_dir, self.port, self._controller_port))
        log4j = self.data_dir / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        java = [
            "java", f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
            f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{libs}/*",
        ]
        formatted = self.data_dir / "logs" / "meta.properties"
        if not formatted.exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(props)],
                check=True, stdout=subprocess.DEVNULL,
            )
        self.log_path = self.data_dir / "broker.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*java, "kafka.Kafka", str(props)], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Ready means the broker answers a metadata request, not merely that the port is open."""
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient  # local: keep import cost off the CLI path

        async def probe() -> bool:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
            try:
                await admin.start()
                await admin.list_topics()
                return True
            except Exception:
                return False
            finally:
                await admin.close()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Kafka exited early, see {self.log_path}:\n{self.tail_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if asyncio.run(probe()):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Kafka did not become ready in {timeout}s")

    def tail_log(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """Hard stop (SIGKILL) keeping the data directory, for restart tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def stop(self, remove_data: bool = True) -> None:
        stop_process(self.process)
        self.process = None
        if remove_data and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # ``python -m cs_pulse.devtools.embedded_kafka [VERSION]``: fetch jars
    import sys

    print(resolve_jars(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_KAFKA_VERSION))

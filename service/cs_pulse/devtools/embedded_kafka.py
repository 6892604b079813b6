"""A real single-node Kafka broker (KRaft) for development and tests, without Docker.

The broker jars are resolved from Maven Central with ``mvn`` using ``deploy/kafka/pom.xml`` and
cached under ``Settings.cache`` (``CS_PULSE_CACHE``, default ``~/.cache/cs-pulse``). The broker
listens on 127.0.0.1 only, keeps its data in a temporary directory and is stopped (and the
directory removed) on exit.

``KafkaBroker(secure=True)`` adds secured listeners next to the plaintext one (which the
controller and the readiness probe keep using): ``SASL_SSL`` (TLS, and SCRAM-SHA-512,
SCRAM-SHA-256 or PLAIN), ``SSL`` requiring a client certificate (mTLS) and ``SASL_PLAINTEXT``.
Certificates (a test CA, the broker's for 127.0.0.1, a client's, and a second CA that signed
nothing the broker has) are generated at start with Debian's ``openssl``; the SCRAM user is
created by Kafka's own ``StorageTool format --add-scram``. ``client_env`` and
``client_settings`` give the ``CS_PULSE_KAFKA_*`` configuration of a client of one listener.
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
from typing import TYPE_CHECKING, Any

from cs_pulse.devtools.children import spawn

if TYPE_CHECKING:
    from cs_pulse.settings import Settings

DEFAULT_KAFKA_VERSION = "3.9.1"
USER, PASSWORD = "cspulse", "cspulse-secret"    # the secured listeners' SASL user
SECURED_LISTENERS = ("SASL_SSL", "SSL", "SASL_PLAINTEXT")
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


@dataclass(frozen=True)
class Certificates:
    """PEM files made by ``make_certificates``."""

    folder: Path
    ca: Path              # the test CA (the clients' CS_PULSE_KAFKA_SSL_CAFILE)
    broker: Path          # the broker's private key and certificate (CN and SAN 127.0.0.1)
    client_cert: Path     # a client certificate signed by the CA (mTLS)
    client_key: Path
    other_ca: Path        # a CA that signed nothing the broker has (an untrusted CA)


def make_certificates(folder: Path, days: int = 2) -> Certificates:
    """A test CA, the broker's key and certificate for 127.0.0.1/localhost, a client key and
    certificate, and another CA, with Debian's ``openssl`` (keys unencrypted PKCS#8, as
    Kafka's PEM key stores read them)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    def ca(name: str) -> None:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days),
                "-subj", f"/CN=cs-pulse {name}", "-keyout", f"{name}.key", "-out",
                f"{name}.pem", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def signed(name: str, extensions: str) -> None:
        (folder / f"{name}.ext").write_text(extensions)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
                f"{name}.key", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", str(days), "-out", f"{name}.crt",
                "-extfile", f"{name}.ext")

    ca("ca")
    ca("other-ca")
    signed("broker", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                     "extendedKeyUsage=serverAuth,clientAuth\n")
    signed("client", "extendedKeyUsage=clientAuth\n")
    broker = folder / "broker.pem"
    broker.write_text((folder / "broker.key").read_text() + (folder / "broker.crt").read_text())
    return Certificates(folder, folder / "ca.pem", broker, folder / "client.crt",
                        folder / "client.key", folder / "other-ca.pem")


def _secured_properties(ports: dict[str, int], certs: Certificates) -> list[str]:
    jaas_plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                  f'user_{USER}="{PASSWORD}";')
    jaas_scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    lines = [
        "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={certs.broker}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={certs.ca}",
        "listener.name.ssl.ssl.client.auth=required",   # mTLS on the SSL listener
    ]
    for listener in ("sasl_ssl", "sasl_plaintext"):
        lines += [f"listener.name.{listener}.plain.sasl.jaas.config={jaas_plain}",
                  f"listener.name.{listener}.scram-sha-256.sasl.jaas.config={jaas_scram}",
                  f"listener.name.{listener}.scram-sha-512.sasl.jaas.config={jaas_scram}"]
    return lines


def _server_properties(data_dir: Path, port: int, controller_port: int,
                       secured: dict[str, int] | None = None,
                       certs: Certificates | None = None) -> str:
    listeners = [f"PLAINTEXT://127.0.0.1:{port}"]
    listeners += [f"{name}://127.0.0.1:{p}" for name, p in (secured or {}).items()]
    protocols = ",".join(f"{name}:{name}" for name in ["PLAINTEXT", *(secured or {})])
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners={','.join(listeners)},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={protocols},CONTROLLER:PLAINTEXT",
            *(_secured_properties(secured, certs) if secured and certs else []),
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
    secure: bool = False             # also SASL_SSL, SSL (mTLS) and SASL_PLAINTEXT listeners
    secured_ports: dict[str, int] = field(default_factory=dict)
    certificates: Certificates | None = None
    _controller_port: int = field(default=0, repr=False)

    @property
    def bootstrap(self) -> str:
        """The plaintext listener."""
        return f"127.0.0.1:{self.port}"

    def client_env(self, protocol: str = "SASL_SSL", mechanism: str = "SCRAM-SHA-512", *,
                   password: str = PASSWORD, cafile: Path | None = None,
                   client_cert: bool = True) -> dict[str, str]:
        """``CS_PULSE_BROKER`` and every ``CS_PULSE_KAFKA_*`` security variable (empty: unset,
        overriding a parent environment's) of a client of the ``protocol`` listener:
        the user and ``password`` for SASL, the test CA (or ``cafile``) for TLS, and the
        client certificate on the mTLS listener (unless ``client_cert`` is False)."""
        env = {f"CS_PULSE_KAFKA_{name}": "" for name in (
            "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD", "SASL_PASSWORD_FILE",
            "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE", "SSL_KEY_PASSWORD")}
        env["CS_PULSE_KAFKA_SECURITY_PROTOCOL"] = protocol
        if protocol == "PLAINTEXT":
            return env | {"CS_PULSE_BROKER": self.bootstrap}
        if not self.secure or self.certificates is None:
            raise RuntimeError("a broker started with secure=True has the secured listeners")
        env["CS_PULSE_BROKER"] = f"127.0.0.1:{self.secured_ports[protocol]}"
        if protocol.startswith("SASL_"):
            env |= {"CS_PULSE_KAFKA_SASL_MECHANISM": mechanism,
                    "CS_PULSE_KAFKA_SASL_USERNAME": USER, "CS_PULSE_KAFKA_SASL_PASSWORD": password}
        if protocol.endswith("SSL"):
            env["CS_PULSE_KAFKA_SSL_CAFILE"] = str(cafile or self.certificates.ca)
        if protocol == "SSL" and client_cert:
            env |= {"CS_PULSE_KAFKA_SSL_CERTFILE": str(self.certificates.client_cert),
                    "CS_PULSE_KAFKA_SSL_KEYFILE": str(self.certificates.client_key)}
        return env

    def client_settings(self, protocol: str = "SASL_SSL", mechanism: str = "SCRAM-SHA-512",
                        **env_options: Any) -> Settings:
        """A validated ``Settings`` of the defaults with ``client_env``'s variables."""
        from cs_pulse.settings import ENV_PREFIX, Settings

        fields = {name.removeprefix(ENV_PREFIX).lower(): value
                  for name, value in self.client_env(protocol, mechanism, **env_options).items()
                  if value}
        return Settings.model_validate(fields)

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        libs = resolve_jars(self.version, self.cache)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="cs-pulse-kafka-"))
        self.port = self.port or free_port()
        self._controller_port = self._controller_port or free_port()
        if self.secure:
            self.secured_ports = self.secured_ports or {
                name: free_port() for name in SECURED_LISTENERS}
            if self.certificates is None:
                self.certificates = make_certificates(self.data_dir / "certs")
        props = self.data_dir / "server.properties"
        props.write_text(_server_properties(self.data_dir, self.port, self._controller_port,
                                            self.secured_ports, self.certificates))
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
            # SCRAM credentials of the secured listeners' user, in the initial metadata.
            scram = [f"--add-scram=SCRAM-SHA-{bits}=[name={USER},password={PASSWORD}]"
                     for bits in (256, 512) if self.secure]
            subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(props), *scram],
                check=True, stdout=subprocess.DEVNULL,
            )
        self.log_path = self.data_dir / "broker.log"
        with open(self.log_path, "ab") as log:
            self.process = spawn(   # dies with this process, however it dies
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
            if self.certificates is not None and not self.certificates.folder.exists():
                self.certificates = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # ``python -m cs_pulse.devtools.embedded_kafka [VERSION]``: fetch jars
    import sys

    print(resolve_jars(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_KAFKA_VERSION))

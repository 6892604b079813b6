"""The webhook receiver served for real on 127.0.0.1 (an ephemeral port, the limits of
``serve_webhook``), with its spool in a temporary folder; signed requests, raw-socket clients
for what HTTP libraries will not send (trickled bodies, lying lengths), and its counters read
back from ``/metrics``."""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cs_pulse.settings import Settings
from cs_pulse.sources.webhooks.chatwoot import Chatwoot, sign
from cs_pulse.sources.webhooks.forward import Batch, Forwarder, kafka_sender
from cs_pulse.sources.webhooks.platform import Platform
from cs_pulse.sources.webhooks.receiver import build_receiver_app, serve_webhook
from cs_pulse.sources.webhooks.spool import Spool

SECRET = b"test-secret"
SAMPLES = Path(__file__).parent / "data" / "chatwoot"
Event = dict[str, Any]


def sample(name: str = "message_created") -> bytes:
    return (SAMPLES / f"{name}.chatwoot-docs-22c756cb.json").read_bytes()


def signed(body: bytes, timestamp: float | None = None, delivery: str | None = None,
           **extra: str) -> dict[str, str]:
    ts = str(int(time.time() if timestamp is None else timestamp))
    headers = {"X-Chatwoot-Timestamp": ts, "X-Chatwoot-Signature": sign(SECRET, ts, body),
               "Content-Type": "application/json"}
    if delivery is not None:
        headers["X-Chatwoot-Delivery"] = delivery
    return headers | extra


@dataclass
class Receiver:
    port: int
    spool: Spool

    @property
    def sent(self) -> list[list[Event]]:
        """The events of each spooled delivery not yet forwarded, in order (what goes on to
        Kafka)."""
        return [Batch.of([r]).events for r in self.spool.read(10 ** 6)
                if Batch.of([r]).events]

    @property
    def dead_letters(self) -> list[bytes]:
        return [body for r in self.spool.read(10 ** 6)
                for body, _ in Batch.of([r]).dead_letters]

    async def post(self, body: bytes, headers: dict[str, str] | None = None,
                   path: str = "/chatwoot") -> tuple[int, dict[str, str], str]:
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{self.port}{path}", data=body,
                headers=headers or {}) as response:
            return response.status, dict(response.headers), await response.text()

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{self.port}/metrics") as response:
            return await response.text()

    async def counters(self, platform: str = "chatwoot") -> dict[str, float]:
        """``cs_webhook_requests_total`` of ``platform`` by outcome."""
        text = await self.metrics()
        return {m[1]: float(m[2]) for m in re.finditer(
            rf'^cs_webhook_requests_total\{{outcome="(\w+)",platform="{platform}"\}} (\S+)$',
            text, re.M)}

    async def gauge(self, name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", await self.metrics(), re.M)
        assert match, name
        return float(match[1])

    async def rejected(self, platform: str = "chatwoot") -> dict[str, float]:
        """The outcomes counted so far, other than zero."""
        return {k: v for k, v in (await self.counters(platform)).items() if v}


@asynccontextmanager
async def receiver(platforms: Sequence[Platform] | None = None, *,
                   spool: Callable[[Path], Spool] | None = None,
                   clock: Callable[[], float] = time.time, forward_to: Settings | None = None,
                   **limits: Any) -> AsyncIterator[Receiver]:
    """The real receiver on 127.0.0.1 with ``CS_PULSE_WEBHOOK_*`` overrides (``rate=...``),
    Chatwoot (secret ``SECRET``, shop ``shop-cw``) unless ``platforms`` are given, and its
    spool in a temporary folder (``spool`` builds another kind); with ``forward_to`` (Kafka
    settings), its forwarder runs too."""
    settings = Settings.model_construct(**{f"webhook_{k}": v for k, v in limits.items()})
    with tempfile.TemporaryDirectory(prefix="cs-pulse-spool-") as folder:
        store = spool(Path(folder)) if spool else Spool(folder, 1 << 30, fsync=False)
        forwarder = Forwarder(store, kafka_sender(forward_to)) if forward_to else None
        app = build_receiver_app(platforms or [Chatwoot(SECRET, "shop-cw")], store, settings,
                                 forwarder=forwarder, clock=clock)
        runner = await serve_webhook(app, settings, "127.0.0.1", 0)
        task = asyncio.create_task(forwarder.run()) if forwarder else None
        try:
            yield Receiver(port=runner.addresses[0][1], spool=store)
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await runner.cleanup()
            store.close()


async def raw_exchange(port: int, head: bytes, parts: Sequence[bytes] = (), gap: float = 0.0,
                       wait: float = 10.0) -> tuple[bytes, float]:
    """Send ``head`` then each of ``parts`` ``gap`` seconds apart (stopping if the server
    closes), and read until the server closes (at most ``wait`` seconds). Everything the
    server answered, and the seconds from the head until it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()

    async def trickle() -> None:
        writer.write(head)
        for part in parts:
            await asyncio.sleep(gap)
            if writer.is_closing() or reader.at_eof():
                return
            writer.write(part)
            await writer.drain()

    sender = asyncio.create_task(trickle())
    answer = b""
    try:
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                answer += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    elapsed = time.monotonic() - start
    sender.cancel()
    with suppress(asyncio.CancelledError, ConnectionError):
        await sender
    writer.close()
    return answer, elapsed


def status_of(answer: bytes) -> int | None:
    """The status of the first response in ``answer`` (None: no response at all)."""
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    return int(match[1]) if match else None


def post_head(length: int | None = None, headers: dict[str, str] | None = None,
              path: str = "/chatwoot") -> bytes:
    """A request head for ``POST path``: a Content-Length, or chunked if None."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines.append(f"Content-Length: {length}" if length is not None
                 else "Transfer-Encoding: chunked")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"

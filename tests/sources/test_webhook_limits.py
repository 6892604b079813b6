"""The webhook receiver's limits over real HTTP on 127.0.0.1: each bad input gets its status
code, is counted in ``cs_webhook_requests_total{platform, outcome}``, and spools nothing (the
spool is what goes on to Kafka; ``test_webhook_limits_kafka.py`` shows the topic)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from cs_pulse.sources.webhooks.spool import Spool, SpoolFull
from webhook_harness import chunk, post_head, raw_exchange, receiver, sample, signed, status_of


def padded(size: int) -> bytes:
    """The message sample, padded with JSON whitespace to exactly ``size`` bytes."""
    body = sample()
    return body + b" " * (size - len(body))


async def test_bodies_over_the_limit_get_413_however_their_length_is_told() -> None:
    async with receiver(max_body_bytes=4096, read_timeout=0.5) as rx:
        at_limit, over = padded(4096), padded(4097)
        assert (await rx.post(at_limit, signed(at_limit)))[0] == 200
        status, headers, _ = await rx.post(over, signed(over))
        assert (status, headers["Connection"]) == (413, "close")
        # Announced too large: refused from the headers, before any of the body is read.
        answer, _ = await raw_exchange(rx.port, post_head(10 * 1024 * 1024, signed(over)))
        assert status_of(answer) == 413
        # No length (chunked): counted as it arrives, refused once past the limit.
        parts = [chunk(b" " * 3000)] * 5 + [b"0\r\n\r\n"]
        answer, _ = await raw_exchange(rx.port, post_head(None, signed(over)), parts, gap=0.02)
        assert status_of(answer) == 413
        # A Content-Length shorter than what follows: only that many bytes are the body (here
        # not what was signed: 401); the rest is no request (the HTTP parser's 400, closed).
        body = sample()
        answer, _ = await raw_exchange(rx.port, post_head(100, signed(body)),
                                       [body[:100], b"x" * (2 * 1024 * 1024)], gap=0.2)
        assert status_of(answer) == 401 and b" 400 Bad Request\r\n" in answer
        assert await rx.rejected() == {"accepted": 1, "too_large": 3, "forged": 1}
        assert len(rx.sent) == 1   # the body at the limit only


async def test_unauthenticated_requests_pay_from_the_clients_bucket_signed_ones_never() -> None:
    body = sample()
    async with receiver(rate=0.5, rate_burst=3) as rx:
        assert [(await rx.post(b"{}"))[0] for _ in range(3)] == [401] * 3   # unsigned: 3 tokens
        status, headers, _ = await rx.post(b"{}")
        assert (status, headers["Retry-After"]) == (429, "2")              # 1 token at 0.5/s
        # X-Forwarded-For is not believed from an untrusted peer: still the same client.
        forged = signed(body) | {"X-Chatwoot-Signature": "sha256=" + "0" * 64,
                                 "X-Forwarded-For": "198.51.100.7"}
        assert (await rx.post(body, forged))[0] == 429
        # The same address's signed deliveries are never throttled (a platform sends all of
        # its deliveries from one address).
        assert [(await rx.post(body, signed(body, delivery=f"d{i}")))[0]
                for i in range(10)] == [200] * 10
        assert await rx.rejected() == {"unsigned": 3, "rate_limited": 2, "accepted": 1,
                                       "duplicate": 9}
        assert len(rx.sent) == 1   # one body: the other nine were the same message
    async with receiver(rate=0.5, rate_burst=1, trusted_proxies=["127.0.0.0/8"]) as rx:
        via = {"X-Forwarded-For": "198.51.100.7, 127.0.0.1"}   # the proxy on loopback
        assert (await rx.post(b"{}", via))[0] == 401
        assert (await rx.post(b"{}", via))[0] == 429
        other = {"X-Forwarded-For": "198.51.100.8"}           # another client, same proxy
        assert (await rx.post(b"{}", other))[0] == 401
        assert await rx.rejected() == {"unsigned": 2, "rate_limited": 1}


async def test_slow_clients_are_cut_off_without_holding_up_the_others() -> None:
    body = sample()
    async with receiver(read_timeout=0.5) as rx:
        started = time.monotonic()
        slow = [
            # Headers, then a body trickled one byte every 0.1 s (3 s in all).
            raw_exchange(rx.port, post_head(len(body), signed(body)),
                         [body[i:i + 1] for i in range(30)], gap=0.1),
            # A Content-Length that promises more than ever comes.
            raw_exchange(rx.port, post_head(len(body), signed(body)), [body[:10]]),
            # A chunked body that never ends.
            raw_exchange(rx.port, post_head(None, signed(body)), [chunk(body[:10])]),
            # Headers trickled: never a complete request (closed, no response).
            raw_exchange(rx.port, b"POST /chatwoot HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                         [b"X-Slow: 1\r\n"] * 30, gap=0.1),
        ]
        tasks = [asyncio.create_task(s) for s in slow]
        await asyncio.sleep(0.1)
        fast_start = time.monotonic()
        assert (await rx.post(body, signed(body)))[0] == 200   # meanwhile, served at once
        fast = time.monotonic() - fast_start
        answers = await asyncio.gather(*tasks)
        assert [status_of(a) for a, _ in answers] == [408, 408, 408, None]
        assert all(b"Connection: close" in a for a, _ in answers[:3])
        closed_after = [round(t, 1) for _, t in answers]
        assert all(0.4 <= t < 1.5 for t in closed_after), closed_after   # not 3 s
        assert fast < 0.4 and time.monotonic() - started < 2.5
        assert await rx.rejected() == {"accepted": 1, "timeout": 3}
        assert len(rx.sent) == 1


async def test_requests_in_flight_are_bounded() -> None:
    body = sample()
    async with receiver(max_in_flight=2, read_timeout=1.0) as rx:
        stalled = [asyncio.create_task(raw_exchange(rx.port, post_head(len(body), signed(body))))
                   for _ in range(2)]
        await asyncio.sleep(0.3)   # both are in the handler, waiting for their bodies
        status, headers, _ = await rx.post(body, signed(body))
        assert (status, headers["Retry-After"]) == (503, "1")
        assert [status_of(a) for a, _ in await asyncio.gather(*stalled)] == [408, 408]
        assert (await rx.post(body, signed(body)))[0] == 200   # room again
        assert await rx.rejected() == {"overloaded": 1, "timeout": 2, "accepted": 1}
        assert len(rx.sent) == 1


async def test_a_delivery_is_taken_once_and_its_repeats_answered_200_duplicate() -> None:
    body = sample()
    async with receiver() as rx:
        now = time.time()
        original = signed(body, timestamp=now, delivery="d-1")
        status, _, text = await rx.post(body, original)
        assert (status, text) == (200, '{"accepted": 1}')
        repeats = {
            "the same request again": original,
            "the sender's retry, signed anew": signed(body, timestamp=now + 1, delivery="d-1"),
            "a replay under another delivery id": original | {"X-Chatwoot-Delivery": "d-2"},
            "a replay without the delivery id": {k: v for k, v in original.items()
                                                 if k != "X-Chatwoot-Delivery"},
        }
        for what, headers in repeats.items():
            status, _, text = await rx.post(body, headers)
            assert (status, text) == (200, '{"duplicate": true}'), what
        assert await rx.rejected() == {"accepted": 1, "duplicate": 4}
        assert len(rx.sent) == 1


class GatedSpool(Spool):
    """A spool whose first append fails (a disk error) and whose next ones wait for a gate."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, 1 << 20, fsync=False)
        self.gate, self.calls = asyncio.Event(), 0

    async def append(self, payload: bytes, received_ms: int) -> None:
        self.calls += 1
        if self.calls == 1:
            raise OSError("No space left on device")
        await self.gate.wait()
        await super().append(payload, received_ms)


async def test_a_delivery_not_stored_can_be_retried_and_one_in_progress_is_409() -> None:
    body = sample()
    async with receiver(spool=GatedSpool) as rx:
        spool = rx.spool
        assert isinstance(spool, GatedSpool)
        headers = signed(body, delivery="d-9")
        status, failed_headers, _ = await rx.post(body, headers)
        assert (status, failed_headers["Retry-After"]) == (503, "5")   # the sender may retry
        retry = asyncio.create_task(rx.post(body, headers))             # now taken, in flight
        await asyncio.sleep(0.2)
        status, conflict, _ = await rx.post(body, headers)
        assert (status, conflict["Retry-After"]) == (409, "1")
        spool.gate.set()
        assert (await retry)[0] == 200
        assert (await rx.post(body, headers))[:3:2] == (200, '{"duplicate": true}')
        assert await rx.rejected() == {"failed": 1, "in_flight": 1, "accepted": 1,
                                       "duplicate": 1}
        assert spool.calls == 2 and len(rx.sent) == 1


async def test_a_full_spool_answers_503_and_counts_it() -> None:
    body = sample()

    def tiny(folder: Path) -> Spool:
        return Spool(folder, 400, fsync=False)   # room for one delivery (255 bytes)

    async with receiver(spool=tiny) as rx:
        now = time.time()
        statuses = [(await rx.post(body, signed(body, now + i, f"d{i}")))[0] for i in range(3)]
        assert statuses == [200, 503, 503]
        assert await rx.gauge("cs_webhook_spool_deliveries") == 1
        assert await rx.gauge("cs_webhook_spool_max_bytes") == 400
        assert await rx.rejected() == {"accepted": 1, "spool_full": 2}
        # A refused delivery is not remembered: once the spool has room, its retry is taken.
        rx.spool.commit(rx.spool.read())
        assert (await rx.post(body, signed(body, now + 1, "d1")))[0] == 200
        with pytest.raises(SpoolFull):
            await rx.spool.append(b"x" * 400, 0)


async def test_an_authentic_body_that_is_not_the_platforms_is_400_and_kept_as_a_dead_letter(
        ) -> None:
    async with receiver() as rx:
        for body in (b"[1, 2]", b'"text"', b"null", b"3.5", b"{not json",
                     b'{"event": "message_created", "message_type": "incoming",'
                     b' "conversation": 7}'):
            status, _, text = await rx.post(body, signed(body))
            assert status == 400, (body, text)
            assert "malformed" in text
        assert await rx.rejected() == {"malformed": 6}
        assert rx.sent == [] and len(rx.dead_letters) == 6
        assert rx.dead_letters[0] == b"[1, 2]"


async def test_deliveries_are_forgotten_with_their_freshness() -> None:
    body = sample()
    async with receiver(freshness_seconds=1.0) as rx:
        stamp = math.ceil(time.time())   # whole seconds: fresh for 1 s from now on
        headers = signed(body, timestamp=stamp, delivery="d-5")
        assert (await rx.post(body, headers))[0] == 200
        assert (await rx.post(body, headers))[0] == 200   # duplicate
        gauge = await rx.gauge("cs_webhook_remembered_deliveries")
        assert gauge == 2.0                               # its signature and its id
        await asyncio.sleep(stamp + 1.5 - time.time())
        assert (await rx.post(body, headers))[0] == 401   # stale now: no memory needed
        assert await rx.gauge("cs_webhook_remembered_deliveries") == 0.0
        assert await rx.rejected() == {"accepted": 1, "duplicate": 1, "stale": 1}
        assert len(rx.sent) == 1

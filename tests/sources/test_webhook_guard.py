"""The webhook's limits as plain logic, on an injected clock: token buckets (rate, burst,
bounded table), the replay memory (seen, pending, expiry at the freshness window, bounded) and
the client address behind trusted proxies."""

from __future__ import annotations

import pytest

from cs_pulse.settings import ConfigError, Settings, load_settings
from cs_pulse.sources.webhooks.guard import Proxies, ReplayMemory, TokenBuckets


def test_a_bucket_allows_its_burst_then_the_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3, capacity=10)
    assert [buckets.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 100.0) == pytest.approx(0.5)   # one token in 1/rate seconds
    assert buckets.take("b", 100.0) == 0.0                  # other clients are not affected
    assert buckets.take("a", 100.25) == pytest.approx(0.25)  # half a token by now: wait
    assert buckets.take("a", 100.5) == 0.0                  # refusals cost nothing
    assert buckets.take("a", 100.5) > 0
    assert [buckets.take("a", 200.0) for _ in range(3)] == [0.0] * 3   # refilled to burst
    assert buckets.take("a", 200.0) > 0


def test_full_buckets_are_dropped_and_the_table_is_capped() -> None:
    buckets = TokenBuckets(rate=1.0, burst=2, capacity=100)
    for i in range(100):
        buckets.take(f"10.0.{i // 250}.{i % 250}", now=float(i) / 100)
    assert len(buckets) == 100 and buckets.evicted == 0
    # 2 s later every one of them has refilled: the next request finds only itself.
    buckets.take("192.0.2.1", now=3.0)
    assert len(buckets) == 1
    # Many sources at once: the table never holds more than its capacity.
    for i in range(100_000):
        buckets.take(f"s{i}", now=5.0)
        assert len(buckets) <= 100
    assert buckets.evicted == 100_000 - 100
    # A client that is still limited stays limited while it keeps being seen.
    small = TokenBuckets(rate=0.1, burst=1, capacity=3)
    assert small.take("x", 0.0) == 0.0
    for t in range(1, 6):
        small.take(f"other{t}", float(t))
        assert small.take("x", float(t)) > 0   # recently used: never the one dropped


def test_replay_memory_seen_pending_released_and_expired() -> None:
    memory = ReplayMemory(capacity=100)
    first = ReplayMemory.keys("signature:sha256=aa", "delivery:delivery-1")
    assert len(first) == 2 and len(ReplayMemory.keys("signature:sha256=aa", "")) == 1
    assert memory.claim(first, now=0.0) == "new"
    assert memory.claim(first, now=0.1) == "pending"        # the original is still in flight
    memory.release(first)                                   # it failed: a retry may go on
    assert memory.claim(first, now=0.2) == "new"
    memory.commit(first, until=300.0, now=0.3)
    assert memory.claim(first, now=1.0) == "seen"
    # The same delivery re-signed (a retry) or the same signature re-labelled (a replay).
    assert memory.claim(ReplayMemory.keys("signature:sha256=bb", "delivery:delivery-1"),
                        now=2.0) == "seen"
    assert memory.claim(ReplayMemory.keys("signature:sha256=aa", "delivery:forged-id"),
                        now=2.0) == "seen"
    # A delivery id never collides with a signature of the same text (the caller's names).
    assert memory.claim(ReplayMemory.keys("signature:delivery-1"), now=2.0) == "new"
    assert len(memory) == 2
    assert memory.claim(first, now=300.0) == "new"           # expired with its freshness
    assert len(memory) == 0


def test_replay_memory_is_bounded_by_the_window_and_its_capacity() -> None:
    memory = ReplayMemory(capacity=10_000)
    for i in range(50_000):   # 100 deliveries per second, each fresh for 5 s
        now = i / 100
        keys = ReplayMemory.keys(f"sig{i}", f"id{i}")
        assert memory.claim(keys, now) == "new"
        memory.commit(keys, until=now + 5.0, now=now)
        assert len(memory) <= 2 * 501   # 5 s of deliveries, two keys each
    assert memory.evicted == 0
    tight = ReplayMemory(capacity=10)
    for i in range(100):
        keys = ReplayMemory.keys(f"sig{i}")
        tight.claim(keys, 0.0)
        tight.commit(keys, until=1000.0 + i, now=0.0)
    assert len(tight) == 10 and tight.evicted == 90
    assert tight.claim(ReplayMemory.keys("sig99"), 1.0) == "seen"   # the newest are kept
    assert tight.claim(ReplayMemory.keys("sig0"), 1.0) == "new"


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    none = Proxies.parse([])
    assert none.client("203.0.113.9", "198.51.100.1") == "203.0.113.9"
    proxies = Proxies.parse(["10.0.0.0/8", "::1"])
    assert proxies.client("203.0.113.9", "198.51.100.1") == "203.0.113.9"   # not a proxy
    assert proxies.client("10.1.2.3", "198.51.100.1") == "198.51.100.1"
    # The client wrote the left-most hops; the right-most one not a proxy is the client.
    assert proxies.client("10.1.2.3", "1.1.1.1, 198.51.100.1, 10.9.9.9") == "198.51.100.1"
    assert proxies.client("::1", "10.0.0.1, 10.0.0.2") == "10.0.0.1"      # all proxies
    assert proxies.client("10.1.2.3", None) == "10.1.2.3"
    assert proxies.client(None, None) == "unknown"


def test_webhook_settings_defaults_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FRESHNESS_SECONDS", "MAX_BODY_BYTES", "RATE", "RATE_BURST", "RATE_CLIENTS",
                 "READ_TIMEOUT", "MAX_IN_FLIGHT", "REPLAY_CAPACITY", "TRUSTED_PROXIES"):
        monkeypatch.delenv(f"CS_PULSE_WEBHOOK_{name}", raising=False)
    s = Settings()
    assert (s.webhook_freshness_seconds, s.webhook_max_body_bytes, s.webhook_rate,
            s.webhook_rate_burst, s.webhook_rate_clients, s.webhook_read_timeout,
            s.webhook_max_in_flight, s.webhook_replay_capacity, s.webhook_trusted_proxies) == (
        300.0, 1024 * 1024, 50.0, 200, 10_000, 10.0, 64, 100_000, [])
    monkeypatch.setenv("CS_PULSE_WEBHOOK_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16")
    assert Settings().webhook_trusted_proxies == ["10.0.0.1/32", "192.168.0.0/16"]
    monkeypatch.setenv("CS_PULSE_WEBHOOK_TRUSTED_PROXIES", "10.0.0.1,proxy.local")
    with pytest.raises(ConfigError, match=r"^CS_PULSE_WEBHOOK_TRUSTED_PROXIES: not an IP"):
        load_settings()
    monkeypatch.delenv("CS_PULSE_WEBHOOK_TRUSTED_PROXIES")
    monkeypatch.setenv("CS_PULSE_WEBHOOK_RATE", "0")
    with pytest.raises(ConfigError, match=r"^CS_PULSE_WEBHOOK_RATE: Input should be greater"):
        load_settings()

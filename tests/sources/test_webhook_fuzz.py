"""Bad input on every route, generated: the platforms' own bodies with any field replaced by any
JSON value map to events the worker accepts or are refused as malformed (nothing else
escapes an adapter), and over HTTP any signed JSON value or byte string gets a 2xx or a 4xx,
never a 5xx, with the receiver still taking deliveries afterwards."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs_pulse.ingest.decode import Decoder, Rejected
from cs_pulse.sources.webhooks import chatwoot, intercom, zendesk
from cs_pulse.sources.webhooks.platform import Delivery, Malformed, Platform
from factory import T0
from shapes import chatwoot as cw
from shapes import intercom as ic
from shapes import zendesk as zd
from shapes.stories import chatwoot_story, intercom_story, zendesk_story
from webhook_harness import receiver

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
    | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=12)
CHATWOOT = chatwoot.Chatwoot(b"cw", "shop-cw")
INTERCOM = intercom.Intercom(b"ic", "shop-ic")
ZENDESK = zendesk.Zendesk(b"zd", "", frozenset({"900"}))
BODIES: list[tuple[Platform, dict[str, Any]]] = (
    [(CHATWOOT, b) for _, b in chatwoot_story(T0)]
    + [(INTERCOM, b) for b in intercom_story(T0)]
    + [(ZENDESK, b) for update in zendesk_story(T0) for b in update])
DECODER = Decoder(now=lambda: 4.0e9)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document (keys of objects, indexes of lists)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def replaced(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(document))   # Zendesk's sequence ids are wider than 64 bits
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = new
    return copy


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_field_of_a_real_body_replaced_by_any_json_maps_or_is_malformed(
        data: st.DataObject) -> None:
    platform, body = data.draw(st.sampled_from(BODIES))
    path = data.draw(st.sampled_from(list(paths(body))))
    mutated = replaced(body, path, data.draw(JSON))
    if not isinstance(mutated, dict):
        return   # the receiver refuses a body that is not an object before any adapter
    try:
        mapped = platform.map(mutated, Delivery({}, b"", int(T0 * 1000)))
    except Malformed:
        return
    for event in mapped.events:
        from cs_pulse.ingest.phrases import PhraseMatcher

        decoded = DECODER.decode(orjson.dumps(PhraseMatcher([]).redact(event)))
        assert not isinstance(decoded, Rejected), (path, event, decoded)


@pytest.fixture(scope="module")
def live() -> Iterator[int]:
    """The receiver (Chatwoot and Intercom, URL token on) on a thread of its own."""
    port: list[int] = []
    stop = threading.Event()

    async def serve() -> None:
        platforms = [chatwoot.Chatwoot(b"cw", "shop-cw", url_token="tok"),
                     intercom.Intercom(b"ic", "shop-ic"), ZENDESK]
        async with receiver(platforms) as rx:
            port.append(rx.port)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not port and time.monotonic() < deadline:
        time.sleep(0.02)
    yield port[0]
    stop.set()
    thread.join(10)


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def signed_for(path: str, body: bytes) -> dict[str, str]:
    if path == "/intercom":
        return {"X-Hub-Signature": intercom.sign(b"ic", body)}
    if path == "/zendesk":
        stamp = zd.whole(time.time())
        return {"x-zendesk-webhook-signature-timestamp": stamp,
                "x-zendesk-webhook-signature": zendesk.sign(b"zd", stamp, body)}
    if path == "/chatwoot":
        ts = str(int(time.time()))
        return {"X-Chatwoot-Timestamp": ts, "X-Chatwoot-Signature": chatwoot.sign(b"cw", ts, body)}
    return {}


BODIES_AS_SENT = JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=300)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/chatwoot", "/intercom", "/zendesk", "/chatwoot/tok"]),
       body=BODIES_AS_SENT,
       sign=st.booleans())
def test_any_signed_json_or_bytes_gets_no_5xx(live: int, path: str, body: bytes,
                                              sign: bool) -> None:
    status = post(live, path, body, signed_for(path, body) if sign else {})
    assert status < 500, (path, body, status)


def test_the_receiver_still_takes_deliveries_after_the_fuzzing(live: int) -> None:
    c = cw.Conversation(990, created=time.time())
    body = orjson.dumps(c.incoming(1, time.time(), "still there?"))
    assert post(live, "/chatwoot", body, signed_for("/chatwoot", body)) == 200
    conv = ic.Conversation("991", created=time.time())
    body = orjson.dumps(conv.user_created())
    assert post(live, "/intercom", body, signed_for("/intercom", body)) == 200
    ticket = zd.Ticket("992", created=time.time())
    body = zd.dumps(ticket.update(time.time(), "1", ("created", None))[0])
    assert post(live, "/zendesk", body, signed_for("/zendesk", body)) == 200

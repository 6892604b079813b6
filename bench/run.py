"""Benchmark against a real local broker (not a test): ``python -m bench.run [--events N]``.

Measures, in one run on one machine:
  * raw aiokafka consume + orjson decode of the events topic (the ceiling),
  * a Faust agent that only counts the same records (Faust's own per-record floor),
  * a comparable quix-streams job on the same records (``bench.quix_job``: state per
    conversation, a repartition by queue, 10 s windows), the peer comparison,
  * full pipeline throughput of 1 and 2 worker processes (decode, validate, conversation
    stage, repartition through Kafka, windows, changelog writes), and the ratio to the raw loop,
  * end-to-end latency: event produced -> visible on the worker's /metrics,
  * memory per open conversation in the engine's state at 10k and 100k open conversations.
Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
import zlib
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import generate_latest

from bench.quix_job import INSTALL_HINT, quix_rate
from cs_pulse import topics
from cs_pulse.devtools.children import spawn, stopped_on_signals
from cs_pulse.devtools.embedded_kafka import KafkaBroker, free_port
from cs_pulse.kafka_client import KafkaTarget, aiokafka_kwargs, child_env
from cs_pulse.metrics.collector import engine_registry
from cs_pulse.settings import Settings
from cs_pulse.sources.produce import EventProducer, event_key, send_batches
from cs_pulse.sources.simulate import SimConfig, generate
from cs_pulse.worker.app import tune_gc
from cs_pulse.worker.engine import Engine, Output, Record, as_records

PARTITIONS = 8


def simulated(n: int, seed: int = 1) -> list[dict[str, object]]:
    """The last ``n`` events of one simulated day of busy shops (~50k events per shop-day)."""
    shops = max(4, -(-n // 40_000))
    cfg = SimConfig(seed=seed, start=time.time() - 86400, duration=86400, shops=shops,
                    agents_per_shop=60, tz="UTC")
    events = list(generate(cfg))[-n:]
    if len(events) < n:
        raise ValueError(f"only {len(events)} simulated events, {n} asked for")
    return events


async def create_topic(kafka: KafkaTarget, name: str) -> None:
    await topics.create_topic(kafka, name, PARTITIONS)


Rows = dict[int, list[tuple[bytes | None, bytes | None]]]   # (key, value) per partition


def encoded(events: list[dict[str, object]]) -> Rows:
    """(key, value) records per partition, keyed and partitioned as ``EventProducer`` does
    (aiokafka's default murmur2 partitioner)."""
    partitioner = DefaultPartitioner()
    partitions = list(range(PARTITIONS))
    out: Rows = {p: [] for p in partitions}
    for e in events:
        key = event_key(e)
        out[partitioner(key, partitions, partitions)].append((key, orjson.dumps(e)))
    return out


async def produce(kafka: KafkaTarget, topic: str, records: Rows) -> None:
    """Pre-encoded records through aiokafka's batch API: the producer takes as little CPU as
    possible from the workers measured on the same machine."""
    producer = AIOKafkaProducer(**aiokafka_kwargs(kafka), acks="all",
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        await send_batches(producer, topic, records)
    finally:
        await producer.stop()


async def raw_consume(kafka: KafkaTarget, topic: str, n: int) -> float:
    """Events/s of a bare aiokafka consumer that decodes every value with orjson."""
    consumer = AIOKafkaConsumer(topic, **aiokafka_kwargs(kafka), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        seen, start = 0, time.perf_counter()
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for msgs in batch.values():
                for m in msgs:
                    orjson.loads(m.value)
                seen += len(msgs)
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()


def faust_floor(kafka: KafkaTarget, topic: str, n: int, tmp: Path) -> float:
    """Events/s of a Faust agent that does nothing but count (``bench.faust_floor``)."""
    out = tmp / "floor.txt"
    env = dict(os.environ, **child_env(kafka),
               CS_PULSE_APP_ID=f"floor-{uuid.uuid4().hex[:6]}", CS_PULSE_EVENTS_TOPIC=topic,
               CS_PULSE_DATA_DIR=str(tmp / "floor"), FLOOR_EVENTS=str(n), FLOOR_OUT=str(out))
    subprocess.run([sys.executable, "-m", "bench.faust_floor"], env=env, timeout=600,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return float(out.read_text())


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def metric_sum(text: str, name: str, must: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in "{ ") and must in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class Worker:
    def __init__(self, kafka: KafkaTarget, app_id: str, topic: str, tmp: Path,
                 variant: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = dict(os.environ, **(variant or {}), **child_env(kafka), CS_PULSE_APP_ID=app_id,
                   CS_PULSE_EVENTS_TOPIC=topic, CS_PULSE_DLQ_TOPIC=f"{topic}.dlq",
                   CS_PULSE_FACTS_TOPIC=f"{app_id}.facts",
                   CS_PULSE_CUSTOMERS_TOPIC=f"{app_id}.customers",
                   CS_PULSE_PARTITIONS=str(PARTITIONS), CS_PULSE_METRICS_HOST="127.0.0.1",
                   CS_PULSE_METRICS_PORT=str(self.port), CS_PULSE_DATA_DIR=str(tmp / app_id))
        self.log = open(tmp / f"{app_id}-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = spawn([sys.executable, "-m", "cs_pulse.cli", "worker"],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def metric(self, name: str) -> float:
        """Sum of a metric on this worker's /metrics (0 while it is not serving)."""
        try:
            return metric_sum(scrape(self.port), name)
        except OSError:
            return 0.0

    def ready(self) -> bool:
        """/ready: every stage owns partitions here and recovery is over."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def processed(self) -> float:
        return self.metric("cs_events_processed_total")

    def lag(self) -> float:
        try:
            return metric_sum(scrape(self.port), "cs_consumer_lag_messages")
        except OSError:
            return float("inf")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def pipeline_rate(kafka: KafkaTarget, records: Rows, workers: int, tmp: Path,
                  expected_conversations: float, timeout: float = 900,
                  variant: dict[str, str] | None = None) -> float:
    """Events/s through both stages. The workers start on an empty topic; once they own all
    its partitions the events are produced, and the clock runs until every worker's
    stage 2 has folded them all in (the exported conversation count equals an in-process
    recomputation) and no worker has event or fact lag left. Group joins are not timed; the
    producer, running alongside, is."""
    topic = f"pipe-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topic(kafka, topic))
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    procs = [Worker(kafka, app_id, topic, tmp, variant) for _ in range(workers)]
    conversations = 0.0
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owned = [[w.metric(f"cs_owned_{stage}_partitions") for w in procs]
                     for stage in ("event", "customer", "fact")]
            if all(sum(o) == PARTITIONS for o in owned) and all(w.ready() for w in procs):
                break
            time.sleep(0.5)
        start = time.perf_counter()
        asyncio.run(produce(kafka, topic, records))
        total = sum(map(len, records.values()))
        while time.monotonic() < deadline:
            # Every record read and folded downstream; what the grace period still holds at
            # the very end takes effect once the partitions idle (checked below, not timed).
            if sum(w.processed() for w in procs) >= total and all(w.lag() == 0 for w in procs):
                elapsed = time.perf_counter() - start
                while time.monotonic() < deadline:
                    conversations = sum(w.metric("cs_conversations_total") for w in procs)
                    if conversations >= expected_conversations:
                        break
                    time.sleep(0.5)
                print(f"{workers} worker(s): rewinds "
                      f"{sum(w.metric('cs_input_rewinds_total') for w in procs):.0f}, "
                      f"replayed records "
                      f"{sum(w.metric('cs_input_replayed_records_total') for w in procs):.0f}",
                      file=sys.stderr)
                return sum(map(len, records.values())) / elapsed
            time.sleep(0.5)
        raise TimeoutError(f"{workers} worker(s): {conversations} of {expected_conversations} "
                           f"conversations after {timeout}s")
    finally:
        for w in procs:
            w.stop()


def latency(kafka: KafkaTarget, tmp: Path, probes: int = 100, counted: int = 10
            ) -> tuple[float, float, float]:
    """Produce one event at a time; time until the worker's /metrics shows it received (p50,
    p99), then, for ``counted`` probes, until it counts in the KPIs (median): held for the
    grace period, then released when the partition idles."""
    topic = f"lat-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topic(kafka, topic))
    worker = Worker(kafka, f"bench-{uuid.uuid4().hex[:6]}", topic, tmp)
    received: list[float] = []
    in_kpis: list[float] = []

    async def probe(producer: EventProducer, i: int, metric: str, target: float) -> float:
        now = time.time()
        event = {"schema_version": 1, "event_id": f"probe-{i}", "type": "conversation.started",
                 "ts": round(now * 1000), "shop_id": "probe", "conversation_id": f"probe-{i}",
                 "channel": "chat", "queue": "bench"}
        start = time.perf_counter()
        await (await producer.send(event))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and worker.metric(metric) < target:
            await asyncio.sleep(0.002)
        return time.perf_counter() - start

    async def run() -> None:
        async with EventProducer(kafka, topic) as producer:
            for i in range(probes + 5):
                took = await probe(producer, i, "cs_events_processed_total", i + 1)
                if i >= 5:      # the first probes include startup and group join
                    received.append(took)
            base = probes + 5
            for j in range(counted):
                await asyncio.sleep(1.0)
                in_kpis.append(await probe(producer, base + j, "cs_conversations_total",
                                           base + j + 1))

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                scrape(worker.port)
                break
            except OSError:
                time.sleep(0.2)
        asyncio.run(run())
    finally:
        worker.stop()
    qs = statistics.quantiles(received, n=100)
    return qs[49], qs[98], statistics.median(in_kpis)


def event_records(events: list[dict[str, object]]) -> list[Record]:
    """The events as the engine's input records, numbered per partition as a broker would."""
    offsets = [0] * PARTITIONS
    records: list[Record] = []
    for e in events:
        key = event_key(e)
        p = zlib.crc32(key) % PARTITIONS   # any stable spread will do here
        records.append((p, offsets[p], key, orjson.dumps(e)))
        offsets[p] += 1
    return records


def engine_rate(events: list[dict[str, object]], batch: int = 2000) -> tuple[float, Engine]:
    """Events/s of the pure engine in-process (all three stages, state taken for flushing every
    ten batches, every partition released at the end): the ceiling of a worker without Kafka or
    Faust. Also returns the engine, a recomputation to check the workers against."""
    records = event_records(events)
    engine = Engine(Settings(partitions=PARTITIONS))
    customer_offsets: dict[int, int] = {}
    fact_offsets: dict[int, int] = {}

    def route(out: Output) -> None:
        customers = engine.on_customers(as_records(out.customers, customer_offsets))
        engine.on_facts(as_records(out.facts + customers.facts, fact_offsets))

    thresholds = gc.get_threshold()
    tune_gc()   # as a worker runs it
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        route(engine.on_events(records[i:i + batch]))
        if (i // batch) % 10 == 9:
            engine.take_changes()
    route(engine.release_idle(idle_seconds=-1))
    engine.take_changes()
    rate = len(records) / (time.perf_counter() - start)
    gc.set_threshold(*thresholds)   # the rest of the bench process runs as it did
    gc.unfreeze()
    return rate, engine


def conversations_counted(engine: Engine) -> float:
    text = generate_latest(engine_registry(engine, Settings())).decode()
    return metric_sum(text, "cs_conversations_total")


def memory_per_open_conversation(n: int) -> float:
    """Bytes of engine state (conversation stage + windows) per open conversation."""
    now = time.time() * 1000
    records = []
    for i in range(n):
        cid = f"conv-{i}"
        base = {"schema_version": 1, "shop_id": f"shop-{i % 4}", "conversation_id": cid,
                "channel": "chat", "queue": "presale"}
        records += [
            (0, 2 * i, None, orjson.dumps({**base, "event_id": f"{cid}-s", "type":
                                           "conversation.started", "ts": round(now)})),
            (0, 2 * i + 1, None, orjson.dumps({**base, "event_id": f"{cid}-m",
                                               "type": "message.sent", "sender": "customer",
                                               "chars": 20, "ts": round(now) + 1000})),
        ]
    gc.collect()
    tracemalloc.start()
    engine = Engine(Settings())
    out = engine.on_events(records)
    out = engine.release_idle(idle_seconds=-1)   # every event applied, nothing held
    engine.on_facts(as_records(out.facts))
    engine.take_changes()   # flushed, as a worker does every second: what stays is the state
    del out
    gc.collect()
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return used / n


def pure_python_tree(tmp: Path) -> str:
    """A copy of the package without its compiled modules: the pure-Python build."""
    import shutil

    import cs_pulse

    src = Path(cs_pulse.__file__).parent
    shutil.copytree(src, tmp / "pure" / "cs_pulse",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return str(tmp / "pure")


def levers(kafka: KafkaTarget, records: Rows, tmp: Path, expected: float,
           baseline: Path | None, rounds: int) -> dict[str, list[float]]:
    """1-worker pipeline events/s of each lever's variant, alternated ``rounds`` times so
    drift hits every variant alike: as shipped (compiled core, uvloop), without uvloop,
    without the compiled core, and another checkout's code (``--baseline``)."""
    variants = {"shipped (compiled, uvloop, GC tuned)": {},
                "compiled, uvloop, default GC": {"CS_PULSE_GC_TUNING": "false"},
                "compiled, asyncio loop": {"CS_PULSE_EVENT_LOOP": "asyncio"},
                "pure Python, uvloop": {"PYTHONPATH": pure_python_tree(tmp)},
                "pure Python, asyncio loop": {"PYTHONPATH": str(tmp / "pure"),
                                              "CS_PULSE_EVENT_LOOP": "asyncio"}}
    if baseline is not None:
        variants[f"baseline {baseline}"] = {"PYTHONPATH": str(baseline)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, env in variants.items():
            rates[name].append(pipeline_rate(kafka, records, 1, tmp, expected,
                                             variant=env))
            print(f"{name}: {rates[name][-1]:,.0f} events/s", file=sys.stderr)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--levers", type=int, default=0, metavar="ROUNDS",
                        help="also time 1 worker per lever variant, alternated ROUNDS times")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="with --levers: another version's code on PYTHONPATH (a "
                             "checkout's service/, or its wheel unpacked: README Performance)")
    parser.add_argument("--secure", action="store_true",
                        help="every client over the broker's SASL_SSL listener (TLS and "
                             "SCRAM-SHA-512) instead of plaintext")
    args = parser.parse_args()
    n = args.events
    events = simulated(n)
    # The pure engine has no broker to wait for: three runs, the median (this VM's run-to-run
    # spread is about 10 %).
    runs = [engine_rate(events) for _ in range(3)]
    pure = statistics.median(rate for rate, _ in runs)
    recomputed = runs[-1][1]
    del runs
    expected = conversations_counted(recomputed)
    del recomputed
    with tempfile.TemporaryDirectory() as tmpdir, KafkaBroker(secure=args.secure) as broker:
        tmp = Path(tmpdir)
        kafka: KafkaTarget = (broker.client_settings("SASL_SSL") if args.secure
                              else broker.bootstrap)
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        asyncio.run(create_topic(kafka, topic))
        records = encoded(events)
        asyncio.run(produce(kafka, topic, records))
        raw = asyncio.run(raw_consume(kafka, topic, n))
        floor = faust_floor(kafka, topic, n, tmp)
        quix = quix_rate(kafka, topic, n, tmp)
        one = pipeline_rate(kafka, records, 1, tmp, expected)
        two = pipeline_rate(kafka, records, 2, tmp, expected)
        p50, p99, kpi = latency(kafka, tmp, args.probes)
        lever_rates = (levers(kafka, records, tmp, expected, args.baseline,
                              args.levers) if args.levers else {})
    mem10k = memory_per_open_conversation(10_000)
    mem100k = memory_per_open_conversation(100_000)
    print(f"\n{n} simulated events, {PARTITIONS} partitions, {os.cpu_count()} CPUs"
          + (", every client over SASL_SSL (SCRAM-SHA-512)" if args.secure else "") + "\n")
    print("| measure | value |\n|---|---|")
    print(f"| raw aiokafka consume + orjson decode | {raw:,.0f} events/s |")
    print(f"| Faust agent that only counts | {floor:,.0f} events/s ({floor / raw:.3f} x raw) |")
    print(f"| pure engine in-process, no Kafka (median of 3 runs) | {pure:,.0f} events/s "
          f"({pure / floor:.2f} x Faust floor) |")
    print("| quix-streams job (state, repartition, 10 s windows) | "
          + (f"{quix:,.0f} events/s |" if quix is not None
             else f"not installed ({INSTALL_HINT}) |"))
    print(f"| full pipeline, 1 worker process | {one:,.0f} events/s ({one / raw:.3f} x raw, "
          f"{one / floor:.2f} x Faust floor"
          + (f", {one / quix:.2f} x quix-streams" if quix is not None else "") + ") |")
    print(f"| full pipeline, 2 worker processes | {two:,.0f} events/s ({two / one:.2f} x 1 "
          "worker) |")
    print(f"| end-to-end latency produced -> received on /metrics, p50 / p99 | "
          f"{p50 * 1000:.0f} ms / {p99 * 1000:.0f} ms |")
    print(f"| produced -> counted in the KPIs (grace period, then idle release), median | "
          f"{kpi:.2f} s |")
    print(f"| memory per open conversation, 10k open | {mem10k:,.0f} bytes |")
    print(f"| memory per open conversation, 100k open | {mem100k:,.0f} bytes |")
    if lever_rates:
        print("\n| 1 worker, variant | events/s per round | median | x Faust floor |")
        print("|---|---|---|---|")
        for name, rates in lever_rates.items():
            med = statistics.median(rates)
            print(f"| {name} | {', '.join(f'{r:,.0f}' for r in rates)} | {med:,.0f} | "
                  f"{med / floor:.2f} |")


if __name__ == "__main__":
    with stopped_on_signals():   # SIGTERM, SIGHUP: stop the children as ^C does
        main()

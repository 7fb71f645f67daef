"""Bus benchmark (issue 7): durable publish throughput, publish→deliver latency, consume throughput, disk limit.

Usage::

    python benchmarks/bench_bus.py [--backends memory,sqlite,nats] [--events 4000] [--nats-url nats://127.0.0.1:4222]
                                   [--dir .pilotage/bench]

For each backend it prints (1 KiB events):

- publish, 1 publisher awaiting each durable publish (events/s);
- publish, 16 concurrent publishers each awaiting its publishes (events/s; group commit on sqlite);
- publish_many in batches of 1,000 (events/s);
- publish→deliver latency, p50 and p99 (ms): from the ``publish`` call to the start of the handler of an
  in-process subscriber, one event at a time (so it includes the durable write);
- consume throughput with 1, 4 and 16 members of one group (events/s, handler does nothing, explicit acks).

It also measures the physical limit of the disk under ``--dir``: a bare loop of 1 KiB ``write`` + ``os.fsync``
(fsyncs/s), and prints each issue-7 target as measured / target:
1 publisher ≥ 90% of that fsync rate; 16 publishers ≥ 20,000 events/s; batched ≥ 50,000 events/s;
p99 publish→deliver ≤ 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pilotage.bus.base import Bus
from pilotage.bus.memory import MemoryBus
from pilotage.bus.sqlite import SQLiteBus
from pilotage.events import CloudEvent, new_event

PAD = "x" * 860  # makes the CloudEvents JSON of one event ≈ 1 KiB


def event(i: int) -> CloudEvent:
    return new_event("bench.step", {"i": i, "pad": PAD}, source="/bench", subject=f"s{i % 64}", runid="bench")


def fsync_rate(folder: Path, seconds: float = 2.0) -> float:
    """Bare append-and-fsync loop: 1 KiB per write, fsync after each (fsyncs/s)."""
    path = folder / "fsync.bin"
    block = os.urandom(1024)
    count = 0
    with open(path, "ab") as fh:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())
            count += 1
        elapsed = time.perf_counter() - start
    path.unlink()
    return count / elapsed


async def one_publisher(bus: Bus, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await bus.publish(event(i))
    return n / (time.perf_counter() - start)


async def many_publishers(bus: Bus, n: int, publishers: int = 16) -> float:
    per = n // publishers

    async def run(p: int) -> None:
        for i in range(per):
            await bus.publish(event(p * per + i))

    start = time.perf_counter()
    await asyncio.gather(*(run(p) for p in range(publishers)))
    return per * publishers / (time.perf_counter() - start)


async def batched(bus: Bus, n: int, size: int = 1000) -> float:
    events = [event(i) for i in range(n)]
    start = time.perf_counter()
    for k in range(0, n, size):
        await bus.publish_many(events[k : k + size])
    return n / (time.perf_counter() - start)


async def latency(bus: Bus, n: int) -> tuple[float, float]:
    arrived = asyncio.Event()
    stamps: list[float] = []

    async def handler(e: CloudEvent) -> None:
        stamps.append(time.perf_counter())
        arrived.set()

    sub = await bus.subscribe("bench.lat", handler, group=f"lat-{uuid.uuid4().hex[:6]}", start_at_end_if_new=True)
    await asyncio.sleep(0.2)
    samples: list[float] = []
    for i in range(n):
        arrived.clear()
        start = time.perf_counter()
        await bus.publish(new_event("bench.lat", {"i": i, "pad": PAD}, source="/bench"))
        await asyncio.wait_for(arrived.wait(), 30)
        samples.append((stamps[-1] - start) * 1000)
    await sub.stop()
    cuts = statistics.quantiles(samples, n=100)
    return statistics.median(samples), cuts[98]


async def consume(bus: Bus, n: int, members: int) -> float:
    group = f"consume-{members}-{uuid.uuid4().hex[:6]}"
    first = await bus.last_offset() + 1
    await bus.publish_many([new_event("bench.work", {"i": i, "pad": PAD}, source="/bench") for i in range(n)])
    await bus.seek(group, first)
    done = asyncio.Event()
    count = 0

    async def handler(e: CloudEvent) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    start = time.perf_counter()
    subs = [
        await bus.subscribe("bench.work", handler, group=group, consumer=f"m{k}", batch=100) for k in range(members)
    ]
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - start
    for sub in subs:
        await sub.stop()
    return n / elapsed


async def bench(make: Callable[[], Bus], n: int, fsync: float) -> dict[str, float]:
    out: dict[str, float] = {}
    async with make() as bus:
        out["pub1"] = await one_publisher(bus, max(50, min(n, int(fsync * 3)) if fsync else n))
        out["pub16"] = await many_publishers(bus, n)
        out["batch"] = await batched(bus, n * 5)
        out["p50"], out["p99"] = await latency(bus, 500)
        for members in (1, 4, 16):
            out[f"consume{members}"] = await consume(bus, n, members)
        if hasattr(bus, "delete_stream"):
            await bus.delete_stream()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,sqlite,nats")
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--nats-url", default=os.environ.get("PILOTAGE_NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--dir", type=Path, default=Path(".pilotage/bench"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    disk = fsync_rate(args.dir)
    print(f"disk under {args.dir}: bare 1 KiB append+fsync {disk:,.0f} fsyncs/s; {os.cpu_count()} CPUs")

    makers: dict[str, Callable[[], Bus]] = {
        "memory": MemoryBus,
        "sqlite": lambda: SQLiteBus(f"sqlite:///{args.dir}/bench-{uuid.uuid4().hex[:6]}.db"),
    }
    if "nats" in args.backends:
        from pilotage.bus.nats import NatsBus

        makers["nats"] = lambda: NatsBus(f"{args.nats_url}/BENCH{uuid.uuid4().hex[:6]}")
    rows: dict[str, dict[str, float]] = {}
    for name in args.backends.split(","):
        print(f"running {name} …", flush=True)
        rows[name] = asyncio.run(bench(makers[name], args.events, disk if name == "sqlite" else 0.0))
    shutil.rmtree(args.dir, ignore_errors=True)

    print()
    print(
        "| backend | 1 publisher ev/s | 16 publishers ev/s | publish_many ev/s | p50 ms | p99 ms "
        "| consume 1 ev/s | consume 4 ev/s | consume 16 ev/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['pub1']:,.0f} | {r['pub16']:,.0f} | {r['batch']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
            f"| {r['consume1']:,.0f} | {r['consume4']:,.0f} | {r['consume16']:,.0f} |"
        )
    print()
    print("targets (measured / target; ≥ 1.00 meets it):")
    print("| backend | 1 publisher ≥ 90% fsync rate | 16 publishers ≥ 20,000/s | batched ≥ 50,000/s | p99 ≤ 2 ms |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['pub1'] / (0.9 * disk):.2f} | {r['pub16'] / 20_000:.2f} | {r['batch'] / 50_000:.2f} "
            f"| {2.0 / r['p99']:.2f} |"
        )


if __name__ == "__main__":
    main()

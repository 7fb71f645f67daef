"""Benchmark of contract-net coordination (issue 8). A command that prints figures, not a test.

    python benchmarks/bench_coordination.py [--backends memory,sqlite,nats] [--sizes 10,100,1000] [--rounds 3]

Prints, per backend and number of bidders N:
- the time of one contract-net round, announce (call for proposals) → award (the decision), median of --rounds,
  with hierarchical grouping (N worker agents in ceil(N/100) groups, each group leader a host that aggregates its
  members' bids into one proposal) and flat (N hosts of one worker each: 3N consumers in this one process). Each
  flat configuration runs in a child process with a time limit (--flat-timeout, default 240 s for start-up,
  rounds and shutdown); one that does not finish prints ``timeout``;
- messages (events) per round, grouped and flat: call + proposals/refusals + accept + reject;
- control-plane memory (RSS) with 1,000 idle worker agents: flat on memory://, grouped on sqlite:///.

Targets (issue 8): a 1,000-bidder round ≤ 1 s on memory and sqlite, ≤ 2 s on nats; 1,000 idle agents ≤ 1 GiB.
Ratios to the targets are printed (< 1 meets the target). Manager, hosts and bus share one process and the
machine's cores with whatever else runs: say so when quoting the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pilotage.bus.base import Bus
from pilotage.coordination import Capability, ContractNetManager, ContractNetOptions, WorkerHost
from pilotage.events import EventType

TARGET_S = {"memory": 1.0, "sqlite": 1.0, "nats": 2.0}
TARGET_RSS_BYTES = 1024**3
NATS_URL = "nats://127.0.0.1:4222"
GROUP_SIZE = 100


async def _echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}


CAPABILITY = Capability("echo", _echo, lambda _p: 1.0)


def make_bus(backend: str, folder: Path) -> Bus:
    if backend == "memory":
        from pilotage.bus.memory import MemoryBus

        return MemoryBus()
    if backend == "sqlite":
        from pilotage.bus.sqlite import SQLiteBus

        return SQLiteBus(f"sqlite:///{folder}/bench-{uuid.uuid4().hex[:8]}.db")
    from pilotage.bus.nats import NatsBus

    return NatsBus(f"{NATS_URL}/B{uuid.uuid4().hex[:12]}")


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def one_config(backend: str, n: int, grouped: bool, rounds: int, folder: Path) -> dict[str, Any]:
    """Return {"round_s": median, "messages": per round} for N bidders on ``backend``."""
    bus = make_bus(backend, folder)
    groups = math.ceil(n / GROUP_SIZE) if grouped else n
    sizes = [n // groups + (1 if i < n % groups else 0) for i in range(groups)]
    heartbeat_s = 1.0 if grouped else 5.0  # 1,000 flat hosts beating every second would be 1,000 events/s
    options = ContractNetOptions(bid_window_s=30.0, stale_s=heartbeat_s * 3, heartbeat_s=heartbeat_s, poll_s=0.01)
    hosts = [WorkerHost(bus, f"h{i:04d}", {"echo": CAPABILITY}, members=size, heartbeat_s=heartbeat_s)
             for i, size in enumerate(sizes)]  # fmt: skip
    times: list[float] = []
    messages = 0
    try:
        await bus.open()
        for host in hosts:
            await host.start()
        manager = ContractNetManager(bus, options=options)
        for r in range(rounds):
            task_id = f"bench-{uuid.uuid4().hex[:8]}-{r}"
            first = await bus.last_offset() + 1
            outcome = await manager.run(task_id, "echo", {}, exec_timeout_s=60)
            assert outcome.state.value == "done", outcome.reason
            records = await bus.read(first, 100_000)
            cfp = next(rec.event for rec in records if rec.event.type.startswith(EventType.CNET_CFP))
            award = next(rec.event for rec in records if rec.event.type == EventType.DECISION)
            times.append(_stamp(award.time) - _stamp(cfp.time))
            counted = (EventType.CNET_PROPOSE, EventType.CNET_REFUSE, EventType.CNET_ACCEPT, EventType.CNET_REJECT)
            messages = sum(
                1
                for rec in records
                if rec.event.type.startswith(EventType.CNET_CFP) or rec.event.type in counted
                if isinstance(rec.event.data, dict) and rec.event.data.get("task_id") == task_id
            )
    finally:
        for host in hosts:
            await host.stop(announce=False)
        if backend == "nats":
            await bus.delete_stream()  # type: ignore[attr-defined]
        await bus.close()
    return {"round_s": statistics.median(times), "messages": messages, "groups": groups}


def _flat_in_child(backend: str, n: int, rounds: int, folder: Path, timeout_s: float) -> dict[str, Any] | None:
    """Run the flat configuration in a child process; return its figures, or None when it exceeds ``timeout_s``."""
    argv = [sys.executable, __file__, "--one", f"{backend},{n},{rounds}", "--folder", str(folder)]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


async def idle_probe(layout: str, folder: Path) -> None:
    """Start 1,000 idle worker agents (``flat`` on memory, ``grouped`` on sqlite), print RSS bytes."""
    bus = make_bus("memory" if layout == "flat" else "sqlite", folder)
    await bus.open()
    count = 1000 if layout == "flat" else 10
    members = 1 if layout == "flat" else 100
    hosts = [WorkerHost(bus, f"idle{i:04d}", {"echo": CAPABILITY}, members=members, heartbeat_s=5.0)
             for i in range(count)]  # fmt: skip
    for host in hosts:
        await host.start()
    await asyncio.sleep(3.0)
    rss = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    print(rss)
    for host in hosts:
        await host.stop(announce=False)
    await bus.close()


def _rss_of(layout: str, folder: Path) -> int:
    argv = [sys.executable, __file__, "--probe", layout, "--folder", str(folder)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="memory,sqlite,nats")
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flat-timeout", type=float, default=240.0, help="seconds per flat configuration")
    parser.add_argument("--probe", choices=["flat", "grouped"], help=argparse.SUPPRESS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        asyncio.run(idle_probe(args.probe, Path(args.folder)))
        return
    if args.one:
        backend, n, rounds = args.one.split(",")
        print(json.dumps(asyncio.run(one_config(backend, int(n), False, int(rounds), Path(args.folder)))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-coord-") as tmp:
        folder = Path(tmp)
        print(f"{'backend':<8} {'bidders':>7} {'groups':>6} {'grouped s':>10} {'flat s':>8} {'msgs grouped':>13} "
              f"{'msgs flat':>10} {'grouped/target':>15} {'flat/target':>12}")  # fmt: skip
        for backend in args.backends.split(","):
            for n in sizes:
                grouped = asyncio.run(one_config(backend, n, True, args.rounds, folder))
                flat = _flat_in_child(backend, n, args.rounds, folder, args.flat_timeout)
                ratio = grouped["round_s"] / TARGET_S[backend]
                flat_s = f"{flat['round_s']:.3f}" if flat else "timeout"
                flat_m = str(flat["messages"]) if flat else f"{n + 3} (calc)"
                flat_r = f"{flat['round_s'] / TARGET_S[backend]:.3f}" if flat else "-"
                print(f"{backend:<8} {n:>7} {grouped['groups']:>6} {grouped['round_s']:>10.3f} {flat_s:>8} "
                      f"{grouped['messages']:>13} {flat_m:>10} {ratio:>15.3f} {flat_r:>12}", flush=True)  # fmt: skip
        for layout in ("flat", "grouped"):
            rss = _rss_of(layout, folder)
            where = "1,000 hosts on memory://" if layout == "flat" else "10 groups x 100 on sqlite:///"
            ratio = rss / TARGET_RSS_BYTES
            print(f"idle 1,000 agents ({where}): RSS {rss / 2**20:.1f} MiB, ratio to 1 GiB {ratio:.3f}")


if __name__ == "__main__":
    main()

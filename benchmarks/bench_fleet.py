"""Fleet benchmark (issue #19, item 5): many services' deliveries at once under one `pilotage serve`.

    python benchmarks/bench_fleet.py [--services 10] [--stream-minutes 5] [--speedup 10] [--json]

Setup: N services (the small hand-written notes service of the tests under N names, each its own git repository,
started with Pilotage's interpreter: real processes, no venv install) are put under management in a fresh state
folder and served by a background control plane (``pilotage up``: N production processes). Embedded defaults,
except the stable ports (``--port-base``) and whatever ``--set KEY=VALUE`` gives.

1. **Burst**: one commit per service, and all N deliveries submitted at once (``pilotage deliver S REV --detach``,
   8 submitting processes at a time); measured until every one ended.
2. **Stream** (``--stream-minutes`` > 0): deliveries arrive as a Poisson process at the seed's case-study rate,
   30 per service per day, time-scaled by ``--speedup`` (simulated seconds per real second): N × 30 / 86,400 ×
   speedup deliveries per real second (N = 10, speedup 10: 125 an hour), for ``--stream-minutes`` of arrivals;
   each is a new commit of a service picked uniformly. Measured until every one ended (or ``--timeout-minutes``).

Figures (from the event log): deliveries per hour (ended ÷ wall time of the phase), p50/p95 seconds from submit
(``flow.queued``) to outcome (``flow.completed``/``flow.failed``), p50 of the wait in the queue (to ``flow.started``),
outcomes; **lost** = submitted and not ended by
the end of the phase, **duplicated** = a run started or closed more than once, or promoted twice. From /proc:
control-plane CPU seconds and peak memory (VmHWM of ``pilotage serve``), the same of its data-plane child (route
proxies and synthetic traffic, ``data_plane: process``), and the CPU of its other descendants (the services'
versions, their tests and load tests: the services' own work), sampled every second. The load average
of the machine is printed with the figures (``/proc/loadavg``): other work on the machine slows everything.

Targets (issue 19): 100 services × 1 delivery completed within 1 hour; 0 lost, 0 duplicated; control plane ≤ 1 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_deliver import cli, percentile  # noqa: E402 - one runner of the CLI, one percentile
from tests.fixtures.fleet import commit_files  # noqa: E402
from tests.fixtures.notes_repo import make_notes_repo  # noqa: E402

from pilotage.bus.sqlite import SQLiteBus  # noqa: E402
from pilotage.events import CloudEvent, EventType  # noqa: E402

#: The seed's case-study rate: deliveries per service per day.
RATE_PER_SERVICE_DAY = 30.0
TICKS = os.sysconf("SC_CLK_TCK")


class ProcSampler:
    """Samples the CPU of a process and of its descendants from /proc every ``every_s`` seconds.

    A descendant's CPU counts up to its last sample (a process that lives less than ``every_s`` may be missed: the
    services' figure is a lower bound).
    """

    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        self.pid, self.every_s = pid, every_s
        self.children_cpu: dict[int, float] = {}
        self.own_cpu = 0.0
        self.peak_rss_kib = 0
        #: Pids of the control plane's data-plane children (``pilotage.runtime.dataplane_process``) and their peak.
        self.data_plane_pids: set[int] = set()
        self.data_plane_peak_kib = 0
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _stat(pid: int) -> tuple[int, float] | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS  # ppid, utime + stime

    def _descendants(self) -> dict[int, float]:
        parents: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := self._stat(int(entry))) is not None:
                parents[int(entry)] = stat
        found, frontier = {}, [self.pid]
        while frontier:
            parent = frontier.pop()
            for pid, (ppid, cpu) in parents.items():
                if ppid == parent and pid not in found:
                    found[pid] = cpu
                    frontier.append(pid)
        return found

    @staticmethod
    def _peak_kib(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _classify(self, pid: int) -> None:
        """Remember ``pid`` as a data-plane child when its command line says so (read once per pid)."""
        if pid in self._seen:
            return
        self._seen.add(pid)
        with contextlib.suppress(OSError):
            if b"pilotage.runtime.dataplane_process" in Path(f"/proc/{pid}/cmdline").read_bytes():
                self.data_plane_pids.add(pid)

    def sample(self) -> None:
        own = self._stat(self.pid)
        if own is not None:
            self.own_cpu = own[1]
        self.peak_rss_kib = max(self.peak_rss_kib, self._peak_kib(self.pid))
        for pid, cpu in self._descendants().items():
            self._classify(pid)
            self.children_cpu[pid] = max(cpu, self.children_cpu.get(pid, 0.0))
        for pid in self.data_plane_pids:
            self.data_plane_peak_kib = max(self.data_plane_peak_kib, self._peak_kib(pid))

    @property
    def data_plane_cpu(self) -> float:
        """CPU seconds of the data-plane children (route proxies and synthetic traffic)."""
        return sum(self.children_cpu.get(pid, 0.0) for pid in self.data_plane_pids)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def start(self) -> ProcSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def read_flows(work: Path) -> list[CloudEvent]:
    """Every ``flow.*`` and ``deploy.promoted`` event of the log."""

    async def read() -> list[CloudEvent]:
        async with SQLiteBus(f"sqlite:///{work}/.pilotage/events.db") as bus:
            flows = [r.event for r in await bus.read(1, 1_000_000, pattern="dev.pilotage.flow.*")]
            return flows + [r.event for r in await bus.read(1, 1_000_000, pattern=EventType.DEPLOY_PROMOTED)]

    return asyncio.run(read())


def _ts(event: CloudEvent) -> float:
    return datetime.fromisoformat(event.time).timestamp()


def tally(events: list[CloudEvent], run_ids: set[str]) -> dict[str, Any]:
    """Submit→outcome seconds, outcomes, lost and duplicated runs among ``run_ids`` (see the module docstring)."""
    by_run: dict[str, dict[str, list[CloudEvent]]] = {r: {} for r in run_ids}
    for event in events:
        if event.runid in by_run:
            by_run[event.runid].setdefault(event.type.rsplit(".", 1)[-1], []).append(event)
    seconds, waits, outcomes, lost, duplicated = [], [], {}, [], []
    for run_id, kinds in by_run.items():
        closed = kinds.get("completed", []) + kinds.get("failed", [])
        if len(kinds.get("started", [])) > 1 or len(closed) > 1 or len(kinds.get("promoted", [])) > 1:
            duplicated.append(run_id)
        if not closed or not kinds.get("queued"):
            lost.append(run_id)
            continue
        seconds.append(_ts(closed[0]) - _ts(kinds["queued"][0]))
        waits.append(_ts(kinds["started"][0]) - _ts(kinds["queued"][0]) if kinds.get("started") else 0.0)
        outcome = str(closed[0].data.get("outcome") or "none")
        outcome = str(closed[0].data.get("status")) if outcome == "none" else outcome  # failed: no outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"seconds": seconds, "waits": waits, "outcomes": outcomes, "lost": lost, "duplicated": duplicated}


class Fleet:
    """N notes services under one control plane in a scratch folder."""

    def __init__(self, n: int, port_base: int, settings: list[str]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
        self.work = self.root / "ops"
        self.work.mkdir()
        lines = [f"fleet_port_base = {port_base}", *settings]
        (self.work / "pilotage.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.names = [f"svc-{i:03d}" for i in range(n)]
        self.repos = {name: make_notes_repo(self.root / name, name=name) for name in self.names}
        self.changes = 0
        self._lock = threading.Lock()
        self.pid = 0

    def up(self) -> None:
        for args in (("service", "add", *map(str, self.repos.values())), ("up", "--json")):
            done = cli(self.work, *args, timeout_s=1800)
            if done.returncode != 0:
                raise SystemExit(f"bench_fleet: pilotage {args[0]} failed: {done.stderr.strip()[-500:]}")
        lock = json.loads((self.work / ".pilotage" / "serve.lock").read_text(encoding="utf-8"))
        self.pid = int(lock["pid"])

    def commit(self, name: str) -> str:
        with self._lock:
            self.changes += 1
            n = self.changes
        return commit_files(self.repos[name], {"CHANGES.md": f"change {n}\n"}, f"change {n}")

    def submit(self, name: str) -> str:
        rev = self.commit(name)
        done = cli(self.work, "deliver", name, rev, "--detach", "--json", timeout_s=120)
        if done.returncode != 0:
            raise SystemExit(f"bench_fleet: deliver {name} failed: {done.stderr.strip()[-500:]}")
        return str(json.loads(done.stdout)["run_id"])

    def down(self) -> None:
        cli(self.work, "down")


def wait_ended(fleet: Fleet, run_ids: set[str], timeout_s: float) -> float:
    """Wait until every run in ``run_ids`` closed (or ``timeout_s``); return the time it happened."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        closed = {
            e.runid for e in read_flows(fleet.work) if e.type in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED)
        }
        remaining = run_ids - closed
        print(f"  {len(run_ids) - len(remaining)}/{len(run_ids)} ended", file=sys.stderr)
        if not remaining:
            return time.time()
        time.sleep(10)
    return time.time()


def phase(fleet: Fleet, name: str, run_ids: set[str], t0: float, timeout_s: float) -> dict[str, Any]:
    end = wait_ended(fleet, run_ids, timeout_s)
    counted = tally(read_flows(fleet.work), run_ids)
    ended = len(run_ids) - len(counted["lost"])
    wall = end - t0
    return {
        "phase": name,
        "deliveries": len(run_ids),
        "wall_s": round(wall, 1),
        "per_hour": round(ended / wall * 3600, 1) if wall > 0 else 0.0,
        "p50_s": round(statistics.median(counted["seconds"]), 1) if counted["seconds"] else 0.0,
        "p95_s": round(percentile(counted["seconds"], 0.95), 1),
        "queue_p50_s": round(statistics.median(counted["waits"]), 1) if counted["waits"] else 0.0,
        "outcomes": counted["outcomes"],
        "lost": len(counted["lost"]),
        "duplicated": len(counted["duplicated"]),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def burst(fleet: Fleet, timeout_s: float) -> dict[str, Any]:
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=8) as pool:
        run_ids = set(pool.map(fleet.submit, fleet.names))
    print(f"burst: {len(run_ids)} submitted in {time.time() - t0:.1f} s", file=sys.stderr)
    return phase(fleet, "burst", run_ids, t0, timeout_s)


def stream(fleet: Fleet, minutes: float, speedup: float, timeout_s: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    rate_s = len(fleet.names) * RATE_PER_SERVICE_DAY / 86_400 * speedup  # arrivals per real second
    t0, run_ids, pending = time.time(), set(), []
    at = t0
    with ThreadPoolExecutor(max_workers=4) as pool:
        while True:
            at += rng.expovariate(rate_s)
            if at > t0 + minutes * 60:
                break
            time.sleep(max(0.0, at - time.time()))
            pending.append(pool.submit(fleet.submit, rng.choice(fleet.names)))
        run_ids = {f.result() for f in pending}
    print(f"stream: {len(run_ids)} arrivals at {rate_s * 3600:.0f}/h over {minutes} min", file=sys.stderr)
    return {**phase(fleet, "stream", run_ids, t0, timeout_s), "offered_per_hour": round(rate_s * 3600, 1)}


def bench(args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet(args.services, args.port_base, args.set)
    t_up = time.time()
    fleet.up()
    up_s = time.time() - t_up
    sampler = ProcSampler(fleet.pid).start()
    phases = []
    try:
        phases.append(burst(fleet, args.timeout_minutes * 60))
        if args.stream_minutes > 0:
            phases.append(stream(fleet, args.stream_minutes, args.speedup, args.timeout_minutes * 60, args.seed))
    finally:
        sampler.stop()
        fleet.down()
    services_cpu = sum(sampler.children_cpu.values()) - sampler.data_plane_cpu
    return {
        "services": args.services,
        "up_s": round(up_s, 1),
        "phases": phases,
        "control_plane_cpu_s": round(sampler.own_cpu, 1),
        "services_cpu_s": round(services_cpu, 1),
        "data_plane_cpu_s": round(sampler.data_plane_cpu, 1),
        "data_plane_peak_mib": round(sampler.data_plane_peak_kib / 1024, 1),
        "control_plane_share": round(sampler.own_cpu / max(sampler.own_cpu + services_cpu, 1e-9), 3),
        "control_plane_peak_mib": round(sampler.peak_rss_kib / 1024, 1),
        "cores": os.cpu_count(),
        "folder": str(fleet.root),
    }


def table(result: dict[str, Any]) -> str:
    columns = ("services", "phase", "deliveries", "wall s", "per hour", "p50 s", "p95 s", "queue p50 s", "outcomes",
               "lost", "dup.", "load")  # fmt: skip
    head = "| " + " | ".join(columns) + " |"
    rows = [head, "|" + "---|" * 12]
    for p in result["phases"]:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(p["outcomes"].items()))
        offered = f" (offered {p['offered_per_hour']})" if "offered_per_hour" in p else ""
        rows.append(
            f"| {result['services']} | {p['phase']} | {p['deliveries']} | {p['wall_s']} | {p['per_hour']}{offered} | "
            f"{p['p50_s']} | {p['p95_s']} | {p.get('queue_p50_s', '-')} | {outcomes} | {p['lost']} | "
            f"{p['duplicated']} | {' '.join(p['loadavg'])} |"
        )
    rows.append("")
    rows.append(
        f"control plane: {result['control_plane_cpu_s']} CPU s, peak {result['control_plane_peak_mib']} MiB "
        f"(target ≤ 1024); data plane (proxies, synthetic traffic; its own process): {result['data_plane_cpu_s']} "
        f"CPU s, peak {result['data_plane_peak_mib']} MiB; "
        f"services' own work (versions, tests, load tests): {result['services_cpu_s']} CPU s; "
        f"control-plane share of CPU {result['control_plane_share'] * 100:.1f} %; `pilotage up` {result['up_s']} s"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, default=10, help="N services (10, 30, 100)")
    parser.add_argument("--stream-minutes", type=float, default=5.0, help="real minutes of Poisson arrivals (0: none)")
    parser.add_argument("--speedup", type=float, default=10.0, help="simulated seconds per real second")
    parser.add_argument("--timeout-minutes", type=float, default=60.0, help="most minutes a phase waits to end")
    parser.add_argument("--port-base", type=int, default=19000, help="first stable port")
    parser.add_argument("--set", action="append", default=[], help="a pilotage.toml line KEY = VALUE (repeatable)")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = bench(args)
    print(json.dumps(result, indent=1) if args.json else table(result))


if __name__ == "__main__":
    main()

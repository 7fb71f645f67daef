"""Delivery benchmark (issue #17): N deliveries of a trivial change to one example service, as a user runs them.

    python benchmarks/bench_deliver.py [--service catalog|orders|notes] [--n 10] [--json]

Setup: the service's repository is made from ``examples/fleet/<service>`` (``notes``: the small hand-written
service of the tests, started with Pilotage's interpreter), put under management (``pilotage service add``) in a
fresh state folder, and served by a background control plane (``pilotage up``). Each delivery commits a trivial
change (a comment) and runs ``pilotage deliver SERVICE HEAD`` (handed to the control plane, as a user does with
``pilotage up`` running). The first ``pilotage up`` pays the prepare step (a venv install from PyPI); deliveries
that do not change ``requirements.txt`` hit the prepare cache.

Measured per delivery, from the event log: seconds from the command's start to ``deploy.promoted``, and the share
of each stage (event times): prepare (``flow.started`` → ``code.generated``: export and prepare both commits),
policy (→ the merge verdict), tests (→ ``tests.completed``), perf (→ ``perf.measured``), rollout
(→ the last ``deploy.step``: strategy, launch, steps) and watch (→ ``deploy.promoted``: the post-promotion watch).

Target (issue 17): p95 ≤ 60 s on a 2-core machine for the small example service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures import fleet, notes_repo  # noqa: E402

from pilotage.bus.sqlite import SQLiteBus  # noqa: E402
from pilotage.events import CloudEvent, EventType  # noqa: E402

STAGES = ("prepare", "policy", "tests", "perf", "rollout", "watch")


def cli(work: Path, *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``pilotage ARGS`` in ``work`` (no PILOTAGE_* variable of this shell leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
    return subprocess.run(
        [sys.executable, "-m", "pilotage", *args], cwd=work, env=env, capture_output=True, text=True,
        timeout=timeout_s, check=False,
    )  # fmt: skip


def run_events(work: Path, run_id: str) -> list[CloudEvent]:
    async def read() -> list[CloudEvent]:
        async with SQLiteBus(f"sqlite:///{work}/.pilotage/events.db") as bus:
            return [r.event for r in await bus.read(1, 1_000_000, runid=run_id)]

    return asyncio.run(read())


def _at(events: list[CloudEvent], kind: str, last: bool = False, **match: Any) -> float:
    found = [e for e in events if e.type == kind and all(e.data.get(k) == v for k, v in match.items())]
    if not found:
        raise SystemExit(f"bench_deliver: no {kind} {match or ''} in the run")
    return datetime.fromisoformat((found[-1] if last else found[0]).time).timestamp()


def stage_seconds(events: list[CloudEvent]) -> dict[str, float]:
    """Seconds of each stage of one delivery (see the module docstring)."""
    marks = [
        _at(events, EventType.FLOW_STARTED),
        _at(events, EventType.CODE_GENERATED),
        _at(events, EventType.POLICY_EVALUATED, action="merge"),
        _at(events, EventType.TESTS_COMPLETED),
        _at(events, EventType.PERF_MEASURED),
        _at(events, EventType.DEPLOY_STEP, last=True),
        _at(events, EventType.DEPLOY_PROMOTED),
    ]
    return {stage: round(marks[i + 1] - marks[i], 3) for i, stage in enumerate(STAGES)}


def make_repo(service: str, dest: Path) -> Path:
    if service == "notes":
        return notes_repo.make_notes_repo(dest / "notes")
    if service == "orders":
        fleet.ensure_postgres_database("orders")
        fleet.ensure_postgres_database("orders_scratch")
    return fleet.make_service_repo(service, dest)


def change(service: str, repo: Path) -> str:
    return notes_repo.trivial_change(repo) if service == "notes" else fleet.trivial_change(repo)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (the smallest value ≥ q of the sample)."""
    ranked = sorted(values)
    return ranked[max(0, min(len(ranked) - 1, int(-(-q * len(ranked) // 1)) - 1))]


def bench(service: str, n: int, port: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-deliver-"))
    work = root / "ops"
    work.mkdir()
    (work / "pilotage.toml").write_text(f"fleet_port_base = {port}\n", encoding="utf-8")
    repo = make_repo(service, root)
    for args in (("service", "add", str(repo)), ("up",)):
        done = cli(work, *args)
        if done.returncode != 0:
            raise SystemExit(f"bench_deliver: pilotage {' '.join(args)} failed: {done.stderr.strip()}")
    rows: list[dict[str, Any]] = []
    try:
        for i in range(n):
            change(service, repo)
            t0 = time.time()
            done = cli(work, "deliver", service, "HEAD", "--json")
            summary = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
            if summary.get("outcome") != "promoted":
                raise SystemExit(f"bench_deliver: delivery {i + 1} ended {summary.get('outcome')}: {done.stderr}")
            events = run_events(work, summary["run_id"])
            total = _at(events, EventType.DEPLOY_PROMOTED) - t0
            rows.append({"delivery": i + 1, "total_s": round(total, 3), **stage_seconds(events)})
            print(f"delivery {i + 1}/{n}: {total:.1f} s " + " ".join(f"{s} {rows[-1][s]:.1f}" for s in STAGES),
                  file=sys.stderr)  # fmt: skip
    finally:
        cli(work, "down")
    totals = [r["total_s"] for r in rows]
    shares = {s: round(sum(r[s] for r in rows) / sum(totals), 3) for s in STAGES}
    return {
        "service": service,
        "deliveries": n,
        "p50_s": round(statistics.median(totals), 2),
        "p95_s": round(percentile(totals, 0.95), 2),
        "max_s": round(max(totals), 2),
        "share": shares,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=("catalog", "orders", "notes"), default="catalog")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--port", type=int, default=18900, help="stable port of the service")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = bench(args.service, args.n, args.port)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['service']}: {result['deliveries']} deliveries, deliver → promoted p50 {result['p50_s']} s, "
          f"p95 {result['p95_s']} s, max {result['max_s']} s (target p95 ≤ 60 s)")  # fmt: skip
    print("share of the time: " + ", ".join(f"{s} {100 * v:.0f} %" for s, v in result["share"].items()))


if __name__ == "__main__":
    main()

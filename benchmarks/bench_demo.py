"""Wall time of each lifecycle stage of ``pilotage demo``, read from the event timestamps in the log.

Usage: ``python benchmarks/bench_demo.py [--runs N] [--inject-fault] [--json]``

Each run executes ``pilotage demo`` in a fresh temporary folder (embedded defaults), then measures every stage
as the time from the milestone event that ends the previous stage to the milestone that ends this one:

    design     flow.started      → spec.validated
    codegen    spec.validated    → pr.opened
    governance pr.opened         → policy.evaluated (merge)
    testing    policy (merge)    → tests.completed
    perf       tests.completed   → perf.measured
    rollout    perf.measured     → deploy.promoted / deploy.rolled_back  (includes the SLO watch)
    cost       rollout end       → env.scaled_down  (includes the idle wait, 3 s in the demo)
    total      flow.started      → flow.completed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime

from pilotage.bus.sqlite import SQLiteBus
from pilotage.events import CloudEvent

P = "dev.pilotage."


def _t(event: CloudEvent) -> float:
    return datetime.fromisoformat(event.time).timestamp()


def _first(events: list[CloudEvent], type_: str, **match: object) -> CloudEvent:
    for e in events:
        if e.type == P + type_ and all((e.data or {}).get(k) == v for k, v in match.items()):
            return e
    raise SystemExit(f"bench_demo: no {type_} event in the run; the demo did not get that far")


def stage_times(events: list[CloudEvent]) -> dict[str, float]:
    """Return stage name → seconds for one run's events (see the module docstring for the milestones)."""
    started = _first(events, "flow.started")
    validated = _first(events, "spec.validated")
    pr = _first(events, "pr.opened")
    merge = _first(events, "policy.evaluated", action="merge")
    tests = _first(events, "tests.completed")
    perf = _first(events, "perf.measured")
    ends = [e for e in events if e.type in (P + "deploy.promoted", P + "deploy.rolled_back")]
    if not ends:
        raise SystemExit("bench_demo: the rollout did not end")
    scaled = _first(events, "env.scaled_down")
    closed = [e for e in events if e.type in (P + "flow.completed", P + "flow.failed")][-1]
    points = [
        ("design", started, validated),
        ("codegen", validated, pr),
        ("governance", pr, merge),
        ("testing", merge, tests),
        ("perf", tests, perf),
        ("rollout", perf, ends[0]),
        ("cost", ends[0], scaled),
        ("total", started, closed),
    ]
    return {name: _t(b) - _t(a) for name, a, b in points}


def one_run(inject_fault: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pilotage-bench-") as tmp:
        cmd = [sys.executable, "-m", "pilotage", "demo", "--json"] + (["--inject-fault"] if inject_fault else [])
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"bench_demo: pilotage demo failed ({proc.returncode}): {proc.stderr.strip()}")
        run_id = json.loads(proc.stdout)["run_id"]

        async def read() -> list[CloudEvent]:
            async with SQLiteBus(f"sqlite:///{tmp}/.pilotage/events.db") as bus:
                return [r.event for r in await bus.read(1, 100_000) if r.event.runid == run_id]

        return stage_times(asyncio.run(read()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--inject-fault", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs} …", file=sys.stderr, flush=True)
        runs.append(one_run(args.inject_fault))
    table = {stage: [r[stage] for r in runs] for stage in runs[0]}
    if args.json:
        print(json.dumps({"runs": runs}, indent=2))
        return
    print(f"pilotage demo{' --inject-fault' if args.inject_fault else ''}: wall time per stage over {args.runs} run(s)")
    print(f"{'stage':<12}{'median s':>10}{'min s':>10}{'max s':>10}")
    for stage, values in table.items():
        print(f"{stage:<12}{statistics.median(values):>10.2f}{min(values):>10.2f}{max(values):>10.2f}")


if __name__ == "__main__":
    main()

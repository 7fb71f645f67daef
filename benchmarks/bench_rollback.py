"""Rollback benchmark: how fast and how reliably a rollout undoes a bad canary, and how often it undoes a good one.

    python benchmarks/bench_rollback.py [--trials 100] [--aa-trials 100] [--rps 80] [--weight 25] [--error-rate 0.05]

Setup (local runtime, real processes): two copies of ``tests/fixtures/tiny_service`` (baseline and canary, fault
switch enabled) behind the in-process weighted proxy, synthetic GET traffic at ``--rps``. The processes are
started once and reused by every trial (a trial only changes weights and faults; each trial's analysis uses only
the counter increases it observed itself, so reuse does not leak evidence between trials).

* A/B trial: the canary gets ``--weight`` % and a :class:`~pilotage.rollout.engine.Rollout` analyses it; after a
  uniformly random 1–4 s the canary's error-rate fault is switched on (``PUT /__pilotage/faults``). Measured: seconds
  from the fault switch (time the request was sent) to the proxy giving the canary 0 %. Not rolled back within the
  analysis time = missed detection; rolled back before the fault = false rollback.
* A/A trial: the same with no fault for one analysis period (``--aa-seconds``); any rollback is false.

Targets (issue 3): p95 ≤ 10 s, 100 % detection of a 5 % error-rate fault, 0 false rollbacks in 100 A/A trials.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pilotage.observe.prometheus import ScrapeSource
from pilotage.observe.slo import default_slo
from pilotage.rollout.engine import Rollout, RolloutConfig
from pilotage.runtime.base import Instance, Route
from pilotage.runtime.faults import FaultSpec, set_faults
from pilotage.runtime.local import LocalRuntime
from pilotage.runtime.traffic import start_traffic, stop_traffic
from pilotage.settings import Settings

TINY = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tiny_service"


def copy_tiny(dst: Path) -> Path:
    shutil.copytree(TINY, dst, ignore=shutil.ignore_patterns("data.db", "__pycache__", "harness.py", "__init__.py"))
    (dst / "app" / "__init__.py").write_text("", encoding="utf-8")
    return dst


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def one_trial(
    runtime: LocalRuntime, route: Route, base: Instance, canary: Instance, config: RolloutConfig, fault: float | None
) -> tuple[str, float | None]:
    """Run one trial; return (kind, seconds) with kind detected/missed/false_rollback/ok."""
    base_v, canary_v = base.workload.version, canary.workload.version
    source = ScrapeSource()
    rollout = Rollout(runtime, route, base, canary, source, default_slo("tiny"), config, alive=runtime.is_running)
    task = asyncio.create_task(rollout.run())
    fault_at: float | None = None
    try:
        if fault is not None:
            delay = random.uniform(1.0, 4.0)
            done, _ = await asyncio.wait({task}, timeout=delay)
            if not done:
                fault_at = time.time()
                await set_faults(canary.url, FaultSpec(error_rate=fault))
        result = await task
    finally:
        if rollout.standby_task is not None:
            rollout.standby_task.cancel()
        await set_faults(canary.url, FaultSpec())
        await runtime.set_weights(route, {base_v: 100, canary_v: 0})
        await source.aclose()
    if result.outcome == "rolled_back":
        assert result.rolled_back_at is not None
        if fault_at is not None and result.rolled_back_at >= fault_at:
            return "detected", result.rolled_back_at - fault_at
        print(f"  false rollback: {result.reason}", file=sys.stderr)
        return "false_rollback", None
    return ("missed" if fault is not None else "ok"), None


async def main(args: argparse.Namespace) -> int:
    random.seed(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-rollback-"))
    runtime = LocalRuntime(log_dir=work / "logs")
    env = {"PILOTAGE_FAULT_ADMIN": "1", "PILOTAGE_FAULT_ERROR_RATE": "0"}
    try:
        from pilotage.runtime.base import Workload

        base = await runtime.start(
            Workload("tiny", "v1", copy_tiny(work / "v1"), env={**env, "PILOTAGE_DB_PATH": str(work / "v1.db")})
        )
        canary = await runtime.start(
            Workload("tiny", "v2", copy_tiny(work / "v2"), env={**env, "PILOTAGE_DB_PATH": str(work / "v2.db")})
        )
        route = await runtime.route("bench", {"v1": base, "v2": canary}, {"v1": 100, "v2": 0})
        start_traffic("bench", route.url, ["/notes", "/version"], args.rps)
        await asyncio.sleep(1.0)  # warm up both processes
        common = dict(
            steps=(args.weight, 100),
            poll_s=args.poll,
            watch_s=0.0,
            standby_s=3600.0,
            inconclusive_grace_s=args.grace,
            stop_canary_on_rollback=False,
        )
        ab_config = RolloutConfig(pause_s=4.0 + args.detect_within, **common)  # type: ignore[arg-type]
        aa_config = RolloutConfig(pause_s=args.aa_seconds, **common)  # type: ignore[arg-type]
        started = time.monotonic()
        ab: list[tuple[str, float | None]] = []
        for i in range(args.trials):
            ab.append(await one_trial(runtime, route, base, canary, ab_config, args.error_rate))
            if (i + 1) % 10 == 0:
                print(f"  A/B {i + 1}/{args.trials}", file=sys.stderr)
        aa: list[tuple[str, float | None]] = []
        for i in range(args.aa_trials):
            aa.append(await one_trial(runtime, route, base, canary, aa_config, None))
            if (i + 1) % 10 == 0:
                print(f"  A/A {i + 1}/{args.aa_trials}", file=sys.stderr)
        traffic = await stop_traffic("bench")
        elapsed = time.monotonic() - started
    finally:
        await runtime.close()
        shutil.rmtree(work, ignore_errors=True)
    times = [t for kind, t in ab if kind == "detected" and t is not None]
    detected = len(times)
    false_ab = sum(1 for kind, _ in ab if kind == "false_rollback")
    false_aa = sum(1 for kind, _ in aa if kind == "false_rollback")
    p95 = percentile(times, 0.95)
    print("configuration:")
    print(
        f"  local runtime, tiny_service ×2 (processes reused), synthetic traffic {args.rps} rps, canary weight "
        f"{args.weight}%, poll every {args.poll} s, Inconclusive grace {args.grace} s"
    )
    print(
        "  SLO: default (availability 99.9 %, latency 99 % ≤ 500 ms); burn-rate rules 14.4×(5 s & 0.42 s), "
        "6×(30 s & 2.5 s) = SRE Workbook windows × 1/720; judge alpha 0.001, Fisher on error counts, "
        "Mann-Whitney + Brown-Forsythe on latency"
    )
    print(
        f"  A/B: error-rate fault {args.error_rate:.0%} switched on at U(1, 4) s, {args.detect_within} s to detect;"
        f" A/A: {args.aa_seconds} s analysis, no fault; seed {args.seed}; wall time {elapsed:.0f} s; traffic "
        f"{traffic.to_dict() if traffic else '-'}"
    )
    print()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| A/B trials | {args.trials} | |")
    print(f"| detection rate | {detected}/{args.trials} ({detected / max(1, args.trials):.0%}) | 100 % |")
    print(f"| fault → canary at 0 %, p50 | {percentile(times, 0.5):.2f} s | |")
    print(f"| fault → canary at 0 %, p95 | {p95:.2f} s | ≤ 10 s |")
    print(f"| fault → canary at 0 %, max | {max(times) if times else float('nan'):.2f} s | |")
    print(f"| false rollbacks before the fault (A/B) | {false_ab} | 0 |")
    print(f"| A/A trials | {args.aa_trials} | |")
    print(f"| false rollbacks (A/A) | {false_aa} | 0 |")
    met = detected == args.trials and p95 <= 10.0 and false_aa == 0 and false_ab == 0
    print()
    print("targets met" if met else "TARGETS NOT MET (see the table)")
    return 0 if met else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100, help="A/B trials (default 100)")
    parser.add_argument("--aa-trials", type=int, default=100, help="A/A trials (default 100)")
    parser.add_argument("--rps", type=float, default=80.0, help="synthetic requests per second (default 80)")
    parser.add_argument("--weight", type=int, default=25, help="canary weight in percent (default 25)")
    parser.add_argument("--error-rate", type=float, default=0.05, help="injected error rate (default 0.05)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between samples (default 0.5)")
    parser.add_argument("--detect-within", type=float, default=15.0, help="analysis seconds after the fault")
    parser.add_argument(
        "--grace",
        type=float,
        default=Settings().rollout_inconclusive_grace_s,
        help="extra analysis seconds of an Inconclusive step before it rolls back (default: the product setting)",
    )
    parser.add_argument("--aa-seconds", type=float, default=5.0, help="analysis seconds of an A/A trial")
    parser.add_argument("--seed", type=int, default=3)
    sys.exit(asyncio.run(main(parser.parse_args())))

"""Rollback benchmark: how fast and how reliably each rollout strategy undoes a bad release, and how often a good one.

    python benchmarks/bench_rollback.py --strategy canary|blue-green|flag [--trials 20] [--aa-trials 20]
        [--rps 80] [--weight 25] [--error-rate 0.05]

Setup (local runtime, real processes, the product's own code path): a service generated from the demo's OpenAPI
document (the previous version) and its change (``Add discount code support …``, the new operations behind the
release flag), the reliability agent and the rollout agent (:class:`pilotage.agents.rollout.RolloutAgent`, whose
:class:`~pilotage.rollout.controller.RolloutController` is the one component that moves traffic) subscribed to a
SQLite event log. Each trial publishes a ``deploy.requested`` plan — canary steps (``--weight``, 100), blue-green
(preview, switch) or flag (``--weight`` % of targeting keys, 100) — so every trial starts its own two processes,
route and synthetic traffic (``--rps``), exactly as a run does.

* A/B trial: a uniformly random 1–4 s after the first step is taken, the new version's error-rate fault is switched
  on at run time (``PUT /__pilotage/faults``; behind a flag only flag-on requests fail). Measured: seconds from the
  fault to users protected (``deploy.rolled_back`` ``protected_at``: the previous version at 100 %, green never
  switched to, or the flag off). Not rolled back in the analysis time = missed; rolled back before the fault =
  false rollback.
* A/A trial: the same with no fault for ``--aa-seconds`` of analysis; any rollback is false.
* flag only: rollback decision (the rollout agent's ``decision.made``) → flag off *as seen by the service*: a
  prober sends ``GET /discount-codes`` (a flagged operation) every 20 ms with a targeting key inside the release;
  the first 404 is the service seeing the flag off.

Targets (issue 16): per strategy, p95 ≤ 10 s from fault to protection, 100 % detection of a 5 % error-rate fault,
0 false rollbacks in 100 A/A trials; for flags, rollback decision → flag off as seen by the service ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from pilotage.agent import AgentContext, RunSpec
from pilotage.agents.reliability import ReliabilityAgent
from pilotage.agents.rollout import RolloutAgent
from pilotage.bus.query import EventLog
from pilotage.bus.sqlite import SQLiteBus
from pilotage.codegen.generator import generate_service
from pilotage.events import EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.rollout.controller import rollout_controller
from pilotage.runtime.faults import FaultSpec, set_faults
from pilotage.runtime.flags import bucket
from pilotage.runtime.local import LocalRuntime
from pilotage.settings import Settings
from pilotage.spec.diff import diff_specs
from pilotage.spec.evolve import evolve
from pilotage.spec.grammar import parse_request
from pilotage.spec.load import load_document

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "pilotage" / "examples" / "checkout-service" / "openapi.yaml"
REQUEST = "Add discount code support with fields code:string, percent:integer"
STRATEGY = {"canary": "canary", "blue-green": "blue-green", "flag": "feature-flag"}
SOURCE = "/pilotage/benchmarks/rollback"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Bench:
    """One benchmark session: generated versions, the agents on a SQLite log, one trial after another."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.strategy = STRATEGY[args.strategy]
        settings = Settings(
            home=work / "home",
            analysis_window_s=4.0 + args.detect_within,
            rollout_poll_s=args.poll,
            rollout_inconclusive_grace_s=args.grace,
            post_promotion_watch_s=0.5,
            standby_s=3600.0,
            synthetic_traffic_rps=args.rps,
            min_requests_per_step=20,
            service_ready_timeout_s=30.0,
        )
        self.bus = SQLiteBus(f"sqlite:///{work / 'events.db'}")
        self.ctx = AgentContext(
            bus=self.bus,
            graph=SQLiteGraph(f"sqlite:///{work / 'graph.db'}"),
            policy=RegoPolicyEngine(),  # the bundled promote and rollback policies, evaluated for real
            runtime=LocalRuntime(log_dir=work / "logs"),
            settings=settings,
        )
        self.log = EventLog(self.bus)
        self.agents = [ReliabilityAgent(self.ctx), RolloutAgent(self.ctx)]
        base_doc = load_document(EXAMPLE)
        generate_service(base_doc, work / "v1")
        next_doc = evolve(base_doc, parse_request(REQUEST))
        generate_service(next_doc, work / "v2", flagged=diff_specs(base_doc, next_doc).added)  # as the codegen agent

    def plan(self, deployment_id: str) -> dict[str, Any]:
        steps = {"canary": [self.args.weight, 100], "blue-green": [0, 100], "feature-flag": [self.args.weight, 100]}
        env = {"PILOTAGE_FAULT_ADMIN": "1", "PILOTAGE_FAULT_ERROR_RATE": "0"}
        if self.strategy == "feature-flag":
            env["PILOTAGE_FAULT_SCOPE"] = "flag"
        return {
            "deployment_id": deployment_id,
            "service": "checkout",
            "strategy": self.strategy,
            "risk": 0.0,
            "steps": steps[self.strategy],
            "commit": "b" * 40,
            "baseline": {"version": "v1", "path": str(self.work / "v1"), "env": {"PILOTAGE_FAULT_ERROR_RATE": "0"}},
            "canary": {"version": "v2", "path": str(self.work / "v2"), "env": env},
            "traffic_paths": ["/orders"],
            "proxy_port": 0,
            "flag_key": f"checkout.{deployment_id}" if self.strategy == "feature-flag" else "",
        }

    async def trial(self, index: int, fault: float | None, analysis_s: float) -> tuple[str, float | None, float | None]:
        """Run one trial; return (kind, fault → protected s, decision → flag off seen s)."""
        run_id, dep = f"trial-{index}", f"bench-{index}"
        self.ctx.settings = self.ctx.settings.model_copy(update={"analysis_window_s": analysis_s})
        run = RunSpec(
            run_id=run_id, service="checkout", spec_path=str(EXAMPLE), request=REQUEST, workdir=str(self.work)
        )
        await self.bus.publish(new_event(EventType.FLOW_STARTED, run.model_dump(), source=SOURCE, runid=run_id))
        plan = self.plan(dep)
        await self.bus.publish(new_event(EventType.DEPLOY_REQUESTED, plan, source=SOURCE, runid=run_id))
        await self._wait(EventType.DEPLOY_STEP, run_id, 60.0, step=0)
        fault_at, prober = None, None
        if fault is not None:
            await asyncio.sleep(random.uniform(1.0, 4.0))
            canary_url = (await self.log.latest(EventType.DEPLOY_STARTED, run=run_id)).data["canary"]["url"]  # type: ignore[union-attr]
            if self.strategy == "feature-flag":
                prober = asyncio.create_task(self._probe_flag_off(canary_url, plan["flag_key"]))
            fault_at = time.time()
            await set_faults(canary_url, FaultSpec(error_rate=fault))
        judged = await self._wait(EventType.SLO_EVALUATED, run_id, analysis_s + self.args.grace + 30.0, step=0)
        end = judged
        if judged.data["action"] == "rollback":
            end = await self._wait(EventType.DEPLOY_ROLLED_BACK, run_id, 30.0)
        flag_s = await self._flag_seen_s(run_id, prober)
        await rollout_controller(self.ctx).scale_down(dep)
        if end.type == EventType.DEPLOY_ROLLED_BACK:
            protected = float(end.data["protected_at"])
            if fault_at is not None and protected >= fault_at:
                return "detected", protected - fault_at, flag_s
            print(f"  false rollback: {end.data['reason']}", file=sys.stderr)
            return "false_rollback", None, None
        return ("missed" if fault is not None else "ok"), None, None

    async def _probe_flag_off(self, canary_url: str, flag_key: str) -> float:
        """Poll a flagged operation with a targeting key inside the release until it answers 404 (flag off)."""
        key = next(f"probe-{i}" for i in range(10_000) if bucket(flag_key, f"probe-{i}") < self.args.weight)
        async with httpx.AsyncClient(base_url=canary_url, timeout=2.0) as client:
            while True:
                answer = await client.get("/discount-codes", headers={"x-targeting-key": key})
                if answer.status_code == 404:
                    return time.time()
                await asyncio.sleep(0.02)

    async def _flag_seen_s(self, run_id: str, prober: asyncio.Task[float] | None) -> float | None:
        if prober is None:
            return None
        rolled = await self.log.latest(EventType.DEPLOY_ROLLED_BACK, run=run_id)
        if rolled is None:
            prober.cancel()
            return None
        seen = await asyncio.wait_for(prober, timeout=5.0)
        decisions = [e for e in await self.log.all(EventType.DECISION, run=run_id) if e.data["kind"] == "rollout.next"]
        decided = next(_epoch(e.time) for e in decisions if e.data["action"] == "rollback")
        return seen - decided

    async def _wait(self, type_: str, run_id: str, timeout_s: float, **match: Any) -> Any:
        return await self._wait_any((type_,), run_id, timeout_s, **match)

    async def _wait_any(self, types: tuple[str, ...], run_id: str, timeout_s: float, **match: Any) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for type_ in types:
                found = await self.log.latest(type_, run=run_id, **match)
                if found is not None:
                    return found
            failed = await self.log.latest(EventType.AGENT_FAILED, run=run_id)
            if failed is not None:
                raise RuntimeError(f"agent failed: {failed.data['error']}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"no {types} in run {run_id} within {timeout_s} s")


async def main(args: argparse.Namespace) -> int:
    random.seed(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-rollback-"))
    bench = Bench(args, work)
    await bench.bus.open()
    subs = [sub for agent in bench.agents for sub in await agent.start()]
    started = time.monotonic()
    ab: list[tuple[str, float | None, float | None]] = []
    aa: list[tuple[str, float | None, float | None]] = []
    try:
        for i in range(args.trials):
            ab.append(await bench.trial(i, args.error_rate, 4.0 + args.detect_within))
            print(f"  A/B {i + 1}/{args.trials}: {ab[-1][0]} {ab[-1][1] or ''}", file=sys.stderr)
        for i in range(args.aa_trials):
            aa.append(await bench.trial(args.trials + i, None, args.aa_seconds))
            print(f"  A/A {i + 1}/{args.aa_trials}: {aa[-1][0]}", file=sys.stderr)
    finally:
        for sub in subs:
            await sub.stop()
        from pilotage.app import close_rollouts

        await close_rollouts(bench.ctx)
        await bench.ctx.runtime.close()
        await bench.bus.close()
        shutil.rmtree(work, ignore_errors=True)
    report(args, ab, aa, time.monotonic() - started)
    times = [t for kind, t, _ in ab if kind == "detected" and t is not None]
    flag_times = [f for _, _, f in ab if f is not None]
    met = len(times) == args.trials and percentile(times, 0.95) <= 10.0
    met = met and not any(kind == "false_rollback" for kind, _, _ in ab + aa)
    met = met and (args.strategy != "flag" or (bool(flag_times) and max(flag_times) <= 1.0))
    print("\ntargets met" if met else "\nTARGETS NOT MET (see the table)")
    return 0 if met else 1


def report(args: argparse.Namespace, ab: list[Any], aa: list[Any], elapsed_s: float) -> None:
    times = [t for kind, t, _ in ab if kind == "detected" and t is not None]
    flag_times = [f for _, _, f in ab if f is not None]
    false_ab = sum(1 for kind, _, _ in ab if kind == "false_rollback")
    false_aa = sum(1 for kind, _, _ in aa if kind == "false_rollback")
    print("configuration:")
    print(
        f"  strategy {args.strategy}; local runtime, generated checkout service v1 → v2 (2 processes per trial), "
        f"{args.rps} rps synthetic traffic, first step {args.weight if args.strategy != 'blue-green' else 0}% "
        f"({ {'blue-green': 'preview address', 'canary': 'weight'}.get(args.strategy, 'of targeting keys') })"
        f", poll every {args.poll} s, Inconclusive grace {args.grace} s, seed {args.seed}, wall time {elapsed_s:.0f} s"
    )
    print(
        f"  A/B: error-rate fault {args.error_rate:.0%} switched on at U(1, 4) s, {args.detect_within} s to detect;"
        f" A/A: {args.aa_seconds} s analysis, no fault"
    )
    print()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| A/B trials | {args.trials} | |")
    print(f"| detection rate | {len(times)}/{args.trials} ({len(times) / max(1, args.trials):.0%}) | 100 % |")
    print(f"| fault → users protected, p50 | {percentile(times, 0.5):.2f} s | |")
    print(f"| fault → users protected, p95 | {percentile(times, 0.95):.2f} s | ≤ 10 s |")
    print(f"| fault → users protected, max | {max(times) if times else float('nan'):.2f} s | |")
    print(f"| false rollbacks before the fault (A/B) | {false_ab} | 0 |")
    print(f"| A/A trials | {args.aa_trials} | |")
    print(f"| false rollbacks (A/A) | {false_aa} | 0 |")
    if args.strategy == "flag":
        print(f"| rollback decision → flag off seen by the service, p50 | {percentile(flag_times, 0.5):.3f} s | |")
        worst = max(flag_times) if flag_times else float("nan")
        print(f"| rollback decision → flag off seen by the service, max | {worst:.3f} s | ≤ 1 s |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", choices=sorted(STRATEGY), default="canary", help="rollout strategy")
    parser.add_argument("--trials", type=int, default=20, help="A/B trials (default 20; the target is stated for 100)")
    parser.add_argument("--aa-trials", type=int, default=20, help="A/A trials (default 20; target stated for 100)")
    parser.add_argument("--rps", type=float, default=80.0, help="synthetic requests per second (default 80)")
    parser.add_argument("--weight", type=int, default=25, help="first step, percent (default 25)")
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

"""The performance agent: load-test a tested change and advise on what the figures show.

Perceive (on ``tests.completed``): the commit, ``head_dir`` and verdict from the event; ``spec_path`` from the event
(or the run's ``spec.validated``). A ``perf.measured`` for the same commit already in the log means the event was
redelivered: nothing is done again.

Act:

* tests did not pass → no load test; emit ``perf.measured`` ``{skipped: true, reason}`` (the deploy policy denies
  the rollout later, from ``tests.completed``);
* the document has no operation the load test can call (:func:`pilotage.perf.locustfile.load_targets`: secured
  operations count when the run's test principal can meet their security — issue 18 — or the head version's
  ``pilotage.yaml`` gives ``traffic.credentials`` and its variable is set) → the same ``{skipped: true, reason}``,
  naming why (issue 17), instead of a failed run;
* otherwise start the head version on the runtime (``version="perf-<sha12>"``, a fresh SQLite file under
  ``<workdir>/artifacts/perf/<sha12>/``, no fault injection), run Locust against it
  (:func:`pilotage.perf.locust_runner.run_load_test`, ``settings.load_test_users`` users for
  ``settings.load_test_duration_s`` seconds; secured operations with the descriptor's credentials, the header's
  value read from the environment where the test runs), stop it (always), emit ``perf.measured``
  (``docs/events-contract.md``:
  commit, skipped, reason, users, duration_s, endpoints [{method, name, requests, failures, p50_ms, p95_ms,
  p99_ms, rps}], total, error_rate) and, when a rule fires, ``perf.advice``.

Reason (``perf.assessment``, pure, :func:`assess`): rules over each endpoint and the total, each advice carrying
its evidence (the figures and the threshold). Thresholds (class attributes, documented where defined):

* ``errors`` — an endpoint's error rate > :data:`ERROR_RATE_MAX` (0: at the load-test's modest load nothing may
  fail; the canary SLO of ``settings.slo_error_rate`` is for production traffic, not a lab run);
* ``latency`` — p95 > :data:`P95_HIGH_MS` ms;
* ``tail`` — p99 ≥ :data:`TAIL_RATIO` × p50 and p99 > :data:`TAIL_MIN_MS` ms (a long tail: contention, locks,
  cold caches).

Action ``advise`` when any rule fires, else ``accept``; ``skip`` when the tests failed.

Where the load test runs (issue 8): when a worker process offering ``loadtest`` is live (``pilotage worker``), the
test is allocated by contract-net (:func:`pilotage.coordination.allocate.allocate_or_run_locally`; the award is a
``cnet.award`` decision of the coordination agent); with no live worker, or none completing it, it runs here.
``perf.measured`` says which (``executed_by``: ``local`` or ``worker:<id>``; ``allocation``: task id, decisions,
rounds, reason).

The load-test slot (issue 8): the machine runs one load test at a time. Before measuring, the agent holds the
``loadtest-slot`` resource (:class:`pilotage.coordination.slot.SlotArbiter`), bidding as its service's account
``performance/<service>`` for the request ``<run id>/<commit12>``. Each bid is a ``perf.slot_bid`` decision
(rule: ``floor(balance × market_bid_fraction)``, pure, so replay recomputes it); contending runs (``pilotage serve``
handling several, or several control planes on one bus) are ordered by sealed-bid second-price auctions
(``market.auction`` decisions of the coordination agent); a lone run wins its auction at once. ``perf.measured``
carries the grant (``slot``: auction, decision, price, auctions taken part in, seconds waited).

Learn: one ``MetricSample`` node per endpoint and one for the total (key ``<run_id>/<commit>/<endpoint>``, e.g.
``r1/3f2a…/GET /pets``, props = the figures) with ``Commit:<sha> -MEASURED-> MetricSample``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from pilotage.agent import Agent, Reasoning, RunSpec
from pilotage.coordination.allocate import Allocation, allocate_or_run_locally
from pilotage.coordination.contract_net import ContractNetOptions
from pilotage.coordination.slot import LOADTEST_SLOT, SlotGrant, agent_slot, bid_reasoning, slot_bidder
from pilotage.coordination.tasks import load_test_result_from_dict, loadtest_exec_timeout_s, run_load_test_task
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.registry import load_fleet
from pilotage.fleet.workload import provider_addresses, workload_role
from pilotage.perf.locust_runner import LoadTestResult
from pilotage.perf.locustfile import NO_TARGET, load_targets
from pilotage.perf.stats import EndpointStats
from pilotage.report import generated_failures
from pilotage.rollout.traffic_plan import descriptor_traffic
from pilotage.spec.load import load_spec
from pilotage.testing.credentials import PRINCIPAL_ENV

__all__ = ["ERROR_RATE_MAX", "P95_HIGH_MS", "TAIL_MIN_MS", "TAIL_RATIO", "PerformanceAgent", "assess"]

#: Largest tolerated load-test error rate of an endpoint (fraction). Any failed request is worth a look.
ERROR_RATE_MAX = 0.0
#: p95 latency above which an endpoint is "slow", in ms: twice the 100 ms "response" budget of the RAIL
#: performance model (web.dev/rail), leaving room for the network between client and service.
P95_HIGH_MS = 200.0
#: p99 / p50 ratio from which the latency distribution has a long tail.
TAIL_RATIO = 5.0
#: p99 (ms) under which a tail is not worth advice, whatever the ratio (1 ms vs 8 ms is noise).
TAIL_MIN_MS = 100.0

_LATENCY_HINTS = {
    "GET": "paginate the list, add an index on the columns it filters or sorts by, or cache the response",
    "POST": "batch the writes in one transaction, use SQLite WAL mode, and index only what reads need",
}


def assess(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the advice the load-test figures call for (pure, deterministic).

    Args:
        inputs: ``{"endpoints": [{"endpoint", "method", "requests", "failures", "p50_ms", "p95_ms", "p99_ms"}],
            "thresholds": {"error_rate_max", "p95_high_ms", "tail_ratio", "tail_min_ms"}}``; latencies in ms.

    Returns:
        ``[{"rule", "endpoint", "evidence": {...}, "recommendation"}]`` in endpoint order.
    """
    limits = inputs.get("thresholds") or {}
    error_max = float(limits.get("error_rate_max", ERROR_RATE_MAX))
    p95_high = float(limits.get("p95_high_ms", P95_HIGH_MS))
    tail_ratio = float(limits.get("tail_ratio", TAIL_RATIO))
    tail_min = float(limits.get("tail_min_ms", TAIL_MIN_MS))
    advice: list[dict[str, Any]] = []
    for ep in inputs.get("endpoints") or []:
        name, requests, failures = str(ep.get("endpoint")), int(ep.get("requests", 0)), int(ep.get("failures", 0))
        rate = failures / requests if requests else 0.0
        if rate > error_max:
            advice.append(
                {
                    "rule": "errors",
                    "endpoint": name,
                    "evidence": {"failures": failures, "requests": requests, "error_rate": round(rate, 6),
                                 "error_rate_max": error_max},
                    "recommendation": "requests failed under load: read the service log for the failing requests "
                    "and fix them before rollout (they will count against the canary's SLO)",
                }
            )  # fmt: skip
        p50, p95, p99 = ep.get("p50_ms"), ep.get("p95_ms"), ep.get("p99_ms")
        if p95 is not None and float(p95) > p95_high:
            hint = _LATENCY_HINTS.get(str(ep.get("method", "")), "profile the handler under load")
            advice.append(
                {
                    "rule": "latency",
                    "endpoint": name,
                    "evidence": {"p95_ms": p95, "p95_high_ms": p95_high, "requests": requests},
                    "recommendation": f"p95 above {p95_high:g} ms: {hint}",
                }
            )
        if p50 and p99 is not None and float(p99) > tail_min and float(p99) >= tail_ratio * float(p50):
            advice.append(
                {
                    "rule": "tail",
                    "endpoint": name,
                    "evidence": {"p50_ms": p50, "p99_ms": p99, "tail_ratio": tail_ratio, "tail_min_ms": tail_min},
                    "recommendation": "long latency tail: look for lock contention (SQLite writers), blocking calls "
                    "in async handlers, or too few workers",
                }
            )
    return advice


def _credentials(head_dir: str, allowed_envs: list[str]) -> dict[str, str] | None:
    """``{"header", "env"}`` of the head version's ``traffic.credentials`` (``pilotage.yaml``), or None.

    None too when the variable is not in ``allowed_envs`` (the operator's ``traffic_credential_envs``): a delivered
    commit is untrusted and must not have the control plane send it another secret.
    """
    found = descriptor_traffic(head_dir).credentials
    if found is None or found.env not in allowed_envs:
        return None
    return {"header": found.header, "env": found.env}


def _empty_total() -> dict[str, Any]:
    return EndpointStats("", "Aggregated", 0, 0, None, None, None, 0.0).to_dict()


class PerformanceAgent(Agent):
    """Load-tests the head version after passing tests; emits ``perf.measured`` and ``perf.advice``.

    Thresholds are class attributes so a subclass (or a test) can change them; they are recorded in every
    ``perf.assessment`` decision, so a replay recomputes the same advice.
    """

    name = "performance"
    subscribes = (EventType.TESTS_COMPLETED,)

    error_rate_max: float = ERROR_RATE_MAX
    p95_high_ms: float = P95_HIGH_MS
    tail_ratio: float = TAIL_RATIO
    tail_min_ms: float = TAIL_MIN_MS

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """``perf.assessment``: ``skip`` without passing tests, ``advise`` if :func:`assess` fires, else ``accept``.

        ``perf.slot_bid``: action ``bid`` with score ``{"amount"}`` = :func:`~pilotage.coordination.slot.bid_amount`
        of the recorded balance and fraction.
        """
        if kind == "perf.slot_bid":
            return bid_reasoning(inputs, "load-test slot")
        if kind != "perf.assessment":
            return super().reason(kind, inputs)
        if inputs.get("skipped"):
            return Reasoning(
                action="skip",
                rule="no load test unless tests passed",
                score=None,
                rationale=f"Load test skipped: {inputs.get('reason', 'tests did not pass')}.",
            )
        advice = assess(inputs)
        total = inputs.get("total") or {}
        score = {"p95_ms": total.get("p95_ms"), "error_rate": inputs.get("error_rate", 0.0), "advice": len(advice)}
        rule = "advise when an endpoint's error rate > error_rate_max, p95 > p95_high_ms, or p99 has a long tail"
        if not advice:
            return Reasoning(
                "accept",
                rule,
                score,
                f"{total.get('requests', 0)} requests, p95 {total.get('p95_ms')} ms, error rate "
                f"{inputs.get('error_rate', 0.0)}: within every threshold.",
            )
        fired = "; ".join(f"{a['rule']} on {a['endpoint']}" for a in advice)
        return Reasoning("advise", rule, score, f"{len(advice)} advice: {fired}.")

    async def on_event(self, event: CloudEvent) -> None:
        """Measure the tested commit, or record why it is not measured."""
        data = event.data if isinstance(event.data, dict) else {}
        commit = str(data.get("commit", ""))
        if not commit:
            raise InputError(f"run {event.runid}: tests.completed carries no commit", hint="rerun the testing agent")
        done = await self.latest(event.runid, EventType.PERF_MEASURED)
        if done is not None and isinstance(done.data, dict) and done.data.get("commit") == commit:
            return  # redelivered: this commit was measured in this run already
        run = await self.run_spec(event)
        if not data.get("passed"):
            await self._skip(event, commit, self._failure_reason(data))
            return
        code = await self.latest(event.runid, EventType.CODE_GENERATED)
        delivered = code.data if code is not None and run.delivery else None
        if delivered is not None and not data.get("spec_path"):  # issue 17: a service without an OpenAPI document
            await self._skip(event, commit, NO_DOCUMENT_REASON)
            return
        nothing = await self._nothing_to_call(event, data)
        if nothing:  # issue 17: no operation callable (e.g. every one secured, no credentials): skip, not fail
            await self._skip(event, commit, nothing)
            return
        addresses = provider_addresses(await load_fleet(self.ctx.bus)) if delivered is not None else {}
        async with self._slot(event, run, commit) as grant:
            head = _role(delivered, "head", addresses) if delivered is not None else None
            result, allocation = await self._measure(
                event, run, commit, Path(str(data.get("head_dir", ""))), data, head
            )
            production = None
            if delivered is not None:  # issue 17: production measured the same way, recorded beside it
                base_commit = str(delivered["base_commit"])
                production, _ = await self._measure(
                    event, run, base_commit, Path(str(delivered["base_dir"])), data, _role(delivered, "base", addresses)
                )
        endpoints = [{**e.to_dict(), "endpoint": e.endpoint} for e in result.endpoints]
        inputs = {
            "commit": commit,
            "skipped": False,
            "users": result.users,
            "duration_s": result.duration_s,
            "endpoints": [{k: e[k] for k in ("endpoint", "method", "requests", "failures", "p50_ms", "p95_ms",
                                             "p99_ms")} for e in endpoints],
            "total": {k: result.total.to_dict()[k] for k in ("requests", "failures", "p50_ms", "p95_ms", "p99_ms")},
            "error_rate": round(result.error_rate, 6),
            "thresholds": {"error_rate_max": self.error_rate_max, "p95_high_ms": self.p95_high_ms,
                           "tail_ratio": self.tail_ratio, "tail_min_ms": self.tail_min_ms},
        }  # fmt: skip
        decision = await self.decide("perf.assessment", inputs, cause=event)
        self._learn(run, commit, result)
        await self.emit(
            EventType.PERF_MEASURED,
            {
                "commit": commit,
                "skipped": False,
                "reason": "",
                "users": result.users,
                "duration_s": result.duration_s,
                "endpoints": [e.to_dict() for e in result.endpoints],
                "total": result.total.to_dict(),
                "error_rate": round(result.error_rate, 6),
                "csv_path": str(result.csv_path),
                "decision_id": decision.id,
                "executed_by": allocation.where,  # issue 8: "local" or "worker:<id>" (contract-net)
                "allocation": allocation.to_dict(),
                "slot": grant.to_dict(),  # issue 8: the load-test slot's auction
            }
            | ({"production": _figures(production, str(delivered["base_commit"]))} if production and delivered else {}),
            cause=event,
        )
        if decision.action == "advise":
            await self.emit(
                EventType.PERF_ADVICE,
                {"commit": commit, "advice": assess(inputs), "thresholds": inputs["thresholds"],
                 "decision_id": decision.id},
                cause=event,
            )  # fmt: skip

    async def _skip(self, event: CloudEvent, commit: str, reason: str) -> None:
        """Record why ``commit`` is not load-tested: a ``skip`` decision and ``perf.measured`` ``{skipped: true}``."""
        users, duration_s = self.ctx.settings.load_test_users, self.ctx.settings.load_test_duration_s
        decision = await self.decide(
            "perf.assessment", {"commit": commit, "skipped": True, "reason": reason}, cause=event
        )
        await self.emit(
            EventType.PERF_MEASURED,
            {"commit": commit, "skipped": True, "reason": reason, "users": users, "duration_s": duration_s,
             "endpoints": [], "total": _empty_total(), "error_rate": 0.0, "decision_id": decision.id},
            cause=event,
        )  # fmt: skip

    async def _nothing_to_call(self, event: CloudEvent, data: dict[str, Any]) -> str:
        """Return why the load test has no target (:data:`~pilotage.perf.locustfile.NO_TARGET`), or "" if it has one.

        Secured operations count when the run's test principal can meet their security, or the head version's
        ``traffic.credentials`` variable is set here.
        """
        spec_path = await self._spec_path(event, data)
        credentials = _credentials(str(data.get("head_dir", "")), self.ctx.settings.traffic_credential_envs)
        doc = await asyncio.to_thread(load_spec, spec_path)
        usable = credentials is not None and bool(os.environ.get(credentials["env"]))
        principal = bool(os.environ.get(PRINCIPAL_ENV))  # issue 18: the run's test principal
        found = load_targets(doc, credentials=usable, principal=principal)
        return "" if found else f"{spec_path.name}: {NO_TARGET}"

    @staticmethod
    def _failure_reason(data: dict[str, Any]) -> str:
        st = data.get("schemathesis") or {}
        unit = data.get("unit") or {}
        consumers = str((data.get("consumer_verification") or {}).get("summary") or "")  # issue 19
        return (
            (
                f"tests did not pass: {st.get('server_errors', '?')} server errors, "
                f"{unit.get('failed', '?')} unit tests failed, {unit.get('errors', '?')} errored"
            )
            + generated_failures(data)
            + (f"; {consumers}" if consumers else "")
        )

    def _slot(self, event: CloudEvent, run: RunSpec, commit: str) -> AbstractAsyncContextManager[SlotGrant]:
        """Return the context that holds the machine's load-test slot for this run's commit (won by auction)."""
        settings = self.ctx.settings
        hold_s = 2 * loadtest_exec_timeout_s(settings.load_test_duration_s, settings.service_ready_timeout_s)
        request = f"{event.runid}/{commit[:12]}"
        return agent_slot(
            self, event, LOADTEST_SLOT, slot_bidder(run.service), request, kind="perf.slot_bid", hold_s=hold_s
        )

    async def _spec_path(self, event: CloudEvent, data: dict[str, Any]) -> Path:
        if data.get("spec_path"):
            return Path(str(data["spec_path"]))
        spec = await self.latest(event.runid, EventType.SPEC_VALIDATED)
        if spec is None or not isinstance(spec.data, dict) or not spec.data.get("spec_path"):
            raise InputError(f"run {event.runid}: no spec.validated event to load-test from", hint="run design")
        return Path(str(spec.data["spec_path"]))

    async def _measure(
        self,
        event: CloudEvent,
        run: RunSpec,
        commit: str,
        head_dir: Path,
        data: dict[str, Any],
        workload: dict[str, Any] | None = None,
    ) -> tuple[LoadTestResult, Allocation]:
        """Load-test the head version: on a worker by contract-net when one is live, else here (issue 8).

        Either way the version is started, load-tested and stopped by
        :func:`~pilotage.coordination.tasks.run_load_test_task`; here it runs on this agent's runtime.
        """
        if not head_dir.is_dir():
            raise InputError(f"run {event.runid}: head_dir {head_dir} is not a folder", hint="regenerate the code")
        spec_path = await self._spec_path(event, data)
        out_dir = run.artifacts_path / "perf" / commit[:12]
        settings = self.ctx.settings
        payload = {
            "service": run.service,
            "version": f"perf-{commit[:12]}",
            "head_dir": str(head_dir),
            "spec_path": str(spec_path),
            "out_dir": str(out_dir),
            "users": settings.load_test_users,
            "duration_s": settings.load_test_duration_s,
            "ready_timeout_s": settings.service_ready_timeout_s,
            "credentials": _credentials(
                str(head_dir), self.ctx.settings.traffic_credential_envs
            ),  # names only (the payload may go on the bus to a worker)
        }
        if workload is not None:  # issue 17: started from its descriptor (command, prepared folder, health path)
            payload["workload"] = workload

        async def here(task: dict[str, Any]) -> dict[str, Any]:
            return await run_load_test_task(task, runtime=self.ctx.runtime)

        allocation = await allocate_or_run_locally(
            self.ctx.bus,
            "loadtest",
            payload,
            here,
            agent=self,
            cause=event,
            options=ContractNetOptions.from_settings(settings),
            exec_timeout_s=loadtest_exec_timeout_s(settings.load_test_duration_s, settings.service_ready_timeout_s),
        )
        return load_test_result_from_dict(allocation.result), allocation

    def _learn(self, run: RunSpec, commit: str, result: LoadTestResult) -> None:
        graph = self.ctx.graph
        commit_node = graph.upsert_node("Commit", commit, {"sha": commit})
        for stats in [*result.endpoints, result.total]:
            sample = graph.upsert_node(
                "MetricSample",
                f"{run.run_id}/{commit}/{stats.endpoint}",
                {
                    **stats.to_dict(),
                    "endpoint": stats.endpoint,
                    "error_rate": round(stats.error_rate, 6),
                    "run_id": run.run_id,
                    "commit": commit,
                    "service": run.service,
                    "users": result.users,
                    "duration_s": result.duration_s,
                    "source": "locust",
                },
            )
            graph.upsert_edge(commit_node.id, "MEASURED", sample.id)


#: Why a delivered service without an OpenAPI document is not load-tested (issue 17).
NO_DOCUMENT_REASON = (
    "pilotage.yaml names no OpenAPI document: the load test has no operation to call "
    "(the rollout still exercises the descriptor's traffic.requests)"
)


def _role(code: dict[str, Any], which: str, addresses: dict[str, str]) -> dict[str, Any]:
    """The start fields of a delivered commit (``head``/``base`` of ``code.generated``), from its descriptor.

    ``addresses``: the providers' stable addresses (:func:`pilotage.fleet.workload.provider_addresses`).
    """
    sha = str(code["commit"] if which == "head" else code["base_commit"])
    folder = str(code[f"{which}_dir"])
    data = tempfile.mkdtemp(prefix=f"pilotage-perf-{sha[:12]}-")  # a fresh {data}: never production's
    return workload_role(
        f"perf-{sha[:12]}",
        folder,
        str(code.get(f"{which}_prepared", "")),
        {},
        addresses=addresses,
        data_dir=data,
        scratch=True,
    )


def _figures(result: LoadTestResult, commit: str) -> dict[str, Any]:
    """The production version's load-test figures recorded beside the new version's (issue 17)."""
    return {
        "commit": commit,
        "total": result.total.to_dict(),
        "error_rate": round(result.error_rate, 6),
        "endpoints": [e.to_dict() for e in result.endpoints],
    }

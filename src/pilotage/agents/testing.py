"""The testing agent: property tests from the spec and the service's own tests, on every allowed merge.

Perceive (on ``policy.evaluated`` with ``action == "merge"`` and ``allow is True``): the run's ``code.generated``
(``commit``, ``head_dir``: the git worktree of the change) and ``spec.validated`` (``spec_path``), read from the
log with :meth:`~pilotage.agent.Agent.latest`. A ``tests.completed`` for the same commit already in the log means
the event was delivered twice (at-least-once delivery): nothing is done again.

Act: start the head version on the runtime (``Workload(service, version="test-<sha12>", path=head_dir)``, its
SQLite file and the test artefacts under ``<workdir>/artifacts/tests/<sha12>/``; no fault injection — the run's
``inject_fault_rate`` belongs to the rollout, not to CI), then run concurrently

* schemathesis against the instance (:func:`pilotage.testing.schemathesis_runner.run_schemathesis`, at most
  ``settings.schemathesis_max_examples`` cases per operation and phase), and
* pytest on ``head_dir/tests`` (:func:`pilotage.testing.pytest_runner.run_pytest`),

and stop the instance whatever happens (``finally``). If either runner raises, the other is cancelled (its process
group killed) and the error becomes ``agent.failed``; so does a service that does not start (a ``BackendError``
from the runtime carrying the service's log tail).

Reason (``tests.verdict``, pure, :func:`pilotage.testing.verdict.verdict_reasoning`): **passed iff schemathesis
saw 0 server errors (5xx) and the unit tests have 0 failures and 0 errors** — and the schemathesis run completed
(a run cut short by its timeout proves nothing, so it fails closed). Other failed checks (``status_code_conformance``,
``allow_header_conformance``, ``negative_data_rejection`` …) are reported per operation, with a curl line each,
but do not fail the tests: frameworks answer some malformed requests in ways the spec does not list (FastAPI's 400
for an unparsable body, Starlette's ``Allow`` header on 405). Issue 18: the contract checks among them (a valid
request rejected, an undocumented status or content type, authentication not enforced) are listed by check in
``tests.completed`` ``contract`` and gate the deploy instead (``deploy_contract.rego``, ``testing_contract_gate``);
a 501 is "not implemented", not a server error; a run where most tests skipped fails. A suite with no unit tests
passes that half (nothing failed). When tests fail, the failing ones (and schemathesis' requests that got a
5xx, replayed) run again against a scratch instance of the baseline (``code.generated`` ``base_dir``,
:mod:`pilotage.testing.baseline`, generated services): a failure production has too is a *baseline problem*,
listed in ``baseline_problems`` and the summary, not gating; what cannot be checked there keeps gating.

Emit ``tests.completed`` (``docs/events-contract.md``): ``commit``, ``head_dir``, ``passed``, ``schemathesis``
{``operations`` [{operation, requests, failures, server_errors, checks_failed, examples}], ``requests``,
``failures``, ``server_errors`` …}, ``unit`` {``passed``, ``failed``, ``errors``, ``exit_code`` …}, ``junit_path``
(schemathesis' JUnit XML), plus ``spec_path`` and ``decision_id``.

Issue #4 (knowledge graph): when the graph holds Module nodes under ``head_dir`` (someone ran
``pilotage graph ingest`` on it), the impact of ``code.generated`` ``files_changed`` selects the affected tests; pytest
runs them first (their node ids, in impact order), then the rest — every test still runs once
(:mod:`pilotage.testing.affected_first`). ``tests.completed`` records ``affected_tests``: the node ids, or ``"all"``
when the graph does not know the code, and ``affected_tests_source`` saying which. The verdict does not depend on it.

Issue #17 (services with a descriptor): when ``head_dir/pilotage.yaml`` exists the service is the user's own, and
no ``spec.validated`` is needed. The head version starts from its descriptor (``start``, ``health``, ``env``, the
``head_prepared`` folder of ``code.generated``; :func:`pilotage.runtime.base.scratch_workload`), then
:func:`pilotage.testing.descriptor_suite.run_descriptor_suite` runs its own ``test`` command (the ``unit`` result,
``ran: false`` without one) and, when ``openapi`` names a document (a repository file, or a path the instance
serves, fetched and validated), the spec-derived tests from a scratch folder among the artefacts and schemathesis;
without a document ``schemathesis`` is marked not run and only the own tests gate. Such a run happens here, not
through contract-net (the ``tests`` payload carries no descriptor). With the run's ``commit_tests`` the generated
tests are committed on ``pilotage/tests-<sha12>`` of ``service_repo`` (:mod:`pilotage.testing.commit_tests`);
``tests.completed`` then names ``tests_branch`` and ``tests_commit``, and always ``descriptor``.

Learn: ``TestRun`` node (key ``<run_id>/<commit>``; counts, verdict, per-operation results) and
``Commit:<sha> -TESTED_BY-> TestRun`` (the ``Commit`` node is created when missing).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.agent import Agent, Reasoning, RunSpec
from pilotage.coordination.allocate import Allocation, allocate_or_run_locally
from pilotage.coordination.contract_net import ContractNetOptions
from pilotage.errors import BackendError, InputError
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.descriptor import DESCRIPTOR_FILE, ServiceDescriptor, load_descriptor
from pilotage.fleet.registry import load_fleet
from pilotage.fleet.verification import record_verifications, summary_line, verify_consumers
from pilotage.fleet.workload import provider_addresses
from pilotage.graph.base import Graph
from pilotage.graph.impact import impact_of_files, pytest_node_ids
from pilotage.policy.base import Verdict
from pilotage.runtime.base import scratch_instance
from pilotage.settings import Settings
from pilotage.testing.baseline import check_baseline, untested_baseline
from pilotage.testing.commit_tests import commit_spec_tests
from pilotage.testing.descriptor_suite import run_descriptor_head
from pilotage.testing.schemathesis_runner import load_operations
from pilotage.testing.suite import run_test_suite
from pilotage.testing.verdict import VERDICT_RULE, verdict_inputs, verdict_reasoning, why_failed

__all__ = [
    "VERDICT_RULE",
    "TestingAgent",
    "affected_tests",
    "suite_options",
    "verdict_inputs",
    "verdict_reasoning",
    "why_failed",
]


# --- issue 4 (graph): affected tests first ----------------------------------------------------------------------
def affected_tests(graph: Graph, head_dir: Path, files_changed: list[str]) -> tuple[list[str] | str, str]:
    """Return the pytest node ids of the tests a change affects, by the knowledge graph, and where they come from.

    Args:
        graph: the knowledge graph.
        head_dir: the service folder (node ids are relative to it).
        files_changed: the change's files, relative to ``head_dir`` (``code.generated`` ``files_changed``).

    Returns:
        ``(node ids, "graph: N of M changed files in the graph")`` when the graph has Module nodes under
        ``head_dir`` (the list may be empty: no test depends on the change), else ``("all", reason)``.
    """
    report = impact_of_files(graph, head_dir, files_changed)
    if report is None:
        return "all", f"all: the graph has no code under {head_dir} (run `pilotage graph ingest` on it)"
    ids = pytest_node_ids(graph, report, head_dir)
    return ids, f"graph: {len(report.changed)} of {len(files_changed)} changed files in the graph"


# --- end issue 4 ------------------------------------------------------------------------------------------------


def suite_options(settings: Settings, commit: str) -> dict[str, Any]:
    """The test-suite request knobs the testing agent takes from ``settings`` for ``commit`` (no graph, no state).

    Returns:
        ``{"max_examples", "crud_examples", "request_timeout_s", "timeout_s", "unit_timeout_s" (seconds),
        "flaky_reruns", "flaky_policy", "generate", "api_tests", "seed" (int from the commit: the same commit gets
        the same schemathesis cases), "headers" (the test credentials, ``testing_auth_headers``)}``: keys of
        :data:`pilotage.testing.suite.DEFAULTS` (``api_tests``: the descriptor suite's).
    """
    return {
        "max_examples": settings.schemathesis_max_examples,
        "crud_examples": settings.testing_crud_examples,
        "request_timeout_s": settings.testing_request_timeout_s,
        "timeout_s": settings.testing_timeout_s,
        "unit_timeout_s": settings.testing_unit_timeout_s,
        "flaky_reruns": settings.testing_flaky_reruns,
        "flaky_policy": settings.testing_flaky_policy,
        "generate": settings.testing_generate,
        "api_tests": settings.testing_api_tests,
        # the same commit gets the same schemathesis cases: a verdict can be reproduced, not re-rolled
        "seed": int(hashlib.sha256(commit.encode()).hexdigest()[:8], 16),
        "headers": dict(settings.testing_auth_headers),  # removed from a published payload (issue 15)
    }


def _merge_verdict(data: dict[str, Any]) -> Verdict:
    return Verdict(
        action=str(data.get("action", "merge")),
        allow=bool(data.get("allow")),
        reasons=list(data.get("reasons") or []),
        policies=list(data.get("policies") or []),
        engine=str(data.get("engine", "")),
    )


def _descriptor_of(head_dir: Path) -> ServiceDescriptor | None:
    """The validated ``head_dir/pilotage.yaml``, or None for a generated service (no descriptor).

    Raises:
        ConfigError: the descriptor exists but breaks its schema (names the file and the field).
    """
    if not (head_dir / DESCRIPTOR_FILE).is_file():
        return None
    return load_descriptor(head_dir)


async def _commit_tests(
    code: dict[str, Any],
    descriptor: ServiceDescriptor,
    spec_path: Path | None,
    out_dir: Path,
    options: dict[str, Any],
    findings: list[dict[str, str]],
) -> dict[str, str]:
    """Commit the spec-derived tests on their branch of ``service_repo`` (the run's ``commit_tests``, issue 17).

    A commit that cannot be made (no document, no repository, a git error) is a finding, not a failure: the
    test results stand.

    Returns:
        ``{"tests_branch", "tests_commit"}``, or ``{}`` when nothing was committed (the reason added to
        ``findings`` as ``commit_tests_skipped`` / ``commit_tests_failed``).
    """
    if spec_path is None or not descriptor.openapi:
        message = "commit_tests: the service has no OpenAPI document, so Pilotage generated no tests to commit"
        findings.append({"kind": "commit_tests_skipped", "message": message})
        return {}
    try:
        committed = await commit_spec_tests(
            str(code.get("service_repo") or ""), str(code["commit"]), openapi=descriptor.openapi,
            spec_path=spec_path, scratch=out_dir, max_examples=options["max_examples"],
            crud_examples=options["crud_examples"], request_timeout_s=options["request_timeout_s"],
        )  # fmt: skip
    except (BackendError, InputError) as exc:
        findings.append({"kind": "commit_tests_failed", "message": f"commit_tests: {exc}"})
        return {}
    return {"tests_branch": committed["branch"], "tests_commit": committed["commit"]}


@dataclass
class _Outcome:
    """What one kind of test run gives the verdict and ``tests.completed``."""

    result: dict[str, Any]
    allocation: Allocation
    spec_path: str
    selected: list[str] | str
    selection_source: str
    extra: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)  # issue 18: check_baseline's result, {} when not run


class TestingAgent(Agent):
    """Runs schemathesis and the service's own tests on the head version of an allowed merge.

    Emits ``tests.completed``; records a ``tests.verdict`` decision; writes ``TestRun`` nodes.
    """

    __test__ = False  # not a pytest test class, despite the name

    name = "testing"
    subscribes = (EventType.POLICY_EVALUATED,)

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """``tests.verdict`` → :func:`verdict_reasoning`; any other kind is not this agent's."""
        if kind == "tests.verdict":
            return verdict_reasoning(inputs)
        return super().reason(kind, inputs)

    async def on_event(self, event: CloudEvent) -> None:
        """Test the change of an allowed merge; ignore every other policy verdict."""
        data = event.data if isinstance(event.data, dict) else {}
        if data.get("action") != "merge" or data.get("allow") is not True:
            return
        run = await self.run_spec(event)
        code = await self.latest(event.runid, EventType.CODE_GENERATED)
        if code is None or not isinstance(code.data, dict):
            raise InputError(f"run {event.runid}: no code.generated event before the merge verdict", hint="run codegen")
        commit = str(code.data.get("commit", ""))
        head_dir = Path(str(code.data.get("head_dir", "")))
        if not commit or not code.data.get("head_dir") or not head_dir.is_dir():
            raise InputError(
                f"run {event.runid}: code.generated has no commit or its head_dir {head_dir} is not a folder",
                hint="regenerate the code",
            )
        # issue 17: a delivered commit is tested from its descriptor; a generated service (whose pilotage.yaml
        # Pilotage wrote) keeps the generated-service stage (ghostwriter, contract-net workers)
        descriptor = await asyncio.to_thread(_descriptor_of, head_dir) if run.delivery else None
        spec = await self.latest(event.runid, EventType.SPEC_VALIDATED)
        if descriptor is None and (spec is None or not isinstance(spec.data, dict)):
            raise InputError(f"run {event.runid}: no spec.validated event before the merge verdict", hint="run design")
        done = await self.latest(event.runid, EventType.TESTS_COMPLETED)
        if done is not None and isinstance(done.data, dict) and done.data.get("commit") == commit:
            return  # redelivered: this commit was tested in this run already
        if descriptor is None:
            assert spec is not None and isinstance(spec.data, dict)
            outcome = await self._test_generated(event, run, code.data, Path(str(spec.data.get("spec_path", ""))))
            outcome.baseline = await self._check_baseline(run, code.data, outcome)
        else:
            outcome = await self._test_descriptor(event, run, code.data, descriptor)
            if outcome.result.get("failures"):  # issue 18: not checked against production yet: the failures gate
                outcome.baseline = untested_baseline("a service with pilotage.yaml is not rerun on its baseline yet")
        await self._conclude(event, run, commit, head_dir, outcome)

    async def _test_generated(self, event: CloudEvent, run: RunSpec, code: dict[str, Any], spec_path: Path) -> _Outcome:
        """A generated service: the spec of ``spec.validated``, affected tests first, contract-net or here."""
        commit, head_dir = str(code["commit"]), Path(str(code["head_dir"]))
        await asyncio.to_thread(load_operations, spec_path)  # an unloadable spec fails before a service starts
        files = [str(f) for f in code.get("files_changed") or []]
        selected, selection_source = affected_tests(self.ctx.graph, head_dir, files)  # issue 4
        first = selected if isinstance(selected, list) else None
        result, allocation = await self._run_tests(event, run, commit, head_dir, spec_path, first)
        return _Outcome(result, allocation, str(spec_path), selected, selection_source)

    async def _check_baseline(self, run: RunSpec, code: dict[str, Any], outcome: _Outcome) -> dict[str, Any]:
        """Issue 18: the head's failing tests again on the baseline (``base_dir``); ``{}`` when none failed."""
        commit, settings = str(code["commit"]), self.ctx.settings
        request = {
            "service": run.service, "commit": commit, "head_dir": str(code["head_dir"]),
            "base_dir": str(code.get("base_dir") or ""), "headers": dict(settings.testing_auth_headers),
            "out_dir": str((run.artifacts_path / "tests" / commit[:12] / "baseline").resolve()),
            "ready_timeout_s": settings.service_ready_timeout_s,
            "request_timeout_s": settings.testing_request_timeout_s,
        }  # fmt: skip
        return await check_baseline(self.ctx.runtime, request, outcome.result)

    async def _test_descriptor(
        self, event: CloudEvent, run: RunSpec, code: dict[str, Any], descriptor: ServiceDescriptor
    ) -> _Outcome:
        """A service with ``pilotage.yaml`` (issue 17): its own tests, the spec-derived ones, schemathesis; here.

        Runs on this process's runtime, not through contract-net: the ``tests`` task payload carries no
        descriptor or prepared folder, and a worker would need both to start the service (running here is
        acceptable, as it is when no worker is live).
        """
        commit, head_dir = str(code["commit"]), Path(str(code["head_dir"]))
        out_dir = (run.artifacts_path / "tests" / commit[:12]).resolve()
        options = self._suite_options(commit, run)
        test, prepared = descriptor.test, str(code.get("head_prepared") or "")
        result, spec_path = await run_descriptor_head(
            self.ctx.runtime, descriptor, service=run.service, commit=commit, head_dir=head_dir, prepared=prepared,
            out_dir=out_dir, ready_timeout_s=descriptor.ready_timeout_s or self.ctx.settings.service_ready_timeout_s,
            options=options, addresses=provider_addresses(await load_fleet(self.ctx.bus)),
        )  # fmt: skip
        extra: dict[str, Any] = {"descriptor": descriptor.path}
        if code.get("service_repo"):  # issue 19: the provider's live consumers, against this commit
            extra["consumer_verification"] = await self._verify_consumers(event, run, code, descriptor, out_dir)
        if run.commit_tests:
            extra |= await _commit_tests(code, descriptor, spec_path, out_dir, options, result["findings"])
        where = "a descriptor service runs here: the contract-net tests payload carries no descriptor"
        source = "all: a descriptor service's own tests run as its `test` command" + ("" if test else " (none)")
        allocation = Allocation(result=result, where="local", reason=where)
        return _Outcome(result, allocation, str(spec_path or ""), "all", source, extra)

    async def _verify_consumers(
        self, event: CloudEvent, run: RunSpec, code: dict[str, Any], descriptor: ServiceDescriptor, out_dir: Path
    ) -> dict[str, Any]:
        """Issue 19: every live consumer's tests against a scratch instance of this commit; events and graph edges.

        Returns:
            ``{"summary": one line naming the failed consumers and tests ("" when none failed), "consumers":
            [contract.verified data]}`` (:mod:`pilotage.fleet.verification`).
        """
        commit = str(code["commit"])
        verifications = await verify_consumers(
            self.ctx.runtime, self.ctx.settings, await load_fleet(self.ctx.bus), provider=run.service, commit=commit,
            head_dir=Path(str(code["head_dir"])), descriptor=descriptor, prepared=str(code.get("head_prepared") or ""),
            out_dir=out_dir / "consumers",
        )  # fmt: skip
        record_verifications(self.ctx.graph, verifications)
        for verification in verifications:
            await self.emit(EventType.CONTRACT_VERIFIED, verification.to_dict(), cause=event)
        return {"summary": summary_line(verifications), "consumers": [v.to_dict() for v in verifications]}

    def _suite_options(self, commit: str, run: RunSpec) -> dict[str, Any]:
        """The test-suite knobs from the settings (shared by both kinds of service), quarantined tests deselected."""
        return {**suite_options(self.ctx.settings, commit), "quarantine": self._quarantined(run.service)}

    async def _conclude(self, event: CloudEvent, run: RunSpec, commit: str, head_dir: Path, outcome: _Outcome) -> None:
        """Decide the verdict, record the TestRun, publish ``tests.completed``."""
        result, allocation = outcome.result, outcome.allocation
        st, unit = result["schemathesis"], result["unit"]
        inputs = verdict_inputs(commit, result)
        inputs["contract"]["gate"] = self.ctx.settings.testing_contract_gate  # issue 18: deny or warn, at deploy
        inputs["contract"]["gap_gate"] = self.ctx.settings.testing_document_gap_gate  # gaps: report, or deny too
        if outcome.baseline:  # issue 18: failures production has too are baseline problems, not gating
            inputs["baseline"] = outcome.baseline
        verification = outcome.extra.get("consumer_verification")
        if verification is not None:  # issue 19
            failed = sum(1 for v in verification["consumers"] if v["passed"] is False)
            inputs["consumers"] = {"verified": len(verification["consumers"]), "failed": failed,
                                   "summary": verification["summary"]}  # fmt: skip
        data = event.data if isinstance(event.data, dict) else {}
        decision = await self.decide("tests.verdict", inputs, cause=event, verdict=_merge_verdict(data))
        passed = decision.action == "pass"
        self._learn(run, commit, passed, result, decision.id)
        await self.emit(
            EventType.TESTS_COMPLETED,
            {
                "commit": commit,
                "head_dir": str(head_dir),
                "spec_path": outcome.spec_path,
                "passed": passed,
                "schemathesis": st,
                "unit": unit,
                "junit_path": st["junit_path"],
                "decision_id": decision.id,
                "affected_tests": outcome.selected,  # issue 4: run first; "all" when the graph does not know the code
                "affected_tests_source": outcome.selection_source,
                # issue 5: generated tests, flaky tests, failures with their reproduction, findings
                "generated": result["generated"],
                "failures": result["failures"],
                # issue 18: skipped tests with their reason, operations not implemented (501), contract violations
                "skipped": result.get("skipped") or [],
                "not_implemented": inputs["not_implemented"],
                "contract": {**inputs["contract"], "by_check": st.get("contract") or {}},
                "baseline_problems": outcome.baseline.get("problems") or [],
                "baseline_untested": outcome.baseline.get("untested") or [],
                "flaky": result["flaky"],
                "quarantined": result["quarantined"],
                "findings": result["findings"],
                "unit_junit_path": result["unit_junit_path"],
                # issue 8: where the run happened (a contract-net worker, or here) and why
                "executed_by": allocation.where,
                "allocation": allocation.to_dict(),
                **outcome.extra,  # issue 17: descriptor, tests_branch, tests_commit
            },
            cause=event,
        )

    def _quarantined(self, service: str) -> list[str]:
        """Node ids of this service's tests quarantined as flaky by earlier runs (``TestCase`` nodes)."""
        nodes = self.ctx.graph.nodes("TestCase")
        return sorted(
            str(n.props.get("nodeid"))
            for n in nodes
            if n.props.get("service") == service and n.props.get("quarantined")
        )

    async def _run_tests(
        self,
        event: CloudEvent,
        run: RunSpec,
        commit: str,
        head_dir: Path,
        spec_path: Path,
        first: list[str] | None = None,
    ) -> tuple[dict[str, Any], Allocation]:
        """Run :func:`~pilotage.testing.suite.run_test_suite` on the change: on a worker or here.

        Issue #8: when a ``pilotage worker --capabilities tests`` is live, the run is allocated by contract-net
        (:func:`~pilotage.coordination.allocate.allocate_or_run_locally`; the worker starts the head version
        itself); otherwise — or when no worker completes it — the head version is started here and the suite runs
        against it, then it is stopped.

        Returns:
            The suite's result and the :class:`~pilotage.coordination.allocate.Allocation` (where it ran, why).

        Raises:
            BackendError: the suite could not run (the spec does not load, the service does not start).
        """
        out_dir = run.artifacts_path / "tests" / commit[:12]
        settings = self.ctx.settings
        options = self._suite_options(commit, run)
        options.pop("headers")  # the task is published on the bus; the credentials are added where the suite runs
        request = {
            "service_dir": str(head_dir.resolve()),  # absolute: a worker process may run elsewhere
            "spec_path": str(spec_path.resolve()),
            "out_dir": str(out_dir.resolve()),
            **options,
            "ready_timeout_s": settings.service_ready_timeout_s,
            "first": first,
            "env": {"PILOTAGE_DB_PATH": str((out_dir / "unit-tests.db").resolve())},
        }

        async def run_here(payload: dict[str, Any]) -> dict[str, Any]:
            async with scratch_instance(
                self.ctx.runtime,
                service=run.service,
                version=f"test-{commit[:12]}",
                path=head_dir,
                data_dir=out_dir,
                ready_timeout_s=settings.service_ready_timeout_s,
            ) as instance:
                auth = {"headers": dict(settings.testing_auth_headers)}  # never in the published payload (issue 15)
                return await run_test_suite({**payload, "base_url": instance.url, **auth})

        allocation = await allocate_or_run_locally(
            self.ctx.bus,
            "tests",
            request,
            run_here,
            agent=self,
            cause=event,
            options=ContractNetOptions.from_settings(settings),
            exec_timeout_s=settings.testing_timeout_s
            + settings.testing_unit_timeout_s
            + settings.service_ready_timeout_s,
        )
        result = allocation.result
        problems = [f for f in result["findings"] if f["kind"] in ("spec_unloadable", "service_start")]
        if problems or result["schemathesis"] is None or result["unit"] is None:
            raise BackendError(
                f"the test suite of {head_dir} did not run: {problems[0]['message'] if problems else 'no result'}",
                hint=f"read {out_dir}",
            )
        return result, allocation

    def _learn(self, run: RunSpec, commit: str, passed: bool, result: dict[str, Any], decision_id: str) -> None:
        graph = self.ctx.graph
        st, unit = result["schemathesis"], result["unit"]
        commit_node = graph.upsert_node("Commit", commit, {"sha": commit})
        test_run = graph.upsert_node(
            "TestRun",
            f"{run.run_id}/{commit}",
            {
                "run_id": run.run_id,
                "commit": commit,
                "service": run.service,
                "passed": passed,
                "requests": st["requests"],
                "failures": st["failures"],
                "server_errors": st["server_errors"],
                "checks_failed": st["checks_failed"],
                "unit_passed": unit["passed"],
                "unit_failed": unit["failed"],
                "unit_errors": unit["errors"],
                "operations": st["operations"],
                "junit_path": st["junit_path"],
                "unit_junit_path": result["unit_junit_path"],
                "decision_id": decision_id,
                "flaky": [f["nodeid"] for f in result["flaky"]],
                "findings": result["findings"],
            },
        )
        graph.upsert_edge(commit_node.id, "TESTED_BY", test_run.id)
        for flaky in result["flaky"]:  # issue 5: flaky tests with their history, quarantined per the policy
            key = f"{run.service}/{flaky['nodeid']}"
            old = graph.get_node(f"TestCase:{key}")
            history = list((old.props.get("history") if old else None) or []) + [
                {"run_id": run.run_id, "commit": commit, "results": flaky["history"]}
            ]
            node = graph.upsert_node(
                "TestCase",
                key,
                {
                    "service": run.service,
                    "nodeid": flaky["nodeid"],
                    "flaky": True,
                    "quarantined": flaky["nodeid"] in result["quarantined"],
                    "history": history,
                },
            )
            graph.upsert_edge(test_run.id, "FLAKY", node.id)

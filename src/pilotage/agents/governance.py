"""The governance agent: a generated change may only be merged when the ``merge`` policies allow it.

Step 3 of the lifecycle (DESIGN.md section 2). On ``dev.pilotage.pr.opened`` it

1. **perceives** the run's ``dev.pilotage.code.generated`` event (dependencies, new dependencies, changed files,
   line counts) and gathers the facts of the change (:func:`gather_facts`): the licence of every dependency and of
   what it pulls in (a CycloneDX SBOM of the environment, cyclonedx-py; installed metadata as fallback), the
   hard-coded secrets on the lines the diff adds (detect-secrets), the cryptography the changed Python files use,
   a bandit scan of the generated service, and the vulnerability lookup status (``skipped: offline``); it
   publishes the scan as ``dev.pilotage.security.scanned`` (the deployment agent puts it in the ``deploy`` input);
2. **acts** through :func:`~pilotage.policy.approval.authorize_with_approval` on ``merge``: it publishes
   ``dev.pilotage.policy.evaluated`` (the testing agent starts on an allow) and raises
   :class:`~pilotage.errors.PolicyDenied` on a deny, which becomes ``dev.pilotage.agent.failed``; a change that
   only needs approval (a new external dependency) waits for ``pilotage approve ID`` / ``pilotage deny ID``;
3. **decides** (``governance.review``): records the verdict, allow or deny, as a Decision;
4. **learns**: writes a ``PolicyVerdict`` node linked ``Commit:<sha> -REVIEWED_BY-> PolicyVerdict:<sha>/merge``.

The policy input document (``data.pilotage.merge`` reads it; see ``policy/bundled/merge.rego``)::

    {"commit", "base_commit", "branch", "base_branch", "repo_path", "title": str,
     "dependencies": [{"name", "version", "license"}], "new_dependencies": [{"name", "version", "license"}],
     "files_changed": [str], "lines_added": int, "lines_removed": int,
     # added by gather_facts:
     "transitive_dependencies": [{"name", "version", "license", "license_source", "required_by"}],
     "licence_source": "cyclonedx-py" | "metadata (...)", "secrets": [{"file", "line", "type"}],
     "crypto": [{"file", "line", "kind", "name", "for_security", "distribution"}],
     "security_scan": {"tool": "bandit", "status", "issues": {"high", "medium", "low"}, "findings": [...]},
     "vulnerability_scan": {"status": "skipped: offline", "checked": false, "reason"}}
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from pilotage.agent import Agent, Decision, Reasoning
from pilotage.errors import BackendError, InputError, PolicyDenied
from pilotage.events import CloudEvent, EventType
from pilotage.graph.base import node_id
from pilotage.policy.approval import authorize_with_approval
from pilotage.policy.base import Verdict
from pilotage.policy.facts import dependency_facts, normalise
from pilotage.policy.licenses import UNKNOWN, enrich
from pilotage.policy.scans import OFFLINE_VULNERABILITIES, added_lines, scan_bandit, scan_crypto, scan_secrets

__all__ = ["GovernanceAgent", "gather_facts", "merge_input"]

#: The decision kind this agent records.
KIND = "governance.review"
#: The policy action asked about before a change enters the repository.
ACTION = "merge"


def _dependencies(value: Any, field: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) and item.get("name") for item in value):
        raise InputError(
            f"code.generated {field} is not a list of {{name, version}} objects",
            hint="the codegen agent must emit dependencies as [{name, version}]",
        )
    return enrich(value)


def merge_input(code: dict[str, Any], pr: dict[str, Any]) -> dict[str, Any]:
    """Build the ``merge`` policy input from the data of ``code.generated`` and ``pr.opened``.

    Args:
        code: data of ``dev.pilotage.code.generated`` (events contract).
        pr: data of ``dev.pilotage.pr.opened``.

    Returns:
        The input document described in the module docstring; dependency licences come from installed
        package metadata (``UNKNOWN`` when the package is not installed here).

    Raises:
        InputError: ``dependencies`` or ``new_dependencies`` is not a list of ``{name, version}`` objects.
    """
    files = code.get("files_changed") or []
    return {
        "commit": str(pr.get("commit") or code.get("commit") or ""),
        "base_commit": str(pr.get("base_commit") or code.get("base_commit") or ""),
        "branch": str(pr.get("branch") or code.get("branch") or ""),
        "base_branch": str(pr.get("base_branch") or code.get("base_branch") or ""),
        "repo_path": str(pr.get("repo_path") or code.get("repo_path") or ""),
        "title": str(pr.get("title") or ""),
        "dependencies": _dependencies(code.get("dependencies"), "dependencies"),
        "new_dependencies": _dependencies(code.get("new_dependencies"), "new_dependencies"),
        "files_changed": [str(path) for path in files],
        "lines_added": int(code.get("lines_added") or 0),
        "lines_removed": int(code.get("lines_removed") or 0),
    }


def gather_facts(code: dict[str, Any], policy_input: dict[str, Any], *, use_sbom: bool = True) -> dict[str, Any]:
    """Scan the change of ``code.generated`` and return the facts to add to the ``merge`` input (module doc).

    Direct dependencies keep the licence they carry, else take the SBOM's (then the metadata's); the ones they
    pull in are listed in ``transitive_dependencies``. Secrets count only on the lines the diff adds; when the
    repository or commits are not available every line of the changed files counts. A missing ``head_dir`` gives
    a security scan with ``status: "error"`` (the deploy policy refuses it) and no secret or crypto facts.

    Args:
        code: data of ``dev.pilotage.code.generated``.
        policy_input: the input built by :func:`merge_input` (its direct dependencies are read).
        use_sbom: take licences from a CycloneDX SBOM (default) or from installed metadata only.
    """
    direct = policy_input["dependencies"]
    closure, source = dependency_facts([d["name"] for d in direct], use_sbom=use_sbom)
    by_name = {normalise(d["name"]): d for d in closure}
    for dep in [*direct, *policy_input["new_dependencies"]]:
        found = by_name.get(normalise(dep["name"]))
        if found is not None and dep.get("license") in (None, "", UNKNOWN) and found["license"] != UNKNOWN:
            dep["license"] = found["license"]
    direct_names = {normalise(d["name"]) for d in direct}
    transitive = [
        {k: d[k] for k in ("name", "version", "license", "license_source", "required_by")}
        for d in closure
        if normalise(d["name"]) not in direct_names
    ]
    head = Path(str(code.get("head_dir") or ""))
    files = [str(f) for f in code.get("files_changed") or []]
    if not code.get("head_dir") or not head.is_dir():
        scan = {"tool": "bandit", "status": "error", "reason": f"no checkout of the change at {head}", "issues": {}}
        secrets: list[dict[str, Any]] = []
        crypto: list[dict[str, Any]] = []
    else:
        try:
            lines: dict[str, set[int]] | None = added_lines(
                Path(str(code.get("repo_path"))), str(code.get("base_commit")), str(code.get("commit"))
            )
        except BackendError:
            lines = None  # no repository to diff: every line of the changed files counts
        secrets = scan_secrets(head, files, lines)
        crypto, _ = scan_crypto(head, files)
        scan = scan_bandit(head)
    return {
        "transitive_dependencies": transitive,
        "licence_source": source,
        "secrets": secrets,
        "crypto": crypto,
        "security_scan": scan,
        "vulnerability_scan": dict(OFFLINE_VULNERABILITIES),
    }


class GovernanceAgent(Agent):
    """Reviews every opened pull request against the ``merge`` policies (licences, secrets ...).

    Subscribes to ``dev.pilotage.pr.opened``; emits ``dev.pilotage.policy.evaluated`` (via ``authorize``),
    ``dev.pilotage.decision.made`` and, on a deny, ``dev.pilotage.agent.failed`` (via the base ``handle``).
    """

    name: ClassVar[str] = "governance"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.PR_OPENED,)

    async def on_event(self, event: CloudEvent) -> None:
        """Review the change of ``pr.opened``: policy verdict, decision, graph.

        Raises:
            InputError: no ``code.generated`` event in the run, or malformed dependency lists.
            PolicyDenied: the ``merge`` policies refused the change (after the decision is recorded).
        """
        pr = event.data if isinstance(event.data, dict) else {}
        generated = await self.latest(event.runid, EventType.CODE_GENERATED)
        if generated is None or not isinstance(generated.data, dict):
            raise InputError(
                f"no code.generated event in run {event.runid!r} for the pull request",
                hint="the codegen agent must emit code.generated before pr.opened",
            )
        policy_input = merge_input(generated.data, pr)
        facts = await asyncio.to_thread(gather_facts, generated.data, policy_input)
        policy_input.update(facts)
        await self.emit(
            EventType.SECURITY_SCANNED, {"commit": policy_input["commit"], **facts["security_scan"]}, cause=event
        )
        denied: PolicyDenied | None = None
        try:
            verdict = await authorize_with_approval(self, ACTION, policy_input, cause=event)
        except PolicyDenied as exc:
            denied = exc
            verdict = exc.verdict
        decision = await self.decide(
            KIND, {"policy_input": policy_input, "verdict": verdict.to_dict()}, cause=event, verdict=verdict
        )
        self._record(policy_input, verdict, decision, event)
        if denied is not None:
            raise denied

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """Summarise the verdict (pure): ``approve_merge`` when the policies allowed, ``reject_merge`` otherwise.

        Args:
            kind: ``governance.review``.
            inputs: ``{"policy_input": <merge input>, "verdict": Verdict.to_dict()}``.

        Raises:
            NotImplementedError: ``kind`` is not ``governance.review``.
        """
        if kind != KIND:
            return super().reason(kind, inputs)
        verdict = inputs["verdict"]
        policy_input = inputs["policy_input"]
        reasons = list(verdict.get("reasons") or [])
        deps = policy_input.get("dependencies") or []
        new = policy_input.get("new_dependencies") or []
        allowed = bool(verdict.get("allow"))
        score = {
            "deny_count": len(reasons),
            "dependencies": len(deps),
            "new_dependencies": len(new),
            "files_changed": len(policy_input.get("files_changed") or []),
        }
        subject = f"commit {policy_input.get('commit') or '(unknown)'}"
        licences = ", ".join(f"{d.get('name')}={d.get('license')}" for d in new) or "none"
        scan = policy_input.get("security_scan") or {}
        issues = scan.get("issues") or {}
        vulns = (policy_input.get("vulnerability_scan") or {}).get("status", "not run")
        score["transitive_dependencies"] = len(policy_input.get("transitive_dependencies") or [])
        score["secrets"] = len(policy_input.get("secrets") or [])
        if allowed:
            rationale = (
                f"{subject} passes the {verdict.get('action', ACTION)} policies "
                f"({', '.join(verdict.get('policies') or [])}): {len(deps)} dependencies "
                f"(+{score['transitive_dependencies']} transitive) all on the licence allow-list, no secret files "
                f"or hard-coded secrets, no banned cryptography; new dependencies: {licences}; security scan "
                f"{scan.get('status', 'not run')} ({issues.get('high', 0)} high, {issues.get('medium', 0)} medium, "
                f"{issues.get('low', 0)} low); vulnerability lookup {vulns}."
            )
        else:
            rationale = f"{subject} is refused: " + "; ".join(reasons or ["the policy engine gave no reason"]) + "."
        return Reasoning(
            action="approve_merge" if allowed else "reject_merge",
            rule=f"{verdict.get('engine') or 'policy'} data.pilotage.{ACTION}.deny must be empty",
            score=score,
            rationale=rationale,
        )

    def _record(self, policy_input: dict[str, Any], verdict: Verdict, decision: Decision, event: CloudEvent) -> None:
        """Write ``Commit:<sha> -REVIEWED_BY-> PolicyVerdict:<sha>/merge`` to the graph (idempotent upserts)."""
        commit = policy_input["commit"] or f"run-{event.runid}"
        graph = self.ctx.graph
        commit_id = node_id("Commit", commit)
        if graph.get_node(commit_id) is None:
            graph.upsert_node(
                "Commit",
                commit,
                {"branch": policy_input["branch"], "repo_path": policy_input["repo_path"], "service": event.subject},
            )
        verdict_node = graph.upsert_node(
            "PolicyVerdict",
            f"{commit}/{verdict.action}",
            {
                **verdict.to_dict(),
                "commit": commit,
                "decision_id": decision.id,
                "run_id": event.runid,
                "agent": self.name,
            },
        )
        graph.upsert_edge(commit_id, "REVIEWED_BY", verdict_node.id, {"decision_id": decision.id})

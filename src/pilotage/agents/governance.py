"""The governance agent: a generated change may only be merged when the ``merge`` policies allow it.

Step 3 of the lifecycle (DESIGN.md section 2). On ``dev.pilotage.pr.opened`` it

1. **perceives** the run's ``dev.pilotage.code.generated`` event (dependencies, new dependencies, changed files,
   line counts) and the licence of every dependency from installed package metadata
   (:func:`pilotage.policy.licenses.enrich`);
2. **acts** through :meth:`~pilotage.agent.Agent.authorize` on ``merge``: the base publishes
   ``dev.pilotage.policy.evaluated`` (the testing agent starts on an allow) and raises
   :class:`~pilotage.errors.PolicyDenied` on a deny, which becomes ``dev.pilotage.agent.failed``;
3. **decides** (``governance.review``): records the verdict, allow or deny, as a Decision;
4. **learns**: writes a ``PolicyVerdict`` node linked ``Commit:<sha> -REVIEWED_BY-> PolicyVerdict:<sha>/merge``.

The policy input document (``data.pilotage.merge`` reads it; see ``policy/bundled/merge.rego``)::

    {"commit", "base_commit", "branch", "base_branch", "repo_path", "title": str,
     "dependencies": [{"name", "version", "license"}], "new_dependencies": [{"name", "version", "license"}],
     "files_changed": [str], "lines_added": int, "lines_removed": int}
"""

from __future__ import annotations

from typing import Any, ClassVar

from pilotage.agent import Agent, Decision, Reasoning
from pilotage.errors import InputError, PolicyDenied
from pilotage.events import CloudEvent, EventType
from pilotage.graph.base import node_id
from pilotage.policy.base import Verdict
from pilotage.policy.licenses import enrich

__all__ = ["GovernanceAgent", "merge_input"]

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
        denied: PolicyDenied | None = None
        try:
            verdict = await self.authorize(ACTION, policy_input, cause=event)
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
        if allowed:
            rationale = (
                f"{subject} passes the {verdict.get('action', ACTION)} policies "
                f"({', '.join(verdict.get('policies') or [])}): {len(deps)} dependencies all on the licence "
                f"allow-list, no secret files; new dependencies: {licences}."
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

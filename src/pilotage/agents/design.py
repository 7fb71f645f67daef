"""The design agent: a change request in words → a new, validated OpenAPI document (lifecycle step 1).

On ``flow.started`` it

1. **perceives** the run: loads and validates the current spec, parses the request with the deterministic
   grammar (:mod:`pilotage.spec.grammar`; a request outside it fails the run with the grammar and the closest
   reading) and resolves its names against the spec (:func:`pilotage.spec.evolve.plan_change`): the change, or
   why it does not apply;
2. **reasons** (:meth:`DesignAgent.reason`, kind ``design.change``) from the parsed request and that resolution:
   add the resource with CRUD operations, add the fields to the schema, add the operation to the resource, or
   refuse (the name exists, is reserved, names nothing in the spec ...), so nothing is promoted from a request
   Pilotage did not understand;
3. **acts**: writes ``artifacts/openapi.base.yaml`` (the current spec) and ``artifacts/openapi.next.yaml``
   (the evolved one), diffs them, and emits ``spec.proposed`` then ``spec.validated``;
4. **learns**: ``Service -HAS_SPEC-> Spec -DEFINES-> Endpoint`` in the knowledge graph, and
   ``Spec(next) -SUPERSEDES-> Spec(base)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pilotage.agent import Agent, Reasoning, RunSpec
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType
from pilotage.graph.base import node_id
from pilotage.spec.diff import diff_specs
from pilotage.spec.evolve import Change, apply_change, operations, plan_change
from pilotage.spec.grammar import ParsedRequest, parse_request
from pilotage.spec.load import dump_spec, load_spec, spec_digest, spec_key
from pilotage.spec.openapi import iter_operations
from pilotage.spec.refs import unfollowed_extension_refs

__all__ = ["DesignAgent", "record_spec"]


def record_spec(graph: Any, service: str, doc: dict[str, Any], path: str | Path) -> str:
    """Write ``Service -HAS_SPEC-> Spec -DEFINES-> Endpoint`` for ``doc``; return the Spec node id.

    Node keys: Service ``service``; Spec ``service@<sha256[:12]>`` (props version, openapi, path, digest);
    Endpoint ``service METHOD /path`` (props method, path, operation_id).
    """
    graph.upsert_node("Service", service, {"name": service})
    key = spec_key(service, doc)
    graph.upsert_node(
        "Spec",
        key,
        {
            "service": service,
            "version": str((doc.get("info") or {}).get("version", "")),
            "openapi": str(doc.get("openapi", "")),
            "path": str(path),
            "digest": spec_digest(doc),
            "operations": len(operations(doc)),
        },
    )
    spec_id = node_id("Spec", key)
    graph.upsert_edge(node_id("Service", service), "HAS_SPEC", spec_id)
    for op in iter_operations(doc):
        endpoint = f"{service} {op.label}"
        graph.upsert_node(
            "Endpoint",
            endpoint,
            {
                "service": service,
                "method": op.method.upper(),
                "path": op.path,
                "operation_id": op.operation.get("operationId"),
            },
        )
        graph.upsert_edge(spec_id, "DEFINES", node_id("Endpoint", endpoint))
    return spec_id


def _resolve(doc: dict[str, Any], req: ParsedRequest, path: str) -> tuple[Change | None, InputError | None]:
    """``(change, None)`` or ``(None, refusal)`` of :func:`~pilotage.spec.evolve.plan_change`.

    Raises:
        InputError: any other failure to read the spec.
    """
    try:
        return plan_change(doc, req, path=path), None
    except InputError as exc:
        if "rule" not in exc.context:
            raise
        return None, exc


class DesignAgent(Agent):
    """Turns the run's request into ``artifacts/openapi.next.yaml`` and announces it (see module docstring)."""

    name: ClassVar[str] = "design"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.FLOW_STARTED,)

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """Decide a ``design.change`` from the parsed request and its resolution against the spec (pure).

        Inputs: ``request`` (:meth:`ParsedRequest.to_dict`), ``change`` (:meth:`Change.to_dict`, or None) and
        ``refusal`` (``{"rule", "why"}`` from :func:`~pilotage.spec.evolve.plan_change`, or None).

        Returns:
            action ``add-resource`` (rule ``grammar.add-resource-crud``), ``add-field`` (``grammar.add-field``) or
            ``add-operation`` (``grammar.add-operation``); score: operations and fields added, required fields. Or
            ``refuse`` with the refusal's rule (``no-overwrite``, ``reserved-path``, ``unresolved-name`` ...).
        """
        if kind != "design.change":
            return super().reason(kind, inputs)
        refusal, change = inputs.get("refusal"), inputs.get("change")
        if refusal or not change:
            refusal = refusal or {"rule": "unresolved-name", "why": "the request resolves to no change"}
            return Reasoning(action="refuse", rule=str(refusal["rule"]), score={"refusals": 1},
                             rationale=f"The request does not apply to the spec: {refusal['why']}.")  # fmt: skip
        fields = ", ".join(f"{k}:{v}" for k, v in change["fields"].items())
        ops = ", ".join(change["operations"])
        rationale = {
            "add-resource": f"The request names a new resource {change['schema']} ({fields}); the spec has no "
            f"{change['collection_path']} yet, so add schema {change['schema']} and {ops} - an additive change.",
            "add-field": f"The request adds {fields} to the spec's schema {change['schema']}, as optional properties "
            "so existing clients stay valid - a non-breaking change.",
            "add-operation": f"The request adds {ops} to the spec's resource {change['collection_path']} (schema "
            f"{change['schema']}), which does not have it yet - an additive change.",
        }[change["kind"]]
        return Reasoning(
            action=change["kind"],
            rule={"add-resource": "grammar.add-resource-crud"}.get(change["kind"], f"grammar.{change['kind']}"),
            score={
                "operations_added": len(change["operations"]),
                "fields": len(change["fields"]),
                "required": len(change["required"]),
            },
            rationale=rationale,
        )

    async def on_event(self, event: CloudEvent) -> None:
        """Design the change for one ``flow.started`` event.

        Raises:
            InputError: the spec does not load, the request is outside the grammar, or it does not apply to the
                spec (a name that exists, is reserved or resolves to nothing; with the closest reading).
        """
        run = RunSpec.model_validate(event.data)
        if run.delivery:
            return  # a delivery brings its own commit (pilotage.agents.source)
        base = load_spec(run.spec_path)
        req = parse_request(run.request)
        change, refused = _resolve(base, req, run.spec_path)
        refusal = None if refused is None else {"rule": refused.context["rule"], "why": refused.context["why"]}
        inputs = {"request": req.to_dict(), "change": change.to_dict() if change else None, "refusal": refusal}
        decision = await self.decide("design.change", inputs, cause=event)
        if decision.action == "refuse" or change is None:
            raise refused or InputError(
                f"request {run.request!r} cannot be applied to spec file {run.spec_path}: {decision.rationale}",
                hint="ask for something the spec does not have yet",
                path=run.spec_path,
            )
        new = apply_change(base, req, change, path=run.spec_path)
        artifacts = run.artifacts_path.resolve()
        # the documents every later stage and tool reads; $refs inside x- extensions are data, never followed
        base_path = dump_spec(unfollowed_extension_refs(base), artifacts / "openapi.base.yaml")
        next_path = dump_spec(unfollowed_extension_refs(new), artifacts / "openapi.next.yaml")
        load_spec(next_path)  # what codegen will read must round-trip and validate
        diff = diff_specs(base, new)
        added = diff.added
        await self.emit(
            EventType.SPEC_PROPOSED,
            {
                "spec_path": str(next_path),
                "base_spec_path": str(base_path),
                "change": change.kind,
                "resource": change.schema,
                "fields": dict(change.fields),
                "operations_added": added,
                "diff": diff.to_dict(),
                "decision_id": decision.id,
            },
            cause=event,
        )
        base_id = record_spec(self.ctx.graph, run.service, base, base_path)
        next_id = record_spec(self.ctx.graph, run.service, new, next_path)
        if base_id != next_id:
            self.ctx.graph.upsert_edge(next_id, "SUPERSEDES", base_id, {"classification": diff.classification})
        await self.emit(
            EventType.SPEC_VALIDATED,
            {
                "spec_path": str(next_path),
                "base_spec_path": str(base_path),
                "openapi_version": str(new.get("openapi")),
                "operation_count": len(operations(new)),
                "valid": True,
            },
            cause=event,
        )

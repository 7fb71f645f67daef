"""The design agent: a change request in words → a new, validated OpenAPI document (lifecycle step 1).

On ``flow.started`` it

1. **perceives** the run: loads and validates the current spec, parses the request with the deterministic
   grammar (:mod:`pilotage.spec.grammar`);
2. **reasons** (:meth:`DesignAgent.reason`, kind ``design.change``) from the parsed request and the spec's
   existing paths, schemas and operationIds: add the resource with CRUD operations, or refuse when any of
   them already exists;
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
from pilotage.spec.evolve import evolve, operations
from pilotage.spec.grammar import parse_request
from pilotage.spec.load import dump_spec, load_spec, spec_digest, spec_key
from pilotage.spec.openapi import iter_operations, operation_ids

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


class DesignAgent(Agent):
    """Turns the run's request into ``artifacts/openapi.next.yaml`` and announces it (see module docstring)."""

    name: ClassVar[str] = "design"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.FLOW_STARTED,)

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """Decide a ``design.change`` from the parsed request and the existing spec (pure).

        Inputs: ``request`` (:meth:`ParsedRequest.to_dict`), ``existing_paths``, ``existing_schemas``,
        ``existing_operation_ids`` (sorted lists).

        Returns:
            action ``add-resource`` (rule ``grammar.add-resource-crud``; score: operations and fields added) or
            ``refuse`` (rule ``no-overwrite``) when the schema, a path or an operationId is already taken.
        """
        if kind != "design.change":
            return super().reason(kind, inputs)
        req = inputs["request"]
        resource = req["resource"]
        plural = "".join(w[:1].upper() + w[1:] for w in req["collection_path"].strip("/").split("-"))
        wanted_ids = {f"list{plural}", f"create{resource}", f"get{resource}", f"update{resource}", f"delete{resource}"}
        clashes = []
        if resource in inputs["existing_schemas"]:
            clashes.append(f"schema {resource}")
        clashes.extend(f"path {p}" for p in (req["collection_path"], req["item_path"]) if p in inputs["existing_paths"])
        clashes.extend(f"operationId {o}" for o in sorted(wanted_ids & set(inputs["existing_operation_ids"])))
        if clashes:
            return Reasoning(
                action="refuse",
                rule="no-overwrite",
                score={"clashes": len(clashes)},
                rationale=f"The spec already has {', '.join(clashes)}; adding {resource} would overwrite it.",
            )
        fields = ", ".join(f"{k}:{v}" for k, v in req["fields"].items())
        return Reasoning(
            action="add-resource",
            rule="grammar.add-resource-crud",
            score={"operations_added": 5, "fields": len(req["fields"]), "required": len(req["required"])},
            rationale=(
                f"The request names a new resource {resource} ({fields}); the spec has no {req['collection_path']} "
                f"yet, so add schema {resource} and list/create/get/update/delete operations under "
                f"{req['collection_path']} - a non-breaking, additive change."
            ),
        )

    async def on_event(self, event: CloudEvent) -> None:
        """Design the change for one ``flow.started`` event.

        Raises:
            InputError: the spec does not load, the request is outside the grammar, or the resource exists.
        """
        run = RunSpec.model_validate(event.data)
        if run.delivery:
            return  # a delivery brings its own commit (pilotage.agents.source)
        base = load_spec(run.spec_path)
        req = parse_request(run.request)
        inputs = {
            "request": req.to_dict(),
            "existing_paths": sorted((base.get("paths") or {}).keys()),
            "existing_schemas": sorted(((base.get("components") or {}).get("schemas") or {}).keys()),
            "existing_operation_ids": operation_ids(base),
        }
        decision = await self.decide("design.change", inputs, cause=event)
        if decision.action == "refuse":
            raise InputError(
                f"request {run.request!r} cannot be applied to spec file {run.spec_path}: {decision.rationale}",
                hint="ask for a resource the spec does not define yet",
                path=run.spec_path,
            )
        new = evolve(base, req, path=run.spec_path)
        artifacts = run.artifacts_path.resolve()
        base_path = dump_spec(base, artifacts / "openapi.base.yaml")
        next_path = dump_spec(new, artifacts / "openapi.next.yaml")
        load_spec(next_path)  # what codegen will read must round-trip and validate
        diff = diff_specs(base, new)
        added = diff.added
        await self.emit(
            EventType.SPEC_PROPOSED,
            {
                "spec_path": str(next_path),
                "base_spec_path": str(base_path),
                "resource": req.resource,
                "fields": dict(req.fields),
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

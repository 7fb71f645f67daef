"""Cross-service impact (issue #19): which consumers a provider's API change breaks, through which operations.

:func:`cross_service_impact` maps each breaking change of the provider's document (:func:`pilotage.spec.diff.
diff_specs` ``changes``: one per operation of the production document) to the consumers whose production
descriptor declares that operation (:func:`pilotage.fleet.deps.consumers_of`, resolved in the production document).
The result is the ``cross_service`` field of the deploy policy's input (``policy/bundled/deploy_consumers.rego``
asks a person to approve a breaking change live consumers still use, naming them and the operations) and what
``pilotage impact --service A --rev REV`` prints (:func:`impact_of_rev`, the same without delivering).

Shape::

    {"provider": "payments", "commit": "<sha>", "production_commit": "<sha>",
     "breaking": [{"rule", "operation", "operation_id", "detail"}],      # every breaking change
     "consumers": [{"service", "env", "operations": [{"operation", "operation_id", "declared_as",
                                                       "changes": [{"rule", "detail"}]}]}],   # affected only
     "unaffected": ["orders"],                                          # consumers that use none of them
     "summary": "2 breaking change(s) of payments; used by storefront (GET /payments/{payment_id})"}
"""

from __future__ import annotations

import asyncio
from typing import Any

from pilotage.fleet.deps import Consumer, consumers_of
from pilotage.fleet.documents import DocumentSource
from pilotage.fleet.registry import ManagedService, live_descriptors, require_managed
from pilotage.settings import Settings
from pilotage.spec.diff import BreakingChange, diff_specs
from pilotage.spec.load import load_spec

__all__ = [
    "GATE_RULES",
    "NO_DOCUMENT",
    "cross_service_impact",
    "impact_between",
    "impact_of_delivery",
    "impact_of_rev",
    "service_impact",
]

#: A provider whose new descriptor names no document: every operation of the old one counts as removed.
NO_DOCUMENT: dict[str, Any] = {"openapi": "3.0.3", "info": {"title": "no document", "version": "0"}, "paths": {}}


def cross_service_impact(provider: str, changes: list[BreakingChange], consumers: list[Consumer]) -> dict[str, Any]:
    """Map ``changes`` (one provider's breaking changes) to the ``consumers`` that use their operations (pure).

    Returns:
        The module docstring's shape without the commits.
    """
    by_operation: dict[str, list[BreakingChange]] = {}
    for change in changes:
        by_operation.setdefault(change.operation, []).append(change)
    affected: list[dict[str, Any]] = []
    unaffected = []
    for consumer in consumers:
        operations = [
            {**op.to_dict(), "changes": [{"rule": c.rule, "detail": c.detail} for c in by_operation[op.label]]}
            for op in consumer.operations
            if op.label in by_operation
        ]
        if operations:
            affected.append({"service": consumer.service, "env": consumer.env, "operations": operations})
        else:
            unaffected.append(consumer.service)
    used = "; ".join(f"{c['service']} ({', '.join(op['operation'] for op in c['operations'])})" for c in affected)
    summary = f"{len(changes)} breaking change(s) of {provider}" + (
        f"; used by {used}" if affected else "; no consumer uses the operations they touch"
    )
    return {
        "provider": provider,
        "breaking": [
            {"rule": c.rule, "operation": c.operation, "operation_id": c.operation_id, "detail": c.detail}
            for c in changes
        ],
        "consumers": affected,
        "unaffected": unaffected,
        "summary": summary,
    }


def impact_between(
    provider: ManagedService,
    fleet: dict[str, ManagedService],
    old_doc: dict[str, Any] | None,
    new_doc: dict[str, Any] | None,
) -> dict[str, Any]:
    """The impact of replacing ``old_doc`` (production's) by ``new_doc`` on ``provider``'s live consumers.

    No old document: nothing could be declared against it, so nothing breaks. No new document (the commit's
    descriptor names none any more): every operation counts as removed.

    Raises:
        InputError: a ``$ref`` of a document does not resolve.
    """
    consumers = consumers_of(provider.name, live_descriptors(fleet), old_doc)
    changes = diff_specs(old_doc, new_doc or NO_DOCUMENT).changes if old_doc is not None else []
    return cross_service_impact(provider.name, changes, consumers)


async def impact_of_rev(
    source: DocumentSource, fleet: dict[str, ManagedService], service: str, sha: str
) -> dict[str, Any]:
    """The cross-service impact of delivering commit ``sha`` of ``service`` (``pilotage impact --service``).

    Returns:
        :func:`cross_service_impact`'s shape plus ``commit``, ``production_commit``, ``documents`` (where each came
        from) and ``non_breaking`` (the document diff's compatible lines).

    Raises:
        InputError: ``service`` is not managed.
        ConfigError: the commit has no valid descriptor, or a document cannot be loaded (names which and why).
    """
    provider = require_managed(fleet, service)
    old = await source.production(provider, fleet)
    _descriptor, new = await source.at_rev(provider, sha, fleet)
    result = impact_between(provider, fleet, old.doc if old else None, new.doc if new else None)
    non_breaking = diff_specs(old.doc, new.doc).non_breaking if old and new else []
    return result | {
        "commit": sha,
        "production_commit": provider.production_commit,
        "documents": {"production": old.source if old else None, "commit": new.source if new else None},
        "non_breaking": non_breaking,
    }


async def impact_of_delivery(
    source: DocumentSource, fleet: dict[str, ManagedService], service: str, head_spec: str, base_spec: str | None
) -> dict[str, Any] | None:
    """The cross-service impact of a delivery in progress (the deployment agent's ``cross_service`` input).

    Args:
        source: loads production's document when the run has no file of it.
        fleet: the managed services (their production descriptors are the live consumers).
        service: the delivered service (None is returned when it is not managed).
        head_spec: the delivered commit's validated document ("": it names none).
        base_spec: production's document file when the run read it (``spec.proposed`` ``base_spec_path``), else
            None: :meth:`DocumentSource.production` loads it (a served document).

    Returns:
        :func:`cross_service_impact`'s shape; without any consumer no document is read.

    Raises:
        ConfigError: production's document cannot be loaded.
        InputError: a document does not load or a ``$ref`` does not resolve.
    """
    provider = fleet.get(service)
    if provider is None:
        return None
    if not any(c.service == service for d in live_descriptors(fleet).values() for c in d.consumes):
        return cross_service_impact(service, [], [])
    if base_spec:
        old: dict[str, Any] | None = await asyncio.to_thread(load_spec, base_spec)
    else:
        loaded = await source.production(provider, fleet)
        old = loaded.doc if loaded else None
    new = await asyncio.to_thread(load_spec, head_spec) if head_spec else None
    return impact_between(provider, fleet, old, new)


#: The rules of ``policy/bundled/deploy_consumers.rego`` (findings of other deploy rules are not shown).
GATE_RULES = ("breaking-change-consumed",)


async def service_impact(settings: Settings, service: str, rev: str) -> dict[str, Any]:
    """``pilotage impact --service A --rev REV``: :func:`impact_of_rev` plus what the deploy gate would say.

    Opens the log (the fleet), the runtime (a served document of REV is read from a scratch instance) and the
    policy engine; ``gate`` lists the deploy policy's findings on this ``cross_service`` input
    (``approval required: …`` or a deny), empty when it would let the change through.

    Raises:
        InputError: the service is not managed, or REV is not a revision of its repository.
        ConfigError: a descriptor or a document cannot be loaded.
    """
    from pilotage.app import open_bus, open_policy, open_runtime
    from pilotage.fleet.checkout import resolve_rev
    from pilotage.fleet.registry import load_fleet

    async with open_bus(settings) as bus:
        fleet = await load_fleet(bus)
    sha = resolve_rev(require_managed(fleet, service).repo_path, rev)
    runtime = open_runtime(settings)
    try:
        result = await impact_of_rev(DocumentSource(settings, runtime), fleet, service, sha)
    finally:
        await runtime.close()
    with open_policy(settings) as policy:
        verdict = policy.evaluate("deploy", {"service": service, "commit": sha, "cross_service": result})
    result["gate"] = [
        f"{'approval required' if f['kind'] == 'approval' else 'deny'}: {f['msg']}"
        for f in verdict.findings
        if f.get("rule") in GATE_RULES or "cross_service" in str(f.get("msg", ""))
    ]
    return result

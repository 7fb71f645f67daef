"""Dependencies between managed services (issue #19): who calls whom, which operations, in which order.

Pure functions over descriptors (``pilotage.yaml``, :class:`~pilotage.fleet.descriptor.ServiceDescriptor`) and
OpenAPI documents; the fleet's *live* dependencies are those of each service's production descriptor
(:meth:`pilotage.fleet.registry.ManagedService.production_descriptor`).

* A service depends on each provider it ``consumes`` and on each managed service its ``dependsOn`` names
  (:attr:`ServiceDescriptor.dependencies`); :func:`dependency_graph` keeps the edges between managed services,
  :func:`find_cycle` finds a cycle (a service may not depend on itself through others: no order of releases
  would satisfy it), :func:`providers_first` orders services to add or release (providers before consumers).
* A declared operation is an ``operationId`` or ``METHOD /path`` of the provider's document
  (:func:`resolve_operations`); :func:`check_consumes` refuses an unknown provider or operation, naming the
  descriptor's field.
* :func:`consumers_of` answers "who uses this provider, through which variable, calling what": the input of the
  cross-service impact (:mod:`pilotage.fleet.impact`) and of the consumer verification and release ordering built
  on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotage.errors import ConfigError
from pilotage.fleet.descriptor import ServiceDescriptor
from pilotage.spec.openapi import iter_operations
from pilotage.spec.refs import first_cycle

__all__ = [
    "Consumer",
    "ResolvedOperation",
    "check_consumes",
    "consumers_of",
    "cycle_error",
    "dependency_graph",
    "find_cycle",
    "providers_first",
    "serving_order",
    "start_waves",
    "with_dependencies",
    "resolve_operations",
]

#: Operation ids listed in the hint of an unknown operation.
_HINT_OPERATIONS = 8


@dataclass(frozen=True)
class ResolvedOperation:
    """A declared operation found in the provider's document.

    Attributes:
        label: ``"METHOD /path"`` in the document.
        operation_id: its ``operationId`` ("" when it has none).
        declared_as: the reference as the consumer wrote it (``createPayment`` or ``POST /payments``).
    """

    label: str
    operation_id: str
    declared_as: str

    def to_dict(self) -> dict[str, str]:
        """JSON view."""
        return {"operation": self.label, "operation_id": self.operation_id, "declared_as": self.declared_as}


@dataclass(frozen=True)
class Consumer:
    """A service that consumes a provider.

    Attributes:
        service: the consumer's name.
        env: the variable through which it receives the provider's address.
        operations: its declared operations found in the provider's document.
        unresolved: declared operations the document does not have (the document changed since it was declared).
    """

    service: str
    env: str
    operations: tuple[ResolvedOperation, ...] = ()
    unresolved: tuple[str, ...] = field(default_factory=tuple)

    def labels(self) -> set[str]:
        """The ``METHOD /path`` of every resolved operation."""
        return {op.label for op in self.operations}

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "service": self.service,
            "env": self.env,
            "operations": [op.to_dict() for op in self.operations],
            "unresolved": list(self.unresolved),
        }


def dependency_graph(descriptors: Mapping[str, ServiceDescriptor]) -> dict[str, list[str]]:
    """Return ``{service: [managed services it depends on]}`` (edges to names outside ``descriptors`` dropped)."""
    return {n: [d for d in desc.dependencies if d in descriptors and d != n] for n, desc in descriptors.items()}


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return a cycle of ``graph`` as ``[a, b, …, a]`` (from the first service, by name, on one), or None.

    :func:`pilotage.spec.refs.first_cycle` with services and their dependencies in sorted order, so the same
    graph always gives the same cycle.
    """
    return first_cycle(sorted(graph), lambda name: sorted(graph.get(name, ())))


def with_dependencies(graph: Mapping[str, Sequence[str]], names: Sequence[str]) -> list[str]:
    """``names`` and everything they depend on, transitively, in ``graph``: dependencies first, no repeats."""
    out: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in out or name in path:
            return
        for dep in graph.get(name, ()):
            visit(dep, (*path, name))
        out.append(name)

    for name in names:
        visit(name, ())
    return out


def start_waves(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Group ``graph``'s services into waves that can start together: each after every wave holding a dependency.

    A service's wave is 0 without dependencies in ``graph``, else one more than its dependencies' highest (its
    *depth*), so a provider serves before its consumers start and services of one depth start at once (``pilotage
    serve`` brings a fleet up this way). Names are sorted within a wave. A dependency on a service of a cycle (cycles
    are refused when services are added, :func:`find_cycle`) is ignored where it closes the cycle.

    Returns:
        ``[[names of depth 0], [depth 1], …]``; ``[]`` for an empty graph.
    """
    depth: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> int:
        if name not in depth:
            deps = [d for d in graph.get(name, ()) if d in graph and d not in path and d != name]
            depth[name] = 1 + max((visit(d, (*path, name)) for d in deps), default=-1)
        return depth[name]

    for name in sorted(graph):
        visit(name, ())
    waves: list[list[str]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for name in sorted(depth):
        waves[depth[name]].append(name)
    return waves


def serving_order(descriptors: Mapping[str, ServiceDescriptor], service: str, head: ServiceDescriptor) -> list[str]:
    """What must serve for a delivery of ``service`` whose new commit's descriptor is ``head``, in start order.

    Its providers' providers first, then its providers (production's and the new commit's dependencies), then
    ``service``; then what its consumer verification calls: each live consumer (a descriptor whose ``consumes``
    names ``service``) runs its tests against the new version and reaches its *other* providers at their stable
    addresses, so every service a consumer depends on serves too, dependencies first (the consumers themselves
    need not). Without them a consumer's test failed on an unreachable provider outside the delivery.
    """
    graph = dependency_graph(descriptors)
    both = set(graph.get(service, [])) | set(dependency_graph({**descriptors, service: head})[service])
    graph[service] = sorted(both)
    order = with_dependencies(graph, [service])
    for consumer in consumers_of(service, descriptors, None):  # never service itself
        order += [n for n in with_dependencies(graph, graph.get(consumer.service, [])) if n not in order]
    return order


def cycle_error(cycle: list[str], path: str) -> ConfigError:
    """The one-line refusal of a dependency cycle (``path``: the descriptor that closes it)."""
    return ConfigError(
        f"{path}: consumes/dependsOn: dependency cycle {' → '.join(cycle)}",
        hint="a service cannot depend on itself through others: remove one of these dependencies",
        path=path,
        field="consumes",
    )


def providers_first(descriptors: Sequence[ServiceDescriptor], managed: Mapping[str, ServiceDescriptor]) -> list[int]:
    """Return the indexes of ``descriptors`` in an order where each comes after the services it depends on.

    Dependencies on ``managed`` services (already in the fleet) are satisfied; ties keep the given order.

    Raises:
        ConfigError: the services (with the managed ones) form a cycle (:func:`cycle_error`).
    """
    names = {d.name: i for i, d in enumerate(descriptors)}
    graph = dependency_graph({**managed, **{d.name: d for d in descriptors}})
    cycle = find_cycle(graph)
    if cycle is not None:
        culprit = next((d for d in descriptors if d.name in cycle), descriptors[0])
        raise cycle_error(cycle, culprit.path)
    order: list[int] = []
    placed: set[str] = set(managed) - set(names)
    while len(order) < len(descriptors):  # no cycle: each round places one
        i = next(
            i
            for i, desc in enumerate(descriptors)
            if i not in order and all(d in placed or d not in names for d in graph[desc.name])
        )
        order.append(i)
        placed.add(descriptors[i].name)
    return order


def resolve_operations(doc: dict[str, Any], declared: Sequence[str]) -> tuple[list[ResolvedOperation], list[str]]:
    """Find each declared reference in ``doc``: an ``operationId``, or ``METHOD /path`` (method in any case).

    Returns:
        ``(found, unknown)``: the resolved operations in declared order, and the references ``doc`` lacks.

    Raises:
        InputError: a ``$ref`` of the document does not resolve.
    """
    by_id: dict[str, tuple[str, str]] = {}
    by_label: dict[str, tuple[str, str]] = {}
    for op in iter_operations(doc):
        op_id = str(op.operation.get("operationId") or "")
        by_label[op.label] = (op.label, op_id)
        if op_id:
            by_id.setdefault(op_id, (op.label, op_id))
    found, unknown = [], []
    for ref in declared:
        method, _, path = ref.strip().partition(" ")
        hit = by_id.get(ref) or by_label.get(f"{method.upper()} {path.strip()}")
        if hit is None:
            unknown.append(ref)
        else:
            found.append(ResolvedOperation(hit[0], hit[1], ref))
    return found, unknown


def _known_operations(doc: dict[str, Any]) -> str:
    ids = [str(op.operation.get("operationId") or op.label) for op in iter_operations(doc)]
    more = f" (+{len(ids) - _HINT_OPERATIONS})" if len(ids) > _HINT_OPERATIONS else ""
    return ", ".join(ids[:_HINT_OPERATIONS]) + more if ids else "none"


def check_consumes(
    descriptor: ServiceDescriptor,
    managed: Sequence[str],
    documents: Mapping[str, dict[str, Any] | None],
) -> None:
    """Refuse a ``consumes`` entry naming a service that is not managed, or an operation its document lacks.

    Args:
        descriptor: the consumer's descriptor.
        managed: the managed services' names.
        documents: provider name → its production OpenAPI document (None: the provider names none).

    Raises:
        ConfigError: one line naming the descriptor and the field (``consumes[0].service``,
            ``consumes[0].operations[1]``), the provider and what it does have.
    """
    for i, entry in enumerate(descriptor.consumes):
        if entry.service not in managed:
            where = f"consumes[{i}].service"
            raise ConfigError(
                f"{descriptor.path}: {where}: {entry.service!r} is not a managed service (managed: "
                f"{', '.join(sorted(managed)) or 'none'})",
                hint=f"`pilotage service add` {entry.service}'s repository first (or both in one command)",
                path=descriptor.path,
                field=where,
            )
        doc = documents.get(entry.service)
        if doc is None:
            where = f"consumes[{i}].service"
            raise ConfigError(
                f"{descriptor.path}: {where}: {entry.service} has no OpenAPI document (its pilotage.yaml names "
                "no openapi), so its operations cannot be checked",
                hint=f"give {entry.service} an `openapi` (a file or a served path such as /openapi.json)",
                path=descriptor.path,
                field=where,
            )
        _, unknown = resolve_operations(doc, entry.operations)
        if unknown:
            j = list(entry.operations).index(unknown[0])
            where = f"consumes[{i}].operations[{j}]"
            raise ConfigError(
                f"{descriptor.path}: {where}: {unknown[0]!r} is not an operation of {entry.service}'s document",
                hint=f"name an operationId or 'METHOD /path' of {entry.service}: {_known_operations(doc)}",
                path=descriptor.path,
                field=where,
            )


def consumers_of(
    provider: str, descriptors: Mapping[str, ServiceDescriptor], doc: dict[str, Any] | None
) -> list[Consumer]:
    """Return the services whose descriptor consumes ``provider``, by name, with their operations in ``doc``.

    Args:
        provider: the provider's name.
        descriptors: every managed service's descriptor (its production one for the live fleet).
        doc: the provider's document the operations are resolved in (None: nothing resolves).

    Raises:
        InputError: a ``$ref`` of ``doc`` does not resolve.
    """
    out = []
    for name in sorted(descriptors):
        for entry in descriptors[name].consumes:
            if entry.service != provider or name == provider:
                continue
            found, unknown = resolve_operations(doc, entry.operations) if doc is not None else ([], entry.operations)
            out.append(Consumer(name, entry.env, tuple(found), tuple(unknown)))
    return out

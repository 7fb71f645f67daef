"""Releases of several services (issue #19): who they are, in which order they go, what a failure undoes.

Pure functions; :mod:`pilotage.flows.release` runs them.

* :func:`parse_members` reads ``SERVICE@REV`` arguments, :func:`load_release_file` a release file::

      # release.yaml
      services: [orders@HEAD, storefront@HEAD]

  A service named twice is refused (:func:`refuse_duplicates`): a release delivers one commit per service.
* :func:`plan_release` orders the members along the dependency graph (:mod:`pilotage.fleet.deps`) — the
  **expand/contract rule**: an additive change of a provider (*expand*) goes before the consumers that start using
  it (rule ``additive-provider-first``); a consumer that stops using an operation goes before the provider whose
  change removes or breaks it (*contract*, rule ``consumer-stops-first``, from the provider's cross-service impact,
  :func:`pilotage.fleet.impact.cross_service_impact`); a breaking change the consumer's new version still uses keeps
  the provider first and its deploy gate asks a person (rule ``breaking-still-used``). Ties keep the given order.
* :func:`rollback_order` — a failure rolls back the members already promoted, newest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import InputError
from pilotage.fleet.deps import find_cycle
from pilotage.fleet.descriptor import ServiceDescriptor

__all__ = [
    "Edge",
    "Member",
    "ReleasePlan",
    "load_release_file",
    "parse_members",
    "plan_release",
    "refuse_duplicates",
    "rollback_order",
]

_FORMAT_HINT = "write SERVICE@REV, e.g. orders@HEAD storefront@main"
_FILE_HINT = "a release file is YAML: `services: [orders@HEAD, storefront@HEAD]`"


@dataclass(frozen=True)
class Member:
    """One service of a release.

    Attributes:
        service: the managed service's name.
        rev: the revision as the user wrote it.
        commit: ``rev`` resolved (40 hex; "" before it is resolved).
        previous_commit: the service's production commit when the release was planned.
        head: the descriptor at ``commit`` (None before it is read).
    """

    service: str
    rev: str
    commit: str = ""
    previous_commit: str = ""
    head: ServiceDescriptor | None = None


@dataclass(frozen=True)
class Edge:
    """An ordering constraint: ``first`` is delivered before ``then``, by ``rule``, ``why`` in one line."""

    first: str
    then: str
    rule: str
    why: str

    def to_dict(self) -> dict[str, str]:
        """JSON view."""
        return {"first": self.first, "then": self.then, "rule": self.rule, "why": self.why}


@dataclass
class ReleasePlan:
    """The members in delivery order and the constraints that gave it."""

    order: list[Member]
    edges: list[Edge] = field(default_factory=list)

    def steps(self) -> list[dict[str, Any]]:
        """One JSON step per member (the ``release.planned`` ``order``): what goes after what, and why."""
        out = []
        for m in self.order:
            mine = [e for e in self.edges if e.then == m.service]
            out.append(
                {
                    "service": m.service,
                    "rev": m.rev,
                    "commit": m.commit,
                    "previous_commit": m.previous_commit,
                    "after": [e.first for e in mine],
                    "why": [e.why for e in mine] or ["depends on no other service of the release"],
                }
            )
        return out

    def summary(self) -> str:
        """``orders → storefront (storefront consumes orders: …)``: the order and the reasons on one line."""
        names = " → ".join(m.service for m in self.order)
        reasons = "; ".join(e.why for e in self.edges)
        return f"{names} ({reasons})" if reasons else names


def parse_members(args: Sequence[str]) -> list[Member]:
    """Read ``SERVICE@REV`` arguments into members (revisions not resolved yet).

    Raises:
        InputError: an argument without ``@``, with an empty side, or a service named twice (one line each).
    """
    members = []
    for arg in args:
        service, at, rev = str(arg).strip().partition("@")
        if not at or not service or not rev:
            raise InputError(f"release member {arg!r} is not SERVICE@REV", hint=_FORMAT_HINT)
        members.append(Member(service, rev))
    refuse_duplicates(members)
    return members


def refuse_duplicates(members: Sequence[Member]) -> None:
    """Refuse a release that names a service more than once.

    Raises:
        InputError: ``release names orders twice (orders@HEAD, orders@main)``.
    """
    seen: dict[str, list[str]] = {}
    for m in members:
        seen.setdefault(m.service, []).append(f"{m.service}@{m.rev}")
    for name, named in seen.items():
        if len(named) > 1:
            raise InputError(
                f"release names {name} {'twice' if len(named) == 2 else f'{len(named)} times'} ({', '.join(named)})",
                hint="a release delivers one commit per service: keep one of them",
            )


def load_release_file(path: str | Path) -> list[Member]:
    """Read a release file (``services:`` a list of ``SERVICE@REV``) into members.

    Raises:
        InputError: missing, not YAML, no ``services`` list of strings, a bad member or a service named twice;
            the message names the file.
    """
    from pilotage.spec.load import load_document

    data = load_document(path, kind="release file", hint=_FILE_HINT, unique_keys=True)
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, list) or not services or not all(isinstance(s, str) for s in services):
        raise InputError(f"release file {path}: `services` must be a non-empty list of SERVICE@REV", hint=_FILE_HINT)
    try:
        return parse_members(services)
    except InputError as exc:
        raise InputError(f"release file {path}: {exc.message}", hint=exc.hint) from None


def _refs_match(refs: Sequence[str], operation: Mapping[str, Any]) -> bool:
    """A consumer's declared reference names ``operation`` (its operationId, or its ``METHOD /path``)."""
    for ref in refs:
        method, _, path = ref.strip().partition(" ")
        if ref == operation.get("operation_id") or f"{method.upper()} {path.strip()}" == operation["operation"]:
            return True
    return False


def _edge(consumer: Member, provider: Member, impact: Mapping[str, Any] | None) -> Edge:
    """The constraint between a consumer and a provider of the same release (see the module docstring)."""
    c, p = consumer.service, provider.service
    affected = next((a for a in (impact or {}).get("consumers", []) if a["service"] == c), None)
    if affected is None:
        return Edge(
            p, c, "additive-provider-first", f"{c} consumes {p}: {p}'s change breaks nothing {c} uses, so {p} first"
        )
    head = consumer.head
    refs = [r for entry in (head.consumes if head else ()) if entry.service == p for r in entry.operations]
    ops = affected["operations"]
    still = [op["operation"] for op in ops if _refs_match(refs, op)]
    if still:
        return Edge(
            p, c, "breaking-still-used",
            f"{c}'s new version still uses {', '.join(still)} that {p} breaks: {p} first, its deploy gate decides",
        )  # fmt: skip
    names = ", ".join(op["operation"] for op in ops)
    return Edge(c, p, "consumer-stops-first", f"{c} stops using {names} before {p} removes or breaks it (contract)")


def _uses(consumer: Member, provider: str, live: Mapping[str, ServiceDescriptor]) -> bool:
    now = live.get(consumer.service)
    return provider in (now.dependencies if now else ()) or provider in (
        consumer.head.dependencies if consumer.head else ()
    )


def plan_release(
    members: Sequence[Member],
    live: Mapping[str, ServiceDescriptor],
    impacts: Mapping[str, Mapping[str, Any] | None],
) -> ReleasePlan:
    """Order ``members`` (see the module docstring).

    Args:
        members: the release's services, each with ``head`` read.
        live: every managed service's production descriptor (its dependencies today).
        impacts: provider name → its cross-service impact (:func:`pilotage.fleet.impact.impact_of_rev`; None or
            absent: no breaking change).

    Raises:
        InputError: the constraints form a cycle (names it); a service named twice.
    """
    refuse_duplicates(members)
    by_name = {m.service: m for m in members}
    edges = [
        _edge(c, by_name[p], impacts.get(p)) for c in members for p in by_name if p != c.service and _uses(c, p, live)
    ]
    before = {m.service: [e.first for e in edges if e.then == m.service] for m in members}
    cycle = find_cycle(before)
    if cycle is not None:
        raise InputError(
            f"release cannot be ordered: {' → '.join(cycle)} must each go first",
            hint="release these services in separate releases (expand, then contract)",
        )
    order: list[Member] = []
    while len(order) < len(members):  # no cycle: each round places one
        placed = {m.service for m in order}
        order.append(next(m for m in members if m.service not in placed and set(before[m.service]) <= placed))
    return ReleasePlan(order, edges)


def rollback_order(promoted: Sequence[str]) -> list[str]:
    """The promoted services of a failed release in the order they are rolled back: the newest first."""
    return list(reversed(promoted))

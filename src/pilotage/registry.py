"""Backends are chosen by URL (DESIGN.md section 4): one table per kind maps a URL scheme to an import string.

Drivers are imported lazily, so a missing optional extra only matters when its URL is used; it is then named
in a :class:`~pilotage.errors.ConfigError` (``pip install 'pilotage[nats]'``).
"""

from __future__ import annotations

import importlib
from typing import Any

from pilotage.errors import ConfigError

__all__ = ["BACKENDS", "backend_class", "scheme_of"]

#: kind → scheme → (import string "module:Class", extra that provides its driver or None)
BACKENDS: dict[str, dict[str, tuple[str, str | None]]] = {
    "bus": {
        "sqlite": ("pilotage.bus.sqlite:SQLiteBus", None),
        "memory": ("pilotage.bus.memory:MemoryBus", None),
        "nats": ("pilotage.bus.nats:NatsBus", "nats"),
        "kafka": ("pilotage.bus.kafka:KafkaBus", "kafka"),
    },
    "graph": {
        "sqlite": ("pilotage.graph.sqlite:SQLiteGraph", None),
        # issue 4: untested here (no Neo4j server); the driver comes with the [neo4j] extra
        "neo4j": ("pilotage.graph.neo4j:Neo4jGraph", "neo4j"),
        "neo4j+s": ("pilotage.graph.neo4j:Neo4jGraph", "neo4j"),
        "bolt": ("pilotage.graph.neo4j:Neo4jGraph", "neo4j"),
        "bolt+s": ("pilotage.graph.neo4j:Neo4jGraph", "neo4j"),
    },
    "policy": {
        "rego": ("pilotage.policy.rego:RegoPolicyEngine", None),
        "http": ("pilotage.policy.opa:OPAPolicyEngine", None),
        "https": ("pilotage.policy.opa:OPAPolicyEngine", None),
    },
    "runtime": {
        "local": ("pilotage.runtime.local:LocalRuntime", None),
    },
}


def scheme_of(url: str) -> str:
    """Return the scheme of ``url`` (``sqlite`` for ``sqlite:///x.db``, ``rego`` for ``rego:``)."""
    return url.split(":", 1)[0].lower() if ":" in url else ""


def backend_class(kind: str, url: str) -> Any:
    """Import and return the class that serves ``url`` for backend ``kind``.

    Raises:
        ConfigError: unknown scheme (the message lists the known ones), or the driver's extra is not installed.
    """
    table = BACKENDS[kind]
    scheme = scheme_of(url)
    if scheme not in table:
        known = ", ".join(f"{s}:" for s in sorted(table))
        raise ConfigError(f"unknown {kind} URL scheme in {url!r}", hint=f"use one of {known}", url=url)
    target, extra = table[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        fix = f"pip install 'pilotage[{extra}]'" if extra else "reinstall pilotage"
        raise ConfigError(f"{kind} backend for {url!r} cannot be imported: {exc}", hint=fix, url=url) from exc
    return getattr(module, class_name)

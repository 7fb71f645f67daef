"""The knowledge-graph contract (DESIGN.md section 3).

Nodes have a ``kind`` (``Service``, ``Spec``, ``Endpoint``, ``Commit``, ``TestRun``, ``Deployment``,
``MetricSample``, ``Incident``, ``Model`` ...) and a ``key`` unique within the kind; their id is
``"{kind}:{key}"``. Edges are typed (``HAS_SPEC``, ``EXPOSES``, ``TESTED_BY`` ...) and unique per
(source, type, target). Properties are JSON objects. The graph API is synchronous: the embedded store is a
local SQLite file and every call is a short transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

__all__ = ["Edge", "Graph", "Node", "node_id"]


def node_id(kind: str, key: str) -> str:
    """Return the id of the node of ``kind`` with ``key``: ``"{kind}:{key}"``."""
    return f"{kind}:{key}"


@dataclass(frozen=True)
class Node:
    """A graph node: ``id`` is ``"{kind}:{key}"``; ``props`` is a JSON object."""

    id: str
    kind: str
    key: str
    props: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Edge:
    """A typed, directed edge between two node ids, with JSON ``props``."""

    src: str
    type: str
    dst: str
    props: dict[str, Any] = field(default_factory=dict)


class Graph(ABC):
    """Contract of a property-graph store. Use as a context manager or call :meth:`close`."""

    url: str = ""

    @abstractmethod
    def upsert_node(self, kind: str, key: str, props: dict[str, Any] | None = None) -> Node:
        """Create the node or merge ``props`` into its existing properties; return the stored node."""

    @abstractmethod
    def upsert_edge(self, src: str, type: str, dst: str, props: dict[str, Any] | None = None) -> Edge:
        """Create the edge ``src -type-> dst`` (both node ids must exist) or merge ``props`` into it.

        Raises:
            InputError: ``src`` or ``dst`` is not a node.
        """

    @abstractmethod
    def get_node(self, id: str) -> Node | None:
        """Return the node with ``id``, or None."""

    @abstractmethod
    def neighbours(
        self, id: str, type: str | None = None, direction: Literal["out", "in", "both"] = "out"
    ) -> list[tuple[Edge, Node]]:
        """Return (edge, other node) pairs adjacent to ``id``, optionally only edges of ``type``."""

    @abstractmethod
    def nodes(self, kind: str | None = None, limit: int = 10_000) -> list[Node]:
        """Return nodes, optionally of one ``kind``, in insertion order."""

    @abstractmethod
    def query(self, text: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query in the backend's own language (SQL on SQLite, Cypher on Neo4j); rows as dicts.

        Raises:
            InputError: the query is malformed (the message names the position when the backend does).
        """

    def close(self) -> None:
        """Release the connection. Idempotent."""

    def __enter__(self) -> Graph:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

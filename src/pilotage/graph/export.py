"""Export the graph as Cypher (to load into Neo4j), GraphML (yEd, Gephi, networkx) or a Mermaid flowchart.

* **cypher**: one ``MERGE`` per node (label = kind, ``id``/``key`` plus the JSON props flattened: scalars kept,
  lists of scalars kept, anything else as a JSON string) and one ``MATCH … MERGE`` per edge, ``;``-terminated, so
  ``cypher-shell < graph.cypher`` loads it idempotently.
* **graphml**: GraphML 1.0 with ``kind``, ``key``, ``props`` (JSON) on nodes and ``type``, ``props`` on edges.
* **mermaid**: ``flowchart LR``; meant for small graphs or a ``--kind`` selection (GitHub renders it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pilotage.errors import InputError
from pilotage.graph.base import Edge, Graph, Node

__all__ = ["FORMATS", "export", "load"]

FORMATS = ("cypher", "graphml", "mermaid")
_LABEL = re.compile(r"[^A-Za-z0-9_]")


def load(graph: Graph, kinds: list[str] | None = None) -> tuple[list[Node], list[Edge]]:
    """Return all nodes (of ``kinds`` when given) and the edges between them, in insertion order."""
    nodes = [n for n in graph.nodes(limit=10_000_000) if not kinds or n.kind in kinds]
    ids = {n.id for n in nodes}
    edges = [
        Edge(r["src"], r["type"], r["dst"], json.loads(r["props"]))
        for r in graph.query("SELECT src, type, dst, props FROM edges ORDER BY rowid")
        if r["src"] in ids and r["dst"] in ids
    ]
    return nodes, edges


def _cypher_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return "[" + ", ".join(_cypher_value(v) for v in value) + "]"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _cypher_props(props: dict[str, Any]) -> str:
    return "{" + ", ".join(f"`{k}`: {_cypher_value(v)}" for k, v in sorted(props.items()) if v is not None) + "}"


def to_cypher(nodes: list[Node], edges: list[Edge]) -> Iterator[str]:
    """Yield Cypher statements (one per line) that MERGE the nodes, then the edges."""
    for n in nodes:
        props = {k: v for k, v in n.props.items() if k not in ("id", "key")}
        label = _LABEL.sub("_", n.kind)
        yield f"MERGE (n:`{label}` {{id: {_cypher_value(n.id)}}}) SET n += {_cypher_props({'key': n.key, **props})};"
    for e in edges:
        yield (
            f"MATCH (a {{id: {_cypher_value(e.src)}}}), (b {{id: {_cypher_value(e.dst)}}}) "
            f"MERGE (a)-[r:`{_LABEL.sub('_', e.type)}`]->(b) SET r += {_cypher_props(e.props)};"
        )


def to_graphml(nodes: list[Node], edges: list[Edge]) -> Iterator[str]:
    """Yield the lines of a GraphML document."""
    yield '<?xml version="1.0" encoding="UTF-8"?>'
    yield '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
    for key, target in (("kind", "node"), ("key", "node"), ("props", "node"), ("type", "edge"), ("eprops", "edge")):
        name = "props" if key == "eprops" else key
        yield f'  <key id="{key}" for="{target}" attr.name="{name}" attr.type="string"/>'
    yield '  <graph id="pilotage" edgedefault="directed">'
    for n in nodes:
        yield (
            f'    <node id={quoteattr(n.id)}><data key="kind">{escape(n.kind)}</data>'
            f'<data key="key">{escape(n.key)}</data>'
            f'<data key="props">{escape(json.dumps(n.props, sort_keys=True))}</data></node>'
        )
    for e in edges:
        yield (
            f'    <edge source={quoteattr(e.src)} target={quoteattr(e.dst)}><data key="type">{escape(e.type)}</data>'
            f'<data key="eprops">{escape(json.dumps(e.props, sort_keys=True))}</data></edge>'
        )
    yield "  </graph>"
    yield "</graphml>"


def to_mermaid(nodes: list[Node], edges: list[Edge]) -> Iterator[str]:
    """Yield the lines of a Mermaid ``flowchart LR`` (node ids become ``n0``, ``n1`` …; labels are ``Kind: key``)."""
    short = {n.id: f"n{i}" for i, n in enumerate(nodes)}
    yield "flowchart LR"
    for n in nodes:
        label = f"{n.kind}: {n.key}".replace('"', "#quot;")
        yield f'    {short[n.id]}["{label}"]'
    for e in edges:
        yield f"    {short[e.src]} -->|{e.type}| {short[e.dst]}"


def export(graph: Graph, fmt: str, kinds: list[str] | None = None) -> Iterator[str]:
    """Yield the lines of the graph (nodes of ``kinds`` when given) in ``fmt`` (one of :data:`FORMATS`).

    Raises:
        InputError: unknown format.
    """
    writers = {"cypher": to_cypher, "graphml": to_graphml, "mermaid": to_mermaid}
    if fmt not in writers:
        raise InputError(f"unknown export format {fmt!r}", hint="use one of " + ", ".join(FORMATS))
    nodes, edges = load(graph, kinds)
    return writers[fmt](nodes, edges)

"""The fleet in the knowledge graph (issue #19): a release rewrites production's operations and who consumes them;
the graph ingest of a consumer's code finds its calls, compared with what it declares."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from pilotage.bus.memory import MemoryBus
from pilotage.fleet.graph import call_report, fleet_subgraph, record_service
from pilotage.fleet.onboard import add_services, relations
from pilotage.fleet.registry import live_descriptors, load_fleet
from pilotage.graph.export import to_mermaid
from pilotage.graph.ingest import ingest
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.settings import Settings
from pilotage.spec.load import load_spec
from tests.fixtures.consumer_repo import make_pair


def _fleet(tmp_path: Path) -> tuple[SQLiteGraph, dict[str, Any], Path, Path]:
    notes, digest = make_pair(tmp_path / "repos")
    graph = SQLiteGraph(f"sqlite:///{tmp_path}/graph.db")

    async def go() -> dict[str, Any]:
        bus = MemoryBus()
        settings = Settings(home=tmp_path / "state", fleet_port_base=18970)
        await add_services(bus, graph, settings, None, [notes, digest])
        return await load_fleet(bus)

    return graph, asyncio.run(go()), notes, digest


def _edges(graph: SQLiteGraph, src: str) -> list[tuple[str, str]]:
    rows = graph.query(f"SELECT type, dst FROM edges WHERE src = '{src}' AND type != 'PRODUCTION' ORDER BY 1, 2")
    return [(r["type"], r["dst"]) for r in rows]


def test_a_release_that_drops_an_operation_marks_it_and_its_consumer_declares_it_unresolved(tmp_path: Path) -> None:
    graph, fleet, notes, _ = _fleet(tmp_path)
    assert ("CONSUMES", "Operation:notes GET /notes/{note_id}") in _edges(graph, "Service:digest")
    doc = copy.deepcopy(load_spec(notes / "openapi.yaml"))
    del doc["paths"]["/notes/{note_id}"]
    counts = record_service(graph, fleet["notes"].production_descriptor(), "f" * 40, doc, live_descriptors(fleet))
    assert counts == {"apis": 1, "operations": 3, "consumes": 0, "depends_on": 0}
    gone = graph.get_node("Operation:notes GET /notes/{note_id}")
    assert gone is not None and gone.props["removed_in"] == "f" * 40
    assert ("DEFINES", gone.id) not in _edges(graph, "API:notes")
    assert _edges(graph, "Service:digest") == [
        ("CONSUMES", "Operation:notes GET /notes"),
        ("DEPENDS_ON", "Service:notes"),
    ]
    depends = graph.query("SELECT props FROM edges WHERE src = 'Service:digest' AND type = 'DEPENDS_ON'")[0]
    assert '"unresolved": ["get_note_notes__note_id__get"]' in depends["props"]
    consumers = relations(graph, fleet, "notes")["consumers"]
    assert consumers == [{"service": "digest", "env": "NOTES_URL", "unresolved": ["get_note_notes__note_id__get"],
                          "operations": [{"operation": "GET /notes", "operation_id": "list_notes_notes_get",
                                          "declared_as": "GET /notes"}]}]  # fmt: skip


def test_the_fleet_subgraph_draws_services_apis_operations_and_dependencies(tmp_path: Path) -> None:
    graph, fleet, _, _ = _fleet(tmp_path)
    graph.upsert_node("Service", "unmanaged", {"name": "unmanaged"})  # e.g. a folder ingested for its code
    nodes, edges = fleet_subgraph(graph, set(fleet))
    assert {n.id for n in nodes if n.kind != "Operation"} == {"Service:notes", "Service:digest", "API:notes"}
    assert len([n for n in nodes if n.kind == "Operation"]) == 4
    text = "\n".join(to_mermaid(nodes, edges))
    assert '["Service: digest"]' in text and '["Operation: notes GET /notes"]' in text
    assert sum(1 for e in edges if e.type == "DEPENDS_ON") == 1 and sum(1 for e in edges if e.type == "CONSUMES") == 2


def test_a_consumers_ingested_code_is_compared_with_its_declared_operations(tmp_path: Path) -> None:
    graph, fleet, _, digest = _fleet(tmp_path)
    descriptor = fleet["digest"].production_descriptor()
    managed = live_descriptors(fleet)
    assert call_report(graph, descriptor, managed) == {
        "ingested": False,
        "hint": "pilotage graph ingest PATH --service digest",
    }
    ingest(graph, digest, service="digest")
    report = call_report(graph, descriptor, managed)
    lines = (digest / "app" / "main.py").read_text().splitlines()
    post_line = next(i for i, line in enumerate(lines, 1) if "httpx.post(" in line)
    assert report == {
        "ingested": True,
        "calls": 2,  # tests/ is not the service's code: its calls are not counted
        "declared_not_called": [{"provider": "notes", "operation": "GET /notes/{note_id}"}],
        "called_not_declared": [{"provider": "notes", "operation": "POST /notes", "at": f"app/main.py:{post_line}"}],
        "unmatched_calls": [],
    }

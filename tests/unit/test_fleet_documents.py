"""A managed service's document at a commit (issue #19): a served one read from a scratch instance of the commit
(a real process), then from the cache; the fleet's production descriptor follows releases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pilotage.bus.memory import MemoryBus
from pilotage.catalogue import checked_event
from pilotage.events import EventType
from pilotage.fleet.documents import DocumentSource, remember_document
from pilotage.fleet.registry import add_service, fold_fleet, load_fleet
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.runtime.local import LocalRuntime
from pilotage.settings import Settings
from tests.fixtures.fleet import commit_files
from tests.fixtures.notes_repo import make_notes_repo


def _served_notes(tmp_path: Path) -> Path:
    notes = make_notes_repo(tmp_path / "notes")
    text = (notes / "pilotage.yaml").read_text().replace("openapi: openapi.yaml", "openapi: /openapi.json")
    commit_files(notes, {"pilotage.yaml": text, "openapi.yaml": None}, "FastAPI serves the document")
    return notes


def test_a_served_document_is_read_from_a_scratch_instance_once_then_from_the_cache(tmp_path: Path) -> None:
    notes = _served_notes(tmp_path)
    settings = Settings(home=tmp_path / "state")

    async def go() -> tuple[Any, Any, Any]:
        bus = MemoryBus()
        await add_service(bus, SQLiteGraph(f"sqlite:///{tmp_path}/g.db"), notes, port_base=18990)
        fleet = await load_fleet(bus)
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        try:
            first = await DocumentSource(settings, runtime).production(fleet["notes"], fleet)
        finally:
            await runtime.close()
        again = await DocumentSource(settings).production(fleet["notes"], fleet)  # no runtime: the cache
        return fleet["notes"], first, again

    service, first, again = asyncio.run(go())
    assert first.source.endswith("(scratch instance)") and again.source.endswith("(cached)")
    assert first.path == again.path and first.path.parent.name == service.production_commit[:12]
    assert {op for op in first.doc["paths"]} == {"/healthz", "/notes", "/notes/{note_id}"}
    assert first.doc == again.doc


def test_a_release_caches_its_tested_document_and_becomes_the_production_descriptor(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "state")
    saved = tmp_path / "openapi.served.json"
    saved.write_text('{"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {}}', encoding="utf-8")
    remember_document(settings, "notes", "a" * 40, saved)
    assert (
        settings.home / "services/notes/documents/aaaaaaaaaaaa/openapi.served.json"
    ).read_text() == saved.read_text()
    descriptor = {"name": "notes", "start": "x {port}", "openapi": "/openapi.json"}
    released = {**descriptor, "consumes": [{"service": "ledger", "env": "LEDGER_URL", "operations": ["GET /x"]}]}
    events = [
        checked_event(EventType.SERVICE_ADDED, {"service": "notes", "repo_path": "/r", "commit": "a" * 40,
                                                "stable_port": 18000, "descriptor": descriptor}, source="t"),
        checked_event(EventType.SERVICE_RELEASED, {"service": "notes", "commit": "b" * 40, "previous_commit": "a" * 40,
                                                   "deployment_id": "d", "run_id": "r", "descriptor": released},
                      source="t"),
    ]  # fmt: skip
    service = fold_fleet(events)["notes"]
    assert service.production_commit == "b" * 40
    assert service.production_descriptor().dependencies == ("ledger",)
    assert service.production_descriptor().path == "/r/pilotage.yaml@bbbbbbbbbbbb"


def test_the_test_instance_and_the_test_command_get_the_providers_address(tmp_path: Path) -> None:
    """The testing stage's scratch instance (``run_descriptor_head``) and the service's own test command see
    ``NOTES_URL``; the test command fails unless it is the address given."""
    from pilotage.fleet.descriptor import load_descriptor
    from pilotage.testing.descriptor_suite import run_descriptor_head
    from tests.fixtures.consumer_repo import make_consumer_repo

    digest = make_consumer_repo(tmp_path / "digest")
    check = (
        "test: \"{python} -c 'import os, sys, urllib.request; "
        'sys.exit(os.environ[\\"NOTES_URL\\"] != \\"http://127.0.0.1:18998\\" or '
        'b\\"18998\\" not in urllib.request.urlopen(os.environ[\\"PILOTAGE_BASE_URL\\"] + \\"/healthz\\").read())\'"\n'
    )
    text = (
        (digest / "pilotage.yaml")
        .read_text()
        .replace('test: "{python} -m pytest -q -p no:cacheprovider tests"\n', check)
    )
    (digest / "pilotage.yaml").write_text(text, encoding="utf-8")

    async def go(addresses: dict[str, str]) -> dict[str, Any]:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        try:
            result, _ = await run_descriptor_head(
                runtime, load_descriptor(digest), service="digest", commit="c" * 40, head_dir=digest, prepared="",
                out_dir=tmp_path / f"out-{len(addresses)}", ready_timeout_s=30.0, options={}, addresses=addresses,
            )  # fmt: skip
        finally:
            await runtime.close()
        return result

    passed = asyncio.run(go({"notes": "http://127.0.0.1:18998"}))
    assert passed["unit"]["failed"] == 0 and passed["unit"]["passed"] == 1, passed["unit"]
    failed = asyncio.run(go({"notes": "http://127.0.0.1:18997", "x": ""}))
    assert failed["unit"]["failed"] == 1, failed["unit"]


def test_a_release_records_the_new_production_descriptor_and_rewrites_the_fleet_graph(tmp_path: Path) -> None:
    """The rollout agent's release (``RolloutAgent._release``) on a real fleet: a commit of notes that drops
    ``GET /notes/{note_id}`` becomes production; digest's declaration of it is left unresolved in the graph."""
    import json

    from pilotage.agent import AgentContext
    from pilotage.agents.rollout import RolloutAgent
    from pilotage.events import new_event
    from pilotage.fleet.checkout import checkout
    from pilotage.fleet.onboard import add_services
    from tests.fixtures.consumer_repo import make_pair

    notes, digest = make_pair(tmp_path / "repos")
    settings = Settings(home=tmp_path / "state", fleet_port_base=18950)
    graph = SQLiteGraph(f"sqlite:///{tmp_path}/graph.db")
    ctx = AgentContext(bus=MemoryBus(), graph=graph, policy=None, runtime=None, settings=settings)  # type: ignore[arg-type]

    async def go() -> tuple[Any, str]:
        await add_services(ctx.bus, graph, settings, None, [notes, digest])
        doc = json.loads((notes / "openapi.yaml").read_text())
        del doc["paths"]["/notes/{note_id}"]
        sha = commit_files(notes, {"openapi.yaml": json.dumps(doc)}, "notes: no reading one note")
        head = checkout(notes, sha, tmp_path / "checkouts")
        before = (await load_fleet(ctx.bus))["notes"].production_commit
        code = {"head_dir": str(head), "base_commit": before, "commit": sha}
        for kind, data in (
            (EventType.CODE_GENERATED, code),
            (EventType.SPEC_PROPOSED, {"spec_path": str(head / "openapi.yaml")}),
        ):
            await ctx.bus.publish(new_event(kind, data, source="/test", subject="notes", runid="run-1"))
        cause = new_event(EventType.DEPLOY_PROMOTED, {}, source="/test", subject="notes", runid="run-1")
        await RolloutAgent(ctx)._release(cause, "notes", {"commit": sha}, "dep-1")
        return await load_fleet(ctx.bus), sha

    fleet, sha = asyncio.run(go())
    assert fleet["notes"].production_commit == sha
    assert fleet["notes"].descriptor == fleet["notes"].production_descriptor().to_dict()
    removed = graph.get_node("Operation:notes GET /notes/{note_id}")
    assert removed is not None and removed.props["removed_in"] == sha
    api = graph.get_node("API:notes")
    assert api is not None and api.props["operations"] == 3 and api.props["commit"] == sha
    row = graph.query("SELECT props FROM edges WHERE src = 'Service:digest' AND type = 'DEPENDS_ON'")[0]
    assert json.loads(row["props"])["unresolved"] == ["get_note_notes__note_id__get"]
